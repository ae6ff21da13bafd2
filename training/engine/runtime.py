"""Old home of the names now in :mod:`.commands`, :mod:`.resume`, :mod:`.state` and
:mod:`.distributed`; kept for the modules that still import them from here."""

from training.engine.commands import BadDataError, StopRequest, TrainingStopped, log, run_command
from training.engine.distributed import resolve_device
from training.engine.resume import RESUMABLE_CHANGES, config_differences, load_resumable_checkpoint
from training.engine.state import TrainState, cpu_seconds

__all__ = [
    "RESUMABLE_CHANGES",
    "BadDataError",
    "StopRequest",
    "TrainState",
    "TrainingStopped",
    "config_differences",
    "cpu_seconds",
    "load_resumable_checkpoint",
    "log",
    "resolve_device",
    "run_command",
]
