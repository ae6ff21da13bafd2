"""Uploads cannot lock the service out or blow its memory (issue 22): body timeouts (408, the
connection closed), no decode or inference slot while uploading, ``max_uploads`` and the
upload memory budget (503 + Retry-After, released on every path), the size limit while a
chunked multipart body streams in, and no temporary file."""

from __future__ import annotations

import asyncio
import json
import os
import select
import socket
import tempfile
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
import uvicorn
from prometheus_client.parser import text_string_to_metric_families

from service import routes
from service.app import create_app
from service.uploads import EVICTION_GRACE_S
from tests.service.test_service import settings
from tests.videos import make_video

BOUNDARY = "adafocus-test-boundary"
MULTIPART = {"content-type": f"multipart/form-data; boundary={BOUNDARY}"}
RAW = {"content-type": "video/mp4"}


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=16, width=128, height=128).read_bytes()


def gauge(app, name: str) -> float:
    """A metric's value as /metrics would show it."""
    text = app.state.metrics.render().decode()
    return next(s.value for f in text_string_to_metric_families(text) for s in f.samples if s.name == name)


def held_and_receiving(app) -> tuple[float, float]:
    return gauge(app, "adafocus_upload_bytes_held"), gauge(app, "adafocus_uploads_in_progress")


def problem(response: httpx.Response, status: int) -> dict:
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json"
    return response.json()


def run_app(app, scenario: Callable[[httpx.AsyncClient], object]) -> object:
    """``scenario(client)`` on ``app`` (lifespan run) over httpx's ASGI transport."""

    async def main():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test", timeout=30) as client:
                return await scenario(client)

    return asyncio.run(main())


async def until(condition: Callable[[], bool], timeout_s: float = 5.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        assert time.monotonic() < deadline, "timed out waiting"
        await asyncio.sleep(0.01)


def form_head(filename: str = "x.mp4", name: str = "video") -> bytes:
    return (
        f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
        "Content-Type: video/mp4\r\n\r\n"
    ).encode()


def form(*parts: bytes) -> bytes:
    return b"".join(parts) + f"\r\n--{BOUNDARY}--\r\n".encode()


# -- slow uploads, on a real server -----------------------------------------------------------
@pytest.fixture(scope="module")
def live() -> Iterator[tuple[str, int]]:
    """The service on a free port, with short body timeouts and one inference slot."""
    app = create_app(settings(max_in_flight=1, max_uploads=8, upload_idle_timeout_s=1.5, upload_min_kb_per_s=1.0))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not server.started:
        assert thread.is_alive() and time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}", port
    server.should_exit = True
    thread.join(timeout=30)


def _open_upload(port: int, content_length: int, first: bytes) -> socket.socket:
    connection = socket.create_connection(("127.0.0.1", port))
    head = (
        f"POST /v1/classify HTTP/1.1\r\nHost: test\r\nContent-Type: video/mp4\r\n"
        f"Content-Length: {content_length}\r\n\r\n"
    )
    connection.sendall(head.encode() + first)
    return connection


def _trickle_until_answered(connection: socket.socket, every_s: float | None, for_s: float = 0.0) -> bytes:
    """Send a byte every ``every_s`` for ``for_s`` seconds (never, if None), then wait for the
    server's answer and read it to the end of the connection. The sending stops well before
    the server cuts the upload: a byte that reaches a closed connection resets it, and the
    reset loses the answer before it is read."""
    stop = time.monotonic() + for_s
    deadline = time.monotonic() + 10
    while not select.select([connection], [], [], every_s or 0.05)[0]:
        assert time.monotonic() < deadline, "no answer: the upload was never cut"
        if every_s is not None and time.monotonic() < stop:
            connection.sendall(b"x")
    answer = b""
    connection.settimeout(10)
    while chunk := connection.recv(65536):
        answer += chunk
    connection.close()
    return answer  # the connection was closed by the server (recv returned b"")


def _parsed(answer: bytes) -> tuple[int, dict[str, str], dict]:
    head, _, body = answer.partition(b"\r\n\r\n")
    status_line, *lines = head.decode("latin-1").split("\r\n")
    headers = {name.lower(): value.strip() for name, _, value in (line.partition(":") for line in lines)}
    return int(status_line.split()[1]), headers, json.loads(body)


