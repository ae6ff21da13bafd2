"""The service as users start it and Debian's Chromium, for the browser tests (test_web.py,
test_docs_offline.py).

``make test`` installs Chromium (package ``chromium``); without it the browser tests skip on a
developer's machine and fail under CI, where it must be there.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.paths import REPO

CHROMIUM = Path(os.environ.get("CHROMIUM", "/usr/bin/chromium"))
# Headless as root on a machine without network: no sandbox, no background connections.
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
OUTPUT = REPO / "test-output" / "web"  # screenshots
READY_WITHIN_S = 120


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextmanager
def running_service() -> Iterator[str]:
    """``python -m service`` on the shipped model (CPU) on a free loopback port; yields its URL
    once ``/readyz`` is 200, and stops it at the end."""
    port = free_port()
    environment = {
        **os.environ,
        "ADAFOCUS_MODEL_REPO": str(REPO / "model_repo"),
        "ADAFOCUS_PROVIDERS": json.dumps(["CPUExecutionProvider"]),
        "ADAFOCUS_DECODE_WORKERS": "1",
        "ADAFOCUS_THREADS": "1",
    }
    server = subprocess.Popen(
        [sys.executable, "-m", "service", "--port", str(port)],
        cwd=REPO,
        env=environment,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_until_ready(server, url)
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def _wait_until_ready(server: subprocess.Popen, url: str) -> None:
    deadline = time.monotonic() + READY_WITHIN_S
    while True:
        if server.poll() is not None:
            pytest.fail(f"the service exited: {server.stderr.read().decode()[-2000:]}")
        try:
            if httpx.get(f"{url}/readyz", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            pytest.fail(f"the service was not ready within {READY_WITHIN_S} s")
        time.sleep(0.25)


@contextmanager
def chromium():
    """A Playwright browser on Debian's Chromium (skips, or fails under CI, without it)."""
    if not CHROMIUM.exists():
        message = f"{CHROMIUM} is missing: `make test` installs Debian's chromium package"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()
