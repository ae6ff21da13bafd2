"""What every training command shares: stop signals, logging, device choice, resume checks."""

from __future__ import annotations

import dataclasses
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import torch
from tqdm import tqdm

from training.engine.checkpoint import load_checkpoint

T = TypeVar("T")

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


def config_differences(
    saved: dict, current: dict, allowed: frozenset[str] = RESUMABLE_CHANGES, defaults: dict | None = None
) -> list[str]:
    """``key: old -> new`` for every option that differs and may not change on resume.

    With ``defaults``, an option the saved configuration lacks (it was added later) counts as
    unchanged while the current value is its default.
    """
    keys = (set(saved) | set(current)) - allowed
    defaults = defaults or {}
    return sorted(
        f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k, defaults.get(k)) != current.get(k)
    )


class BadDataError(RuntimeError):
    """An unreadable input file with ``strict_data`` on."""


@dataclass
class TrainState:
    """Progress of a run, saved in its checkpoint."""

    step: int = 0
    history: list[dict] = field(default_factory=list)
    bad_files: set[str] = field(default_factory=set)
    epoch_losses: list[float] = field(default_factory=list)  # this epoch's step losses so far
    # Training time over every session of the run (NaN: resumed from a checkpoint that did not
    # record it), charged by :meth:`charge_time` before each checkpoint and at the end.
    train_seconds: float = 0.0
    train_cpu_seconds: float = 0.0
    _clock: tuple[float, float] | None = field(default=None, repr=False, compare=False)

    def start_clock(self) -> None:
        """Count training time from now (the start of a session's training loop)."""
        self._clock = (time.perf_counter(), cpu_seconds())

    def charge_time(self) -> None:
        """Add the wall-clock and CPU time since the last charge (or :meth:`start_clock`)."""
        if self._clock is None:
            return
        now = (time.perf_counter(), cpu_seconds())
        self.train_seconds += now[0] - self._clock[0]
        self.train_cpu_seconds += now[1] - self._clock[1]
        self._clock = now

    def stop_clock(self) -> None:
        self.charge_time()
        self._clock = None

    def as_checkpoint(self) -> dict:
        return {
            "step": self.step,
            "history": self.history,
            "bad_files": sorted(self.bad_files),
            "epoch_losses": self.epoch_losses,
            "train_seconds": self.train_seconds,
            "train_cpu_seconds": self.train_cpu_seconds,
        }

    @classmethod
    def from_checkpoint(cls, checkpoint: dict) -> TrainState:
        return cls(
            checkpoint["step"],
            checkpoint["history"],
            set(checkpoint["bad_files"]),
            checkpoint["epoch_losses"],
            checkpoint.get("train_seconds", float("nan")),
            checkpoint.get("train_cpu_seconds", float("nan")),
        )


def load_resumable_checkpoint(path: Path, expected_format: str, what: str, config: Any) -> dict | None:
    """The checkpoint at ``path`` if the run should resume from it (``None``: start fresh).

    Refuses (``ValueError``) a file of another format, and one written with options that may
    not change on resume (:func:`config_differences`).
    """
    if config.restart or not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    if checkpoint.get("format") != expected_format:
        raise ValueError(f"{path} is not {what}")
    defaults = dataclasses.asdict(type(config)())
    differences = config_differences(checkpoint["config"], dataclasses.asdict(config), defaults=defaults)
    if differences:
        raise ValueError(
            f"{path} was written with other options ({'; '.join(differences)}); "
            "use the same options to resume, --restart to start over, or another --out"
        )
    return checkpoint


def run_command(work: Callable[[StopRequest], T]) -> tuple[int, T | None]:
    """Run a training command's ``work(stop)`` with SIGTERM / SIGINT handling.

    Returns the exit status and the result: 0 when it finished, 143 / 130 when a signal
    stopped it at a checkpoint (rerunning resumes), 2 for bad input or options (the message
    is printed, no traceback).
    """
    stop = StopRequest()
    stop.install()
    try:
        return 0, work(stop)
    except TrainingStopped as stopped:
        print(f"{stopped}; rerun the same command to resume", file=sys.stderr)
        return (143 if stop.reason == "SIGTERM" else 130 if stop.reason == "SIGINT" else 0), None
    except (FileNotFoundError, ValueError, BadDataError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2, None


def cpu_seconds() -> float:
    """CPU time used so far by this process and its finished children (data-loading workers
    are joined at the end of every epoch). Unlike wall-clock time it does not grow while the
    machine is busy with other work, so it compares runs made in different conditions."""
    import resource

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
