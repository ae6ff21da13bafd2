"""What every training command shares: the stop request its signals set, the exceptions that
end a run early, their exit statuses, and logging."""

from __future__ import annotations

import signal
import sys
from collections.abc import Callable
from typing import TypeVar

from tqdm import tqdm

T = TypeVar("T")


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


class BadDataError(RuntimeError):
    """An unreadable input file with ``strict_data`` on."""


def log(message: str) -> None:
    """A line on stderr that does not break the progress bar."""
    tqdm.write(message, file=sys.stderr)


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