def test_slow_uploads_hold_no_inference_slot_and_are_cut_off(live, clip):
    """Slow-loris: four uploads at 4 bytes/s and one that declares 150 MB, sends 3 KB at once
    and then nothing. With one inference slot, a normal client still gets its 200s while they
    upload; each slow one gets a 408 once it is older than the idle timeout (1.5 s) and slower
    than 1 KB/s, the stalled one once it has been idle that long (its 3 KB keep its average
    above 1 KB/s until 3 s), and every connection is closed."""
    url, port = live
    started = time.monotonic()
    slow = [_open_upload(port, 1000, b"x") for _ in range(4)]
    lying = _open_upload(port, 150_000_000, b"abc" * 1000)
    with ThreadPoolExecutor(len(slow) + 1) as pool:
        # 4 bytes/s until 1.1 s: cut at 1.5 s by the rate rule (not idle for 1.5 s).
        answers = [pool.submit(_trickle_until_answered, c, 0.25, 1.1) for c in slow]
        answers.append(pool.submit(_trickle_until_answered, lying, None))
        for _ in range(3):
            response = httpx.post(f"{url}/v1/classify", files={"video": ("x.mp4", clip)}, timeout=30)
            assert response.status_code == 200, response.text[:500]
        assert not any(answer.done() for answer in answers)  # still uploading while the others were served
        results = [_parsed(answer.result()) for answer in answers]
    for status, headers, body in results:
        assert status == 408 and headers["content-type"] == "application/problem+json"
        assert headers["connection"] == "close" and body["title"] == "Upload too slow"
    assert all("averaged" in body["detail"] for _, _, body in results[:4])
    assert "nothing was received for 1.5 s" in results[4][2]["detail"]
    assert time.monotonic() - started < 8
    assert httpx.get(f"{url}/metrics").text.count("adafocus_uploads_in_progress 0.0") == 1


# -- body timeouts, admission and the memory budget, over ASGI --------------------------------
def _scope(headers: dict[str, str]) -> dict:
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "POST",
        "scheme": "http",
        "path": "/v1/classify",
        "raw_path": b"/v1/classify",
        "root_path": "",
        "query_string": b"",
        "headers": [(k.lower().encode(), v.encode()) for k, v in headers.items()],
        "client": ("127.0.0.1", 1),
        "server": ("test", 80),
    }


async def _answer(app, headers: dict[str, str], receive) -> tuple[int, dict[str, str], dict]:
    """Drive ``app`` with ``receive``; the answer's status, headers and JSON body."""
    sent: list[dict] = []

    async def send(message: dict) -> None:
        sent.append(message)

    await app(_scope(headers), receive, send)
    start = sent[0]
    body = b"".join(m.get("body", b"") for m in sent[1:])
    return start["status"], {k.decode(): v.decode() for k, v in start["headers"]}, json.loads(body)


def test_an_idle_or_too_slow_body_is_a_408_that_closes_the_connection():
    app = create_app(settings(upload_idle_timeout_s=0.3, upload_min_kb_per_s=1.0))

    async def silent():  # never sends a byte
        await asyncio.Event().wait()

    async def scenario(client):
        results = []
        for receive in (silent, _trickle):
            began = time.monotonic()
            status, headers, body = await _answer(app, RAW, receive)
            results.append((status, headers, body, time.monotonic() - began))
        return results + [held_and_receiving(app)]

    idle, slow, gauges = run_app(app, scenario)
    for status, headers, _, seconds in (idle, slow):
        assert status == 408 and headers["connection"] == "close" and 0.25 < seconds < 2.0
    assert "nothing was received for 0.3 s" in idle[2]["detail"]
    assert "below the minimum of 1 KB/s" in slow[2]["detail"]
    assert gauges == (0, 0)


async def _trickle() -> dict:
    """A byte every 50 ms: never idle, 20 bytes/s."""
    await asyncio.sleep(0.05)
    return {"type": "http.request", "body": b"x", "more_body": True}


