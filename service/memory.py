"""Giving freed memory back to the system.

glibc keeps memory freed into the middle of its heap: large blocks (FFmpeg's frame buffers,
3 MB each at 1080p; ONNX Runtime's copies of a model's weights while it loads) freed between
smaller live ones stay resident. A decoder process that served 16 concurrent 1080p uploads
stayed at 450-500 MB after they ended, and 125 MB once trimmed; a p128 model's sessions held
390 MB after loading, 230 once trimmed (bench/bench_realsize.py measures the process tree).
"""

from __future__ import annotations

import ctypes


def _libc() -> ctypes.CDLL | None:
    """The C library of this process, where it has ``malloc_trim`` (glibc; not musl or macOS)."""
    try:
        libc = ctypes.CDLL(None)  # the symbols already loaded, the C library's among them
    except OSError:
        return None
    return libc if hasattr(libc, "malloc_trim") else None


_LIBC = _libc()


def return_freed_memory() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim(0)``; a few
    microseconds on a small heap). A no-op where the C library has no ``malloc_trim``."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
