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
