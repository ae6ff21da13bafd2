"""The inference service on the shipped model: endpoints, classification with exit, bad input."""

from __future__ import annotations

import base64
import io
import time
from pathlib import Path

import av
import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.decoding import decode_schedule
from service.registry import providers_in_use
from service.settings import Settings
from tests.paths import REPO
from training.data.synthetic import SyntheticConfig, generate


def settings(**overrides) -> Settings:
    return Settings(
        model_repo=REPO / "model_repo", providers=["CPUExecutionProvider"], decode_workers=1, threads=1, **overrides
    )


@pytest.fixture(scope="module")
def client():
    with TestClient(create_app(settings())) as client:
        yield client


@pytest.fixture(scope="module")
def videos(tmp_path_factory) -> list[tuple[Path, str]]:
    root = generate(tmp_path_factory.mktemp("videos"), SyntheticConfig(seed=21, train=1, calibration=1, test=4), 1)
    return [
        (root / path, f"pattern_{label}")
        for path, label in (line.split(",") for line in (root / "test.csv").read_text().splitlines())
    ]


def test_health_readiness_and_models(client):
    assert client.get("/healthz").json() == {"status": "ok"}
    ready = client.get("/readyz")
    assert ready.status_code == 200 and ready.json()["models"] == ["adafocus_v2 v2", "full_frame v1"]
    served = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    assert served["full_frame"]["focus"] == "full_frame" and served["full_frame"]["frames"]["patch_size"] is None
    model = served["adafocus_v2"]
    assert model["name"] == "adafocus_v2" and len(model["labels"]) == 10 and "files" not in model
    assert {"full", "balanced", "fast"} <= {n for p in model["operating_points"] for n in p["names"]}
    assert model["providers"] == ["CPUExecutionProvider"]