def test_a_new_upload_cuts_the_slowest_one_when_every_slot_is_taken(clip):
    """Two slots, both held by uploads at 20 bytes/s (under the 1 KB/s minimum, but younger
    than the 5 s idle timeout, so not cut yet): a newcomer gets a 503 while they are young,
    then, past the grace, one of them is cut (408) for it and it is served."""
    app = create_app(settings(max_uploads=2, upload_idle_timeout_s=5.0, upload_min_kb_per_s=1.0))

    async def scenario(client):
        slow = [asyncio.create_task(_answer(app, RAW, _trickle)) for _ in range(2)]
        await until(lambda: held_and_receiving(app)[1] == 2)
        young = await client.post("/v1/classify", files={"video": ("x.mp4", clip)})
        await asyncio.sleep(EVICTION_GRACE_S)
        served = await client.post("/v1/classify", files={"video": ("x.mp4", clip)})
        cut = [task.result() for task in slow if task.done()]
        for task in slow:
            task.cancel()
        await asyncio.gather(*slow, return_exceptions=True)
        return young, served, cut, held_and_receiving(app)

    young, served, cut, gauges = run_app(app, scenario)
    assert problem(young, 503)["title"] == "Too many uploads"
    assert served.status_code == 200, served.text
    assert len(cut) == 1 and cut[0][0] == 408 and "make room" in cut[0][2]["detail"]
    assert gauges == (0, 0)


def _gated_body(data: bytes, opened: asyncio.Event | None, sent: list[int], chunk: int = 1024) -> AsyncIterator[bytes]:
    """``data`` in chunks, all but the first once ``opened`` is set (at once if None);
    ``sent[0]`` counts what was sent."""

    async def body():
        for at in range(0, len(data), chunk):
            if at and opened is not None:
                await opened.wait()
            sent[0] += len(data[at : at + chunk])
            yield data[at : at + chunk]

    return body()


def test_uploads_past_max_uploads_are_refused_while_the_others_finish(clip):
    app = create_app(settings(max_uploads=2))

    async def scenario(client):
        opened = asyncio.Event()
        post = lambda content: client.post("/v1/classify", content=content, headers=RAW)  # noqa: E731
        held = [asyncio.create_task(post(_gated_body(clip, opened, [0]))) for _ in range(2)]
        await until(lambda: held_and_receiving(app)[1] == 2)
        refused = await post(clip)
        opened.set()
        return refused, await asyncio.gather(*held), held_and_receiving(app)

    refused, served, gauges = run_app(app, scenario)
    assert problem(refused, 503)["title"] == "Too many uploads"
    assert refused.headers["retry-after"] == "1"
    assert [response.status_code for response in served] == [200, 200]
    assert gauges == (0, 0)


def test_the_upload_memory_budget_is_enforced_and_released_on_every_path(clip, monkeypatch):
    """0.5 MB for all uploads together: a declared length over it is refused up front; a chunked
    upload is refused as it passes it; the bytes are held while the video is decoded and
    released after a success, a refusal, a bad video and a client that disconnects."""
    app = create_app(settings(upload_memory_mb=0.5, max_upload_mb=1.0))
    held_while_classifying = []
    classify_video = routes.classify_video

    async def recording(job, decoder, metrics):
        held_while_classifying.append((len(job.video), held_and_receiving(app)[0]))
        return await classify_video(job, decoder, metrics)

    monkeypatch.setattr(routes, "classify_video", recording)

    async def scenario(client):
        big = b"\0" * 300_000
        declared = await client.post("/v1/classify", content=b"\0" * 600_000, headers=RAW)
        after_declared = held_and_receiving(app)
        opened, sent = asyncio.Event(), [0]
        headers = {**RAW, "content-length": str(len(big))}
        first = asyncio.create_task(client.post("/v1/classify", content=_gated_body(big, opened, [0]), headers=headers))
        await until(lambda: held_and_receiving(app) == (len(big), 1))
        chunked = await client.post("/v1/classify", content=_gated_body(big, None, sent), headers=RAW)
        opened.set()
        bad_video = await first  # 300 kB of zeros: read, then refused by the decoder
        ok = await client.post("/v1/classify", files={"video": ("x.mp4", clip)})

        async def disconnecting():
            disconnecting.calls += 1
            if disconnecting.calls == 1:
                return {"type": "http.request", "body": big[:1000], "more_body": True}
            return {"type": "http.disconnect"}

        disconnecting.calls = 0
        gone = await _answer(app, RAW, disconnecting)
        return declared, after_declared, chunked, sent[0], bad_video, ok, gone, held_and_receiving(app)

    declared, after_declared, chunked, sent, bad_video, ok, gone, gauges = run_app(app, scenario)
    assert problem(declared, 503)["title"] == "Upload memory exhausted" and declared.headers["retry-after"] == "1"
    assert after_declared == (0, 0)
    assert problem(chunked, 503)["title"] == "Upload memory exhausted"
    assert sent < 300_000  # refused while it streamed in, not once it was whole
    assert bad_video.status_code in (415, 422), bad_video.text
    assert ok.status_code == 200, ok.text
    assert held_while_classifying == [(300_000, 300_000), (len(clip), len(clip))]  # held until decoded
    assert gone[0] == 400 and gone[2]["title"] == "Upload interrupted"
    assert gauges == (0, 0)


