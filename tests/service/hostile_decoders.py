"""Decoder stand-ins that crash or hang, for the service's recovery tests (run in worker processes)."""

from __future__ import annotations

import os
import time
from pathlib import Path


def crash(*_args):
    os._exit(1)  # as a segfault inside FFmpeg would end the worker


def crash_once(marker: str, *args):
    """Crashes the first time (leaving ``marker``), opens the video normally after: a death
    that the file does not reproduce (``functools.partial(crash_once, path)`` as the pool's
    open function)."""
    from service.decoding import open_reader

    if not Path(marker).exists():
        Path(marker).touch()
        os._exit(1)
    return open_reader(*args)


def hang(*_args):
    time.sleep(600)  # as a decoder stuck inside FFmpeg, beyond Python's reach


def slow(*args):
    """Opens the video normally, after a pause (a read that is still in flight when cancelled)."""
    from service.decoding import open_reader

    time.sleep(0.5)
    return open_reader(*args)


def stall(*args):
    """Opens the video normally, after a long pause (a slow file holding its worker)."""
    from service.decoding import open_reader

    time.sleep(3.0)
    return open_reader(*args)


SECRET = "internal detail: /srv/secret/path"


def explode(*_args):
    """A bug inside the frame reader: an exception no frames error describes."""
    raise LookupError(SECRET)
