"""Giving freed memory back to the system.

glibc keeps memory freed into the middle of its heap: large blocks (FFmpeg's frame buffers,
3 MB each at 1080p; ONNX Runtime's copies of a model's weights while it loads) freed between
smaller live ones stay resident. A decoder process that served 16 concurrent 1080p uploads
stayed at 450-500 MB after they ended, and 125 MB once trimmed; a p128 model's sessions held
390 MB after loading, 230 once trimmed (bench/bench_realsize.py measures the process tree).

Trimming at chosen moments misses the peak, though: while 16 videos are in flight, blocks
freed by one batched step stay resident while the next allocates elsewhere. The server of the
full-frame ResNet-50 peaked at 779 MB under 16 concurrent 1080p uploads, 428 MB with glibc
told to give memory back as it is freed (:func:`release_freed_memory_eagerly`), at the same
videos/s.
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

# glibc's mallopt parameters (malloc.h)
_M_TRIM_THRESHOLD = -1
_M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 128 * 1024  # glibc's initial value, kept fixed


def release_freed_memory_eagerly() -> bool:
    """Make this process's allocator give freed memory back to the system as it goes.

    Two glibc settings, the ones ``MALLOC_TRIM_THRESHOLD_=0`` and ``MALLOC_MMAP_THRESHOLD_``
    set from the environment: free space at the top of the heap is returned at once (trim
    threshold 0), and blocks of 128 KiB or more get pages of their own that ``free`` unmaps.
    Fixing the mmap threshold matters: glibc otherwise raises it to the size of every large
    block freed, so the next frame buffers and activations land in the heap and stay there.
    Returns whether the settings took (False where the C library is not glibc)."""
    if _LIBC is None or not hasattr(_LIBC, "mallopt"):
        return False
    trimmed = _LIBC.mallopt(_M_TRIM_THRESHOLD, 0) == 1
    mapped = _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    return trimmed and mapped


def return_freed_memory() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim(0)``; a few
    microseconds on a small heap). A no-op where the C library has no ``malloc_trim``."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
