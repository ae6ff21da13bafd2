"""service.memory: freed memory goes back to the system (glibc only)."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from service.memory import _LIBC
from tests.paths import REPO, SHIPPED_MODELS

# A fresh interpreter per case: the allocator's settings are process-wide and sticky.
# Large blocks freed among live ones: glibc keeps them resident unless told otherwise (after a
# 4 MB block is freed it serves 2 MB blocks from the heap, as it does a model's weights and
# FFmpeg's frame buffers).
_RETAINED_MB = textwrap.dedent(
    """
    import ctypes, sys
    from service.memory import release_freed_memory_eagerly

    if sys.argv[1] == "eager":
        assert release_freed_memory_eagerly()
    libc = ctypes.CDLL(None)
    libc.malloc.restype = ctypes.c_void_p
    libc.malloc.argtypes = [ctypes.c_size_t]
    libc.free.argtypes = [ctypes.c_void_p]

    def rss_mb():
        with open("/proc/self/status") as status:
            line = next(line for line in status if line.startswith("VmRSS"))
        return int(line.split()[1]) / 1024

    libc.free(libc.malloc(4 << 20))
    before = rss_mb()
    blocks = []
    for _ in range(100):
        block = libc.malloc(2 << 20)
        ctypes.memset(block, 1, 2 << 20)  # resident, not just reserved
        blocks.append(block)
    for block in blocks[::2]:  # every other one: each freed block lies between live ones
        libc.free(block)
    live_mb = 100
    print(rss_mb() - before - live_mb)
    """
)


def _retained_mb(mode: str) -> float:
    result = subprocess.run(
        [sys.executable, "-c", _RETAINED_MB, mode], cwd=REPO, capture_output=True, text=True, check=True
    )
    return float(result.stdout)


@pytest.mark.skipif(_LIBC is None, reason="the C library is not glibc")
def test_freed_blocks_go_back_to_the_system_once_told_to():
    assert _retained_mb("default") > 60  # the case the setting exists for
    assert _retained_mb("eager") < 10


@pytest.mark.parametrize("release", [True, False])
def test_the_server_and_its_decoders_follow_the_setting(monkeypatch, release: bool):
    """ADAFOCUS_RELEASE_FREED_MEMORY (on by default): the server sets its allocator before the
    models load, and each decoder process its own (they do not share the server's settings)."""
    from fastapi.testclient import TestClient

    import service.app
    from service.settings import Settings

    assert Settings().release_freed_memory is True
    calls: list[bool] = []
    monkeypatch.setattr(service.app, "release_freed_memory_eagerly", lambda: calls.append(True) or True)
    settings = Settings(
        model_repo=SHIPPED_MODELS, providers=["CPUExecutionProvider"], decode_workers=1, release_freed_memory=release
    )
    with TestClient(service.app.create_app(settings)) as client:
        assert client.get("/readyz").status_code == 200
        workers = client.app.state.decoder._workers
        assert [worker.release_freed_memory for worker in workers] == [release]
    assert calls == ([True] if release else [])
