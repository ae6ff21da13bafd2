"""Read functions that crash or hang in the decoder child, for the isolation tests (``batch.isolation``)."""

from __future__ import annotations

import os
from pathlib import Path

from batch.isolation import read_samples


def crash_once(marker: str, *args):
    """Crashes the first time (leaving ``marker``), reads normally after: a death the file does
    not reproduce (``functools.partial(crash_once, path)``)."""
    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return read_samples(*args)
