"""What every training command shares: stop signals, logging, device choice, resume checks."""

from __future__ import annotations

import signal
import sys
from dataclasses import dataclass, field

import torch
from tqdm import tqdm

# Options that may change between a run and its resumption without changing its result.
RESUMABLE_CHANGES = frozenset(
    {"out", "workers", "device", "restart", "checkpoint_every", "max_steps", "progress", "frame_cache"}
)


class StopRequest:
    """Set by a signal handler; the loop checkpoints and stops at the next step boundary."""

    def __init__(self) -> None:
        self.reason: str | None = None

    def __call__(self, signum: int, frame: object) -> None:
        self.reason = signal.Signals(signum).name

    def install(self) -> None:
        signal.signal(signal.SIGTERM, self)
        signal.signal(signal.SIGINT, self)


class TrainingStopped(Exception):
    """Training stopped early (signal or ``max_steps``) after writing its checkpoint."""


def log(message: str) -> None:
    """A line on stderr that does not break the progress bar."""
    tqdm.write(message, file=sys.stderr)


def resolve_device(name: str) -> torch.device:
    """``auto`` is the first CUDA device when there is one, else the CPU."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


def config_differences(saved: dict, current: dict, allowed: frozenset[str] = RESUMABLE_CHANGES) -> list[str]:
    """``key: old -> new`` for every option that differs and may not change on resume."""
    keys = (set(saved) | set(current)) - allowed
    return sorted(f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k) != current.get(k))


class BadDataError(RuntimeError):
    """An unreadable input file with ``strict_data`` on."""


@dataclass
class TrainState:
    """Progress of a run, saved in its checkpoint."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    bad_files: set[str] = field(default_factory=set)
    epoch_losses: list[float] = field(default_factory=list)  # this epoch's step losses so far
