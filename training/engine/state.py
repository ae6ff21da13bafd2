"""A run's progress as its checkpoint records it, and the clock of its training time."""

from __future__ import annotations

import time
from dataclasses import dataclass, field


def cpu_seconds() -> float:
    """CPU time used so far by this process and its finished children (data-loading workers
    are joined at the end of every epoch). Unlike wall-clock time it does not grow while the
    machine is busy with other work, so it compares runs made in different conditions."""
    import resource  # Unix only: imported where it is used, so the module imports anywhere

    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


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
