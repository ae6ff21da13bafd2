"""What machine a figure came from: results move between processors (float summation order,
speed), so runs and benchmarks record it. Torch-free."""

from __future__ import annotations

import os
import platform
from pathlib import Path
from typing import Any


def cpu_name() -> str:
    """The processor's model name from ``/proc/cpuinfo``, or the architecture where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"


def cpu_ticks() -> tuple[int, int] | None:
    """(all, stolen) CPU ticks of the machine so far, from ``/proc/stat``; None where there is none.

    Stolen ticks are those a virtual machine's host gave to someone else: a benchmark run while
    the host is busy is slower by that share, whatever the code does."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, ValueError, IndexError):
        return None
    # user nice system idle iowait irq softirq steal (guest time is already in user)
    return sum(fields[:8]), fields[7] if len(fields) > 7 else 0


def stolen_share(start: tuple[int, int] | None, end: tuple[int, int] | None) -> float | None:
    """The share of the machine's CPU time stolen by the host between two :func:`cpu_ticks`."""
    if start is None or end is None or end[0] <= start[0]:
        return None
    return (end[1] - start[1]) / (end[0] - start[0])


def machine_facts(**versions: Any) -> dict[str, Any]:
    """The processor, its cores, torch's threads and the versions a benchmark ran with
    (``versions``: more library versions, e.g. ``onnxruntime=ort.__version__``)."""
    import torch  # here, so that the module stays torch-free for those who only name the CPU

    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        **versions,
        "python": platform.python_version(),
    }
