"""What machine a figure came from: results move between processors (float summation order,
speed), so runs and benchmarks record it. Torch-free."""

from __future__ import annotations

import platform
from pathlib import Path


def cpu_name() -> str:
    """The processor's model name from ``/proc/cpuinfo``, or the architecture where there is none."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine() or "unknown"
