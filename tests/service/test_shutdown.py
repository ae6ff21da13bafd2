"""``python -m service`` drains on SIGTERM, as Kubernetes stops a pod (docs/deploy.md).

A classify upload is started and left half sent; the server gets SIGTERM; once it logs that
it waits for connections, a new connection must be refused, the rest of the upload is sent,
and the request must still get its 200 answer (so the decoders were still open: the lifespan
closes them only after the requests), then the process exits 0. No step waits on a fixed
sleep: each one waits for what the server says or does, with generous deadlines.
"""

from __future__ import annotations

import http.client
import json
import os
import queue
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from tests.paths import REPO, SHIPPED_MODELS
from tests.service.browser import free_port
from tests.videos import make_video

READY_WITHIN_S = 120
DEADLINE_S = 60  # each later step; generous, so a loaded machine does not fail the test
DRAINING = "Waiting for connections to close"  # uvicorn's log line once its sockets are closed


class Server:
    """``python -m service`` on the shipped model (CPU), with its log lines read as they come."""

    def __init__(self, port: int, graceful_shutdown_s: float = DEADLINE_S) -> None:
        environment = {
            **os.environ,
            "ADAFOCUS_MODEL_REPO": str(SHIPPED_MODELS),
            "ADAFOCUS_PROVIDERS": json.dumps(["CPUExecutionProvider"]),
            "ADAFOCUS_DECODE_WORKERS": "1",
            "ADAFOCUS_THREADS": "1",
            "ADAFOCUS_GRACEFUL_SHUTDOWN_S": str(graceful_shutdown_s),
            "ADAFOCUS_UPLOAD_IDLE_TIMEOUT_S": str(DEADLINE_S),  # the paused upload is not cut
        }
        self.port = port
        self.process = subprocess.Popen(
            [sys.executable, "-m", "service", "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO,
            env=environment,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.log: list[str] = []
        self._lines: queue.Queue[str | None] = queue.Queue()
        threading.Thread(target=self._read_log, daemon=True).start()

    def _read_log(self) -> None:
        for line in self.process.stderr:
            self._lines.put(line)
        self._lines.put(None)

    def wait_for_log(self, text: str) -> None:
        """Return once the server logged a line containing ``text`` (fail at its exit or the deadline)."""
        deadline = time.monotonic() + DEADLINE_S
        while not any(text in line for line in self.log):
            try:
                line = self._lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the server did not log {text!r} within {DEADLINE_S} s:\n{self.tail()}")
            if line is None:
                pytest.fail(f"the server exited before logging {text!r}:\n{self.tail()}")
            self.log.append(line)

    def wait_until_ready(self) -> None:
        deadline = time.monotonic() + READY_WITHIN_S
        while True:
            if self.process.poll() is not None:
                pytest.fail(f"the service exited before it was ready:\n{self.tail()}")
            try:
                if httpx.get(f"http://127.0.0.1:{self.port}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"the service was not ready within {READY_WITHIN_S} s")
            time.sleep(0.25)

    def tail(self) -> str:
        while not self._lines.empty():
            line = self._lines.get_nowait()
            if line is not None:
                self.log.append(line)
        return "".join(self.log[-30:])

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=DEADLINE_S)


@contextmanager
def running(graceful_shutdown_s: float = DEADLINE_S) -> Iterator[Server]:
    started = Server(free_port(), graceful_shutdown_s)
    try:
        started.wait_until_ready()
        yield started
    finally:
        started.stop()


@pytest.fixture
def server() -> Iterator[Server]:
    with running() as started:
        yield started


@pytest.fixture
def clip(tmp_path: Path) -> bytes:
    return make_video(tmp_path / "clip.mp4", frames=24, width=64, height=48).read_bytes()


def start_upload(port: int, body: bytes) -> http.client.HTTPConnection:
    """A raw ``video/mp4`` classify upload whose headers and first half are sent, the rest not."""
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=DEADLINE_S)
    connection.putrequest("POST", "/v1/classify?exit=off")
    connection.putheader("Content-Type", "video/mp4")
    connection.putheader("Content-Length", str(len(body)))
    connection.endheaders()
    connection.send(body[: len(body) // 2])
    return connection


def connection_refused(port: int) -> bool:
    """True when a new connection cannot be made, or the server answers it with nothing."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as probe:
            probe.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
            return probe.recv(1024) == b""
    except OSError:  # refused or reset
        return True


def test_sigterm_lets_the_request_in_flight_finish_refuses_new_ones_and_exits_0(server: Server, clip: bytes):
    upload = start_upload(server.port, clip)
    server.process.send_signal(signal.SIGTERM)
    server.wait_for_log(DRAINING)
    assert server.process.poll() is None, "the server exited with a request in flight"
    assert connection_refused(server.port)

    # Decoded and classified after SIGTERM: the decoders were still open.
    upload.send(clip[len(clip) // 2 :])
    response = upload.getresponse()
    body = response.read()
    assert response.status == 200, body
    assert json.loads(body)["labels"], body

    assert server.process.wait(timeout=DEADLINE_S) == 0, server.tail()
    log = server.tail()
    assert "Application shutdown complete" in log and "Traceback" not in log, log


def test_sigterm_when_idle_exits_0_at_once(server: Server):
    server.process.send_signal(signal.SIGTERM)
    assert server.process.wait(timeout=DEADLINE_S) == 0, server.tail()


def test_a_request_past_the_graceful_shutdown_timeout_is_cut_and_the_process_still_exits_0(clip: bytes):
    """ADAFOCUS_GRACEFUL_SHUTDOWN_S reaches uvicorn: an upload that never ends is cancelled after
    it (1 s here), long before its own idle timeout (DEADLINE_S) would cut it."""
    with running(graceful_shutdown_s=1) as server:
        upload = start_upload(server.port, clip)
        started = time.monotonic()
        server.process.send_signal(signal.SIGTERM)
        assert server.process.wait(timeout=DEADLINE_S) == 0, server.tail()
        assert time.monotonic() - started < DEADLINE_S / 2
        assert "timeout graceful shutdown exceeded" in server.tail()
        assert finished_status(upload, clip[len(clip) // 2 :]) in (None, 500)  # uvicorn's answer to the cut


def finished_status(upload: http.client.HTTPConnection, rest: bytes) -> int | None:
    """The status the rest of an upload gets, None when the connection is gone."""
    try:
        upload.send(rest)
        return upload.getresponse().status
    except (OSError, http.client.HTTPException):
        return None