def test_the_served_providers_are_those_every_session_took():
    """ONNX Runtime drops a provider that fails to start without an error: /v1/models (and the
    GPU benchmark's check) report what the sessions run on, not what was asked for."""

    class Session:
        def __init__(self, providers: list[str]) -> None:
            self.providers = providers

        def get_providers(self) -> list[str]:
            return self.providers

    preferred = ["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]
    on_gpu = Session(["CUDAExecutionProvider", "CPUExecutionProvider"])
    assert providers_in_use({"glance": on_gpu, "focus": on_gpu}, preferred) == preferred[1:]
    fell_back = {"glance": on_gpu, "focus": Session(["CPUExecutionProvider"])}
    assert providers_in_use(fell_back, preferred) == ["CPUExecutionProvider"]


def test_server_runs_on_uvloop_and_the_c_http_parser():
    """``python -m service`` serves on uvloop and httptools (installed by the requirements)."""
    from fastapi import FastAPI
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

    from service.__main__ import server_config

    config = server_config(FastAPI(), "127.0.0.1", 0)
    config.load()
    assert config.http_protocol_class is HttpToolsProtocol
    loop = config.get_loop_factory()()
    try:
        assert type(loop).__module__.startswith("uvloop")
    finally:
        loop.close()


def test_classify_multipart_every_frame(client, videos):
    path, label = videos[0]
    response = client.post("/classify", params={"exit": "off", "top_k": 3}, files={"video": path.open("rb")})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["labels"][0]["label"] == label and len(body["labels"]) == 3
    assert body["exit"]["frames_processed"] == 8 and body["exit"]["step"] == 7
    assert body["gmacs"]["spent"] == pytest.approx(body["gmacs"]["full_model"])
    assert len(body["frames"]) == 8 and response.headers["x-request-id"] == body["request_id"]
    assert set(body["timings_s"]) == {"decode", "glance", "focus", "classify"}
    served = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    patch = served["adafocus_v2"]["frames"]["patch_size"]  # the videos are 128 x 128, as the frames
    for frame in body["frames"]:
        box = frame["box"]
        assert 0 <= box["x"] and box["x"] + box["width"] <= 128 and box["width"] == pytest.approx(patch)


def test_classify_raw_body_with_early_exit(client, videos):
    for path, label in videos:
        response = client.post(
            "/classify", params={"exit": "fast"}, content=path.read_bytes(), headers={"content-type": "video/mp4"}
        )
        body = response.json()
        assert response.status_code == 200 and body["labels"][0]["label"] == label
        assert len(body["frames"]) == body["exit"]["frames_processed"] == body["exit"]["step"] + 1
        assert body["gmacs"]["spent"] <= body["gmacs"]["full_model"]
        assert body["exit"]["operating_point"] == "fast"


def test_thumbnails_and_skipped_frames(client, videos):
    path, _ = videos[1]
    every = client.post("/classify", params={"exit": "off"}, files={"video": path.open("rb")}).json()
    assert "thumbnail" not in every["frames"][0] and every["skipped_frames"] == []
    body = client.post("/classify", params={"exit": "fast", "thumbnails": True}, files={"video": path.open("rb")})
    body = body.json()
    processed, skipped = body["frames"], body["skipped_frames"]
    assert [f["step"] for f in processed + skipped] == list(range(8))
    # A skipped frame is where a full run would have processed it; it was decoded only if it
    # shared a decode stage with a processed frame.
    assert [f["frame_index"] for f in processed + skipped] == [f["frame_index"] for f in every["frames"]]
    stages = decode_schedule(range(8))
    exit_stage = next(i for i, stage in enumerate(stages) if body["exit"]["step"] in stage)
    decoded = {p for stage in stages[: exit_stage + 1] for p in stage}
    assert [f["decoded"] for f in skipped] == [f["step"] in decoded for f in skipped]
    for frame in processed + [f for f in skipped if f["decoded"]]:
        jpeg = base64.b64decode(frame["thumbnail"].removeprefix("data:image/jpeg;base64,"))
        with av.open(io.BytesIO(jpeg)) as image:
            picture = next(image.decode(video=0))
        assert (picture.width, picture.height) == (128, 128)  # the whole 128 x 128 video frame


def test_the_classify_alias_answers_as_the_versioned_route(client, videos):
    """POST /classify is POST /v1/classify: the same answers, errors and latency metric."""
    path, _ = videos[2]

    def answer(route: str, **request) -> dict:
        response = client.post(route, headers={"x-request-id": "same", **request.pop("headers", {})}, **request)
        body = response.json()
        if response.status_code == 200:
            body["timings_s"] = set(body["timings_s"])  # wall times differ, their stages do not
        else:
            body.pop("instance")  # the path asked for
        return {"status": response.status_code, "type": response.headers["content-type"], "body": body}

    def timed() -> float:
        lines = client.get("/metrics").text.splitlines()
        return sum(float(line.split()[-1]) for line in lines if line.startswith("adafocus_request_seconds_count"))

    before = timed()
    requests = [
        {"params": {"exit": "off", "top_k": 3}, "files": {"video": ("x.mp4", path.read_bytes())}},
        {
            "params": {"exit": "fast", "thumbnails": True},
            "content": path.read_bytes(),
            "headers": {"content-type": "video/mp4"},
        },
        {"content": b"hello", "headers": {"content-type": "text/plain"}},
    ]
    for request in requests:
        versioned = answer("/v1/classify", **dict(request))
        assert versioned == answer("/classify", **dict(request))
    assert versioned["status"] == 415
    assert timed() - before == 2 * len(requests)  # both paths are timed


def _problem(response, status: int) -> dict:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    return body


def test_bad_input_gets_problem_details(client, videos):
    garbage = _problem(client.post("/classify", files={"video": ("x.mp4", b"not a video at all" * 100)}), 415)
    assert "format" in garbage["title"].lower()
    data = videos[0][0].read_bytes()
    truncated = client.post("/classify", content=data[: len(data) // 3], headers={"content-type": "video/mp4"})
    assert truncated.status_code in (415, 422)
    _problem(truncated, truncated.status_code)
    _problem(client.post("/classify", content=b"hello", headers={"content-type": "text/plain"}), 415)
    _problem(client.post("/classify", files={"other": ("x.mp4", data)}), 422)
    _problem(client.post("/classify", params={"model": "nope"}, files={"video": ("x.mp4", data)}), 404)
    _problem(client.post("/classify", params={"exit": "sometimes"}, files={"video": ("x.mp4", data)}), 422)
    _problem(client.post("/classify", params={"top_k": 0}, files={"video": ("x.mp4", data)}), 422)
    _problem(client.post("/classify", content=b"", headers={"content-type": "video/mp4"}), 422)
    # The service is still fine afterwards.
    assert client.post("/classify", files={"video": ("x.mp4", data)}).status_code == 200


def test_upload_limit(videos):
    with TestClient(create_app(settings(max_upload_mb=0.01))) as small:
        body = _problem(small.post("/classify", files={"video": ("x.mp4", videos[0][0].read_bytes())}), 413)
        assert "limit" in body["detail"]


def test_service_never_imports_torch():
    import subprocess
    import sys

    code = (
        "import sys\n"
        "from fastapi.testclient import TestClient\n"
        "from service.app import create_app\n"
        "from service.settings import Settings\n"
        f"with TestClient(create_app(Settings(model_repo={str(REPO / 'model_repo')!r}, decode_workers=1))) as c:\n"
        "    assert c.get('/readyz').status_code == 200\n"
        "assert 'torch' not in sys.modules, 'the service imported torch'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_metrics_count_requests_stages_exits_and_errors(client, videos):
    client.post("/classify", files={"video": videos[1][0].open("rb")})
    refused = client.post("/classify", content=b"hello", headers={"content-type": "text/plain", "x-request-id": "r-1"})
    assert refused.headers["x-request-id"] == "r-1" and refused.json()["request_id"] == "r-1"  # the caller's id
    text = client.get("/metrics").text
    for stage in ("decode", "glance", "focus", "classify"):
        assert f'adafocus_stage_seconds_count{{stage="{stage}"}}' in text
    assert 'adafocus_request_seconds_count{status="200"}' in text
    assert 'adafocus_request_seconds_count{status="415"}' in text
    assert 'adafocus_errors_total{kind="Unsupported media type"}' in text
    assert "adafocus_exit_step_count" in text and "adafocus_requests_in_flight 0.0" in text


def test_api_key_and_overload(videos):
    with TestClient(create_app(settings(api_key="s3cret", max_in_flight=1))) as guarded:
        data = videos[0][0].read_bytes()
        _problem(guarded.post("/classify", files={"video": ("x.mp4", data)}), 401)
        _problem(guarded.get("/v1/models"), 401)
        assert guarded.get("/healthz").status_code == 200  # probes need no key
        headers = {"Authorization": "Bearer s3cret"}
        assert guarded.post("/classify", files={"video": ("x.mp4", data)}, headers=headers).status_code == 200
        guarded.app.state.metrics.enter()  # one request already being served
        busy = guarded.post("/classify", files={"video": ("x.mp4", data)}, headers=headers)
        _problem(busy, 503)
        assert busy.headers["retry-after"] == "1"
        guarded.app.state.metrics.leave()


def test_concurrent_requests_are_batched(videos):
    """Many requests at once: every answer right, and batched steps carried frames of several videos."""
    import asyncio

    import httpx

    app = create_app(settings(max_wait_ms=20.0))

    async def scenario():
        async with app.router.lifespan_context(app):
            transport = httpx.ASGITransport(app=app)
            async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:

                async def one(path, label):
                    response = await client.post(
                        "/classify", params={"exit": "off"}, files={"video": path.read_bytes()}
                    )
                    return response.json()["labels"][0]["label"] == label

                results = await asyncio.gather(*(one(path, label) for path, label in videos * 3))
                metrics = (await client.get("/metrics")).text
        return results, metrics

    results, metrics = asyncio.run(scenario())
    assert all(results) and len(results) == 12
    sizes = {
        line.split("le=")[1].split("}")[0].strip('"'): float(line.rsplit(" ", 1)[1])
        for line in metrics.splitlines()
        if line.startswith("adafocus_batch_size_bucket")
    }
    calls = sizes["+Inf"]
    assert calls < 12 * 8  # fewer batched steps than frames
    assert sizes["1.0"] < calls  # some batches carried more than one frame


def test_a_crashing_or_hanging_decoder_does_not_take_the_server_down(videos, monkeypatch):
    from service import decoding
    from tests.service import hostile_decoders

    monkeypatch.setattr(decoding, "HARD_DEADLINE_MARGIN_S", 1.0)
    with TestClient(create_app(settings(decode_timeout_s=1.0))) as client:
        pool = client.app.state.decoder
        data = videos[0][0].read_bytes()
        pool.open_function = hostile_decoders.crash
        body = _problem(client.post("/classify", files={"video": ("x.mp4", data)}), 422)
        assert "crashed" in body["detail"]
        pool.open_function = hostile_decoders.hang
        started = time.perf_counter()
        _problem(client.post("/classify", files={"video": ("x.mp4", data)}), 504)
        assert time.perf_counter() - started < 10
        pool.open_function = decoding.open_reader
        # The hung worker's successor is still starting (a new process that imports PyAV): give
        # the backstop its usual margin, so a loaded machine's slow start is not read as a hang.
        monkeypatch.setattr(decoding, "HARD_DEADLINE_MARGIN_S", 5.0)
        assert client.post("/classify", files={"video": ("x.mp4", data)}).status_code == 200


def test_real_malformed_files_get_their_status(client, tmp_path):
    from tests.videos import make_audio_only, make_video

    audio = make_audio_only(tmp_path / "audio.mp4").read_bytes()
    body = _problem(client.post("/classify", files={"video": ("a.mp4", audio)}), 422)
    assert "video stream" in body["title"].lower()
    long_video = make_video(tmp_path / "long.mp4", frames=60, fps=10).read_bytes()  # 6 s
    with TestClient(create_app(settings(max_duration_s=2.0))) as short:
        body = _problem(short.post("/classify", files={"video": ("x.mp4", long_video)}), 422)
        assert "limit" in body["title"].lower()
    with TestClient(create_app(settings(max_pixels=32 * 32))) as small:
        _problem(small.post("/classify", files={"video": ("x.mp4", long_video)}), 422)


def test_frames_after_an_early_exit_are_not_decoded(client, videos):
    path = videos[0][0]
    full = client.post("/classify", params={"exit": "off"}, files={"video": path.open("rb")}).json()
    served = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    cheapest = min(point["expected_gmacs"] for point in served["adafocus_v2"]["operating_points"])
    # The cheapest point, by its cost (a budget below it is refused).
    early = client.post("/classify", params={"exit": repr(cheapest)}, files={"video": path.open("rb")}).json()
    assert early["exit"]["step"] == 0 and full["exit"]["step"] == 7
    assert early["exit"]["frames_decoded"] * 4 < full["exit"]["frames_decoded"]  # 3 of 27 here
    assert full["frames"][0]["frame_index"] == early["frames"][0]["frame_index"]


def test_keyframes_sampling_samples_keyframes_and_says_so(client, tmp_path):
    from tests.videos import make_video

    # 32 frames, a keyframe every 8; the model samples 8 frames.
    data = make_video(tmp_path / "k.mp4", frames=32, gop=8).read_bytes()
    keyframes = client.post(
        "/v1/classify", params={"exit": "off", "sampling": "keyframes"}, files={"video": ("k.mp4", data)}
    ).json()
    uniform = client.post("/v1/classify", params={"exit": "off"}, files={"video": ("k.mp4", data)}).json()
    assert keyframes["sampling"] == "keyframes" and uniform["sampling"] == "uniform"
    assert {frame["frame_index"] for frame in keyframes["frames"]} == {0, 8, 16, 24}
    assert keyframes["exit"]["frames_decoded"] == 4 < uniform["exit"]["frames_decoded"]
    early = client.post(
        "/v1/classify", params={"exit": "fast", "sampling": "keyframes"}, files={"video": ("k.mp4", data)}
    ).json()
    # The frames after an exit are where keyframes sampling would have put them.
    assert {frame["frame_index"] for frame in early["skipped_frames"]} <= {0, 8, 16, 24}
    body = _problem(client.post("/v1/classify", params={"sampling": "every"}, files={"video": ("k.mp4", data)}), 422)
    assert "sampling" in str(body)


def test_need_probabilities_are_the_share_of_videos_reading_each_stage():
    from service.decoding import need_probabilities

    # Stages [3], [0], [6, 1], [4, 7, 2, 5] start at steps 0, 1, 2, 4.
    fractions = [0.5, 0.2, 0.1, 0.1, 0.05, 0.05, 0.0, 0.0]
    need = need_probabilities([3, 0, 6, 1, 4, 7, 2, 5], fractions)
    assert need[3] == 1.0 and need[0] == pytest.approx(0.5)
    assert need[6] == need[1] == pytest.approx(0.3)
    assert need[4] == need[7] == need[2] == need[5] == pytest.approx(0.1)
    assert need_probabilities(range(4), [0.0, 0.0, 0.0, 1.0]) == [1.0, 1.0, 1.0, 1.0]


def test_decode_schedule_doubles_after_the_first_two_steps():
    assert decode_schedule(range(8)) == [[0], [1], [2, 3], [4, 5, 6, 7]]
    # Coarse to fine: the same stages, in step order (the reader keeps the samples it passes).
    assert decode_schedule([3, 0, 6, 1, 4, 7, 2, 5]) == [[3], [0], [6, 1], [4, 7, 2, 5]]
    for length in range(1, 20):
        stages = decode_schedule(range(length))
        assert [p for stage in stages for p in stage] == list(range(length))


class _RecordingSession:
    """Stands in for a decode session: records what each read asked for, reads with a ClipReader."""

    def __init__(self, data, num_samples, geometry) -> None:
        from pipeline.frames.decode import ClipReader

        self.reader = ClipReader(io.BytesIO(data), num_samples, geometry)
        self.calls: list[list[int]] = []
        self.closed = False

    async def read(self, positions, previews=False):
        self.calls.append(list(positions))
        return self.reader.read(positions, previews, normalised=False)  # as the decoder pool sends them

    def close(self):
        self.closed = True
        self.reader.close()


def test_lazy_clip_decodes_in_stages_and_gives_the_full_decodes_samples(videos):
    import asyncio

    import numpy as np

    from pipeline.frames.decode import read_clip
    from pipeline.frames.transform import FrameGeometry, normalise
    from service.decoding import LazyClip

    data, geometry = videos[1][0].read_bytes(), FrameGeometry(128, 128)
    full = read_clip(io.BytesIO(data), 8, geometry)

    async def first_steps(order, steps):
        session = _RecordingSession(data, 8, geometry)
        clip = LazyClip(session, 8, order=order)
        frames = [await clip.frame(position) for position in order[:steps]]
        clip.close()
        assert session.closed
        return session.calls, clip, frames

    calls, clip, frames = asyncio.run(first_steps(list(range(8)), 3))
    assert calls == [[0], [1], [2, 3]] and sorted(clip.frames) == [0, 1, 2, 3]
    for position, frame in enumerate(frames):
        np.testing.assert_array_equal(normalise(frame)[0], full.frames[position])
    exit_at_step_1 = clip.decoded_frames
    calls, clip, _ = asyncio.run(first_steps(list(range(8)), 2))
    assert clip.decoded_frames < full.decoded_frames  # an exit at step 1 decodes part of the clip

    session = _RecordingSession(data, 8, geometry)
    every = LazyClip(session, 8)  # no exit possible: one call for every sample
    asyncio.run(every.frame(0))
    assert session.calls == [list(range(8))] and every.decoded_frames == full.decoded_frames
    assert exit_at_step_1 > clip.decoded_frames


def test_decode_sessions_survive_a_crash_of_their_worker_and_a_cancelled_read(videos):
    import asyncio

    import numpy as np

    from pipeline.frames.decode import read_clip
    from pipeline.frames.limits import DecodeLimits
    from pipeline.frames.transform import FrameGeometry, normalise
    from service.decoding import DecoderPool, open_reader
    from service.problems import Problem
    from tests.service import hostile_decoders

    geometry = FrameGeometry(128, 128)
    first, second = (videos[i][0].read_bytes() for i in (0, 1))
    full = {data: read_clip(io.BytesIO(data), 8, geometry).frames for data in (first, second)}

    async def scenario():
        pool = DecoderPool(2, DecodeLimits(max_wall_s=10.0))
        try:
            await pool.warm_up()
            kept = pool.session(first, 8, geometry)
            filler = pool.session(first, 8, geometry)  # takes the other worker
            np.testing.assert_array_equal(normalise((await kept.read([0, 1])).frames), full[first][:2])
            pool.open_function = hostile_decoders.crash
            doomed = pool.session(second, 8, geometry)
            assert doomed.worker is kept.worker
            with pytest.raises(Problem) as crashed:
                await doomed.read([0])
            assert crashed.value.status == 422
            pool.open_function = open_reader
            # Its worker was replaced: the kept session opens again there and reads on.
            np.testing.assert_array_equal(normalise((await kept.read([2, 3])).frames), full[first][2:4])

            doomed.close()
            pool.open_function = hostile_decoders.slow
            slow = pool.session(first, 8, geometry)
            pool.open_function = open_reader
            filler_too = pool.session(first, 8, geometry)  # the other worker again
            other = pool.session(second, 8, geometry)
            assert slow.worker is kept.worker and other.worker is kept.worker
            cancelled = asyncio.ensure_future(slow.read([0, 1]))
            await asyncio.sleep(0.2)  # its message is in the worker now
            cancelled.cancel()
            # The cancelled read's reply must not become this one's.
            np.testing.assert_array_equal(normalise((await other.read([0, 1, 2])).frames), full[second][:3])
            assert slow.id in slow.worker.open_ids  # the cancelled exchange still ran to its end
            for session in (kept, filler, filler_too, slow, other):
                session.close()
            await asyncio.sleep(0.05)  # the closes go out in the background
            assert all(worker.sessions == 0 for worker in pool._workers)
            # The cancelled read still opened its video; closing the session closed it there too.
            assert await pool.open_sessions() == [0, 0]
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_closing_the_decoder_pool_ends_its_workers_at_once(videos):
    """Closing the sockets ends the workers' loops: no 2-second wait and kill at shutdown."""
    import asyncio

    from pipeline.frames.limits import DecodeLimits
    from pipeline.frames.transform import FrameGeometry
    from service.decoding import DecoderPool

    async def scenario():
        pool = DecoderPool(2, DecodeLimits(max_wall_s=10.0))
        await pool.warm_up()
        session = pool.session(videos[0][0].read_bytes(), 8, FrameGeometry(128, 128))
        await session.read([0])
        session.close()
        await pool.close()  # waits 2 s for each worker before killing it
        return [worker.process.exitcode for worker in pool._workers]

    assert asyncio.run(scenario()) == [0, 0]  # ended on their own (a kill reads -9)


def test_the_servers_socket_framing_is_multiprocessings():
    """The server side speaks ``multiprocessing.connection``'s framing over asyncio streams; the
    worker side keeps ``Connection``: messages must cross both ways, small and large."""
    import asyncio
    import multiprocessing

    import numpy as np

    from service.decoding import _frame, _raw_frame, _read_framed, socket_of

    small, large = ("ping",), ("ok", np.arange(300_000, dtype=np.uint8), b"x" * 70_000)

    async def scenario():
        ours, theirs = multiprocessing.Pipe()
        reader, writer = await asyncio.open_unix_connection(sock=socket_of(ours))
        try:
            for message in (small, large):
                receiving = asyncio.ensure_future(asyncio.to_thread(theirs.recv))
                writer.writelines(_frame(message))
                await writer.drain()
                got = await asyncio.wait_for(receiving, 10)  # a wrong frame would leave it waiting
                assert got[0] == message[0] and len(got) == len(message)
                sending = asyncio.ensure_future(asyncio.to_thread(theirs.send, message))
                back = await asyncio.wait_for(_read_framed(reader), 10)
                await sending
                assert back[0] == message[0] and len(back) == len(message)
            np.testing.assert_array_equal(back[1], large[1])
            upload = bytes(range(256)) * 4000  # an upload goes raw, after the message that opens it
            receiving = asyncio.ensure_future(asyncio.to_thread(theirs.recv_bytes))
            writer.writelines(_raw_frame(upload))
            await writer.drain()
            assert await asyncio.wait_for(receiving, 10) == upload
            theirs.close()
            with pytest.raises(EOFError):  # the worker gone: asyncio.IncompleteReadError
                await _read_framed(reader)
        finally:
            writer.close()  # ends a recv still waiting in its thread
            theirs.close()

    asyncio.run(scenario())


def test_videos_waiting_for_a_stalled_decoder_move_to_another(videos):
    import asyncio

    import numpy as np

    from pipeline.frames.decode import read_clip
    from pipeline.frames.limits import DecodeLimits
    from pipeline.frames.transform import FrameGeometry, normalise
    from service.decoding import STALLED_AFTER_S, DecoderPool, open_reader
    from tests.service import hostile_decoders

    geometry = FrameGeometry(128, 128)
    data = videos[0][0].read_bytes()
    full = read_clip(io.BytesIO(data), 8, geometry).frames

    async def scenario():
        pool = DecoderPool(2, DecodeLimits(max_wall_s=10.0))
        try:
            await pool.warm_up()
            waiting = pool.session(data, 8, geometry)
            pool.session(data, 8, geometry)  # takes the other worker
            np.testing.assert_array_equal(normalise((await waiting.read([0])).frames), full[:1])
            pool.open_function = hostile_decoders.stall
            slow = pool.session(data, 8, geometry)
            pool.open_function = open_reader
            assert slow.worker is waiting.worker
            stalled = asyncio.ensure_future(slow.read([0]))
            await asyncio.sleep(STALLED_AFTER_S + 0.3)
            started = time.perf_counter()
            np.testing.assert_array_equal(normalise((await waiting.read([1, 2])).frames), full[1:3])
            assert time.perf_counter() - started < 1.5  # not behind the 3 s stall
            assert waiting.worker is not slow.worker
            np.testing.assert_array_equal(normalise((await stalled).frames), full[:1])
        finally:
            await pool.close()

    asyncio.run(scenario())


def test_an_early_exit_request_tells_its_reader_how_many_videos_read_each_stage(client):
    """The point's calibrated exit fractions reach the reader (it seeks past rarely needed
    samples); ``full`` and no exit read every sample in one call and pass none."""
    from service.classify import _open_clip, choose_point
    from service.decoding import need_probabilities

    class Recorder:
        def session(self, data, samples, geometry, sampling, need=None):
            self.need = need
            return self

    model = client.app.state.registry.get("adafocus_v2")
    order = model.pipeline.manifest.frames.order
    for choice in ("balanced", "full", None):
        recorder = Recorder()
        exit = choose_point(model, choice)
        _open_clip(model, b"", recorder, exit, thumbnails=False)
        expected = need_probabilities(order, exit.point.exit_fractions) if choice == "balanced" else None
        assert recorder.need == expected
    assert min(need_probabilities(order, choose_point(model, "balanced").point.exit_fractions)) < 1.0
