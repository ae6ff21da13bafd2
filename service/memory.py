"""Giving freed memory back to the system.

glibc keeps memory freed into the middle of its heap: large blocks (FFmpeg's frame buffers,
3 MB each at 1080p; ONNX Runtime's copies of a model's weights while it loads) freed between
smaller live ones stay resident. A decoder process that served 16 concurrent 1080p uploads
stayed at 450-500 MB after they ended, and 125 MB once trimmed; a p128 model's sessions held
390 MB after loading, 230 once trimmed (bench/bench_realsize.py measures the process tree).

Trimming at chosen moments misses the peak, though: while 16 videos are in flight, blocks
freed by one batched step stay resident while the next allocates elsewhere. The server of the
full-frame ResNet-50 and its decoders peaked at 1031-1053 MB under 16 concurrent 1080p
uploads, 691-704 MB with glibc told to give large blocks back as they are freed
(:func:`release_freed_memory_eagerly`), at the same videos/s.
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
# Measured at 16 concurrent 1080p uploads (2 cores): a 128 KiB mmap threshold and no trim
# threshold cut the most but cost the INT8 server 20% more CPU (page faults on every batch's
# buffers); 4 MiB / 32 MiB kept the CPU but left the full-frame tree at 750-780 MB; 1 MiB /
# 8 MiB: 690-700 MB at 5-10% of the server's CPU.
MMAP_THRESHOLD_BYTES = 1 << 20
TRIM_THRESHOLD_BYTES = 8 << 20


def release_freed_memory_eagerly() -> bool:
    """Make this process's allocator give freed memory back to the system as it goes.

    Two glibc settings, the ones ``MALLOC_MMAP_THRESHOLD_`` and ``MALLOC_TRIM_THRESHOLD_`` set
    from the environment: blocks of 1 MiB or more get pages of their own, which ``free``
    unmaps, and more than 8 MiB free at the top of the heap is returned at once. Fixing the
    mmap threshold is what matters: glibc otherwise raises it to the size of every large block
    freed, so the next frame buffers and activations land in the heap and stay there.
    Returns whether the settings took (False where the C library is not glibc)."""
    if _LIBC is None or not hasattr(_LIBC, "mallopt"):
        return False
    trimmed = _LIBC.mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD_BYTES) == 1
    mapped = _LIBC.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES) == 1
    return trimmed and mapped


def return_freed_memory() -> None:
    """Return the heap's free pages to the system (glibc's ``malloc_trim(0)``; a few
    microseconds on a small heap). A no-op where the C library has no ``malloc_trim``."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)