# -- multipart while it streams in ------------------------------------------------------------
def _temporary_files(directory: Path) -> list[str]:
    """Files of ``directory`` open in this process, unlinked ones included (an unnamed
    ``TemporaryFile`` shows only here)."""
    found = []
    for fd in os.listdir("/proc/self/fd"):
        try:
            target = os.readlink(f"/proc/self/fd/{fd}")
        except OSError:
            continue
        if target.startswith(str(directory)):
            found.append(target)
    return found


def test_a_chunked_multipart_body_stops_at_the_limit_without_a_temporary_file(tmp_path, monkeypatch):
    spool = tmp_path / "tmp"
    spool.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(spool))  # tempfile.gettempdir()
    app = create_app(settings(max_upload_mb=1.0))
    sent, seen = [0], []

    async def body():  # 20 MB of multipart, chunked (no Content-Length)
        yield form_head()
        for chunk in range(320):
            sent[0] += 65536
            yield b"\0" * 65536
            if chunk % 8 == 0:
                seen.extend(_temporary_files(spool))
        yield f"\r\n--{BOUNDARY}--\r\n".encode()

    response = run_app(app, lambda client: client.post("/v1/classify", content=body(), headers=MULTIPART))
    assert sent[0] <= 1_000_000 + 2 * 65536  # stopped at the limit
    assert seen == [] and list(spool.iterdir()) == []
    assert problem(response, 413)["title"] == "Video too large" and response.headers["connection"] == "close"


def test_multipart_forms_are_parsed_as_they_come(clip):
    app = create_app(settings())
    field = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="note"\r\n\r\nhello\r\n'.encode()

    async def scenario(client):
        post = lambda content: client.post("/v1/classify", content=content, headers=MULTIPART)  # noqa: E731
        return (
            await post(form(field, form_head(), clip)),  # the video after another field
            await post(form_head() + clip),  # no closing boundary
            await post(b"this is not multipart at all"),
            await post(form(form_head(name="other"), clip)),  # no video field
            await post(form(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="video"\r\n\r\n'.encode(), clip)),
            await post(form(form_head(), b"")),  # an empty video
            held_and_receiving(app),
        )

    after_a_field, unclosed, garbage, other, not_a_file, empty, gauges = run_app(app, scenario)
    assert after_a_field.status_code == 200, after_a_field.text
    assert "closing boundary" in problem(unclosed, 400)["detail"]
    problem(garbage, 400)
    assert problem(other, 422)["title"] == "No video"
    assert problem(not_a_file, 422)["title"] == "No video"
    assert problem(empty, 422)["title"] == "Empty upload"
    assert gauges == (0, 0)


def test_the_415_detail_does_not_echo_a_long_content_type():
    app = create_app(settings())
    hostile = "text/plain; " + "x" * 5000
    response = run_app(
        app, lambda client: client.post("/v1/classify", content=b"hi", headers={"content-type": hostile})
    )
    detail = problem(response, 415)["detail"]
    assert len(detail) < 200 and "text/plain" in detail
