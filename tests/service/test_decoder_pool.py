"""The decoder processes survive hostile files and their own deaths (issue 22, "decoders"):
a worker that dies mid-read is logged, counted and replaced, and the read is made again in
the new process (a second death is the file's fault, 422; no retry possible, 503); a hung
one is counted too; workers are recycled after N videos or past a memory bound, never
under a request; the decode budget reaches the service's answers."""

from __future__ import annotations

import asyncio
import functools
import io
import logging
import os
import signal
import time

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.frames.decode import read_clip
from pipeline.frames.limits import DecodeLimits
from pipeline.frames.transform import FrameGeometry, normalise
from service import decoding
from service.app import create_app
from service.decoding import DecoderPool, open_reader
from service.metrics import Metrics
from service.problems import Problem
from tests.pipeline.test_decode_budget import amplification_video
from tests.service import hostile_decoders
from tests.service.test_service import settings
from tests.videos import make_video

GEOMETRY = FrameGeometry(128, 128)
LOGGER = "service.decoding"


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return make_video(tmp_path_factory.mktemp("pool") / "clip.mp4", frames=16, width=128, height=128).read_bytes()


@pytest.fixture(scope="module")
def full(clip) -> np.ndarray:
    return read_clip(io.BytesIO(clip), 8, GEOMETRY).frames


def restarts(metrics: Metrics, cause: str) -> float:
    return metrics.registry.get_sample_value("adafocus_decoder_restarts_total", {"cause": cause}) or 0.0


def run(scenario, workers: int = 2, **pool_options):
    """``scenario(pool)`` on a started pool of ``workers`` decoders, closed afterwards."""

    async def main():
        pool = DecoderPool(workers, DecodeLimits(max_wall_s=10.0), **pool_options)
        try:
            await pool.warm_up()
            return await scenario(pool)
        finally:
            await pool.close()

    return asyncio.run(main())


async def settle() -> None:
    """Let the sessions' closes (sent in the background) run."""
    await asyncio.sleep(0.05)


# -- a worker that dies ---------------------------------------------------------------------
def test_a_decoder_killed_mid_read_is_replaced_and_the_read_made_again(clip, full, caplog):
    metrics = Metrics()

    async def scenario(pool):
        kept = pool.session(clip, 8, GEOMETRY)
        pool.session(clip, 8, GEOMETRY)  # takes the other worker
        np.testing.assert_array_equal(normalise((await kept.read([0, 1])).frames), full[:2])
        pool.open_function = hostile_decoders.slow  # opens after 0.5 s: time to kill it
        victim = pool.session(clip, 8, GEOMETRY)
        pool.open_function = open_reader
        worker, pid = victim.worker, victim.worker.process.pid
        assert worker is kept.worker
        reading = asyncio.ensure_future(victim.read([0, 1, 2]))
        await asyncio.sleep(0.2)
        os.kill(pid, signal.SIGKILL)  # as the kernel's OOM killer, or an operator, would
        np.testing.assert_array_equal(normalise((await reading).frames), full[:3])
        assert worker.process.pid != pid
        # The other session the dead process held opens again in its successor and reads on.
        np.testing.assert_array_equal(normalise((await kept.read([2, 3])).frames), full[2:4])
        return pid, victim.id

    with caplog.at_level(logging.INFO, logger=LOGGER):
        pid, session_id = run(scenario, metrics=metrics)
    assert restarts(metrics, "crash") == 1
    deaths = [r.getMessage() for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert len(deaths) == 1
    assert f"pid {pid}" in deaths[0] and "SIGKILL" in deaths[0] and f"session {session_id}" in deaths[0]


def test_a_fresh_process_gets_its_start_up_time_outside_the_retried_reads_deadline(clip, full, monkeypatch):
    """The retry after a death waits for the new process to answer a ping first (up to
    STARTUP_TIMEOUT_S), so a slow start on a loaded machine is not read as a hung decode (a
    504 seen under CI load when the start counted in the read's deadline of a few seconds)."""
    exchanges: list[tuple[str, float]] = []
    original = decoding._Worker.exchange

    async def recorded(self, message, timeout_s, data=None):
        exchanges.append((message[0], timeout_s))
        return await original(self, message, timeout_s, data)

    monkeypatch.setattr(decoding._Worker, "exchange", recorded)

    async def scenario(pool):
        pool.open_function = hostile_decoders.slow  # opens after 0.5 s: time to kill it
        victim = pool.session(clip, 8, GEOMETRY)
        pool.open_function = open_reader
        reading = asyncio.ensure_future(victim.read([0, 1]))
        await asyncio.sleep(0.2)
        exchanges.clear()
        os.kill(victim.worker.process.pid, signal.SIGKILL)
        np.testing.assert_array_equal(normalise((await reading).frames), full[:2])
        return pool.hard_deadline_s

    deadline = run(scenario, workers=1)
    assert exchanges == [("ping", decoding.STARTUP_TIMEOUT_S), ("read", deadline)]


def test_a_file_that_crashes_a_fresh_decoder_too_is_the_files_fault(clip, full, caplog):
    metrics = Metrics()

    async def scenario(pool):
        pool.open_function = hostile_decoders.crash
        with pytest.raises(Problem) as crashed:
            await pool.session(clip, 8, GEOMETRY).read([0])
        pool.open_function = open_reader
        np.testing.assert_array_equal(normalise((await pool.session(clip, 8, GEOMETRY).read([0])).frames), full[:1])
        return crashed.value

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        problem = run(scenario, workers=1, metrics=metrics)
    assert problem.status == 422 and problem.title == "Undecodable video" and "twice" in problem.detail
    assert restarts(metrics, "crash") == 2
    assert caplog.text.count("exit code 1") == 2


def test_no_retry_possible_is_a_503_and_the_decoder_starts_again_later(clip, full):
    async def scenario(pool):
        broken, other = pool._workers

        def cannot_start():
            raise OSError("fork failed")

        pool.open_function = hostile_decoders.crash
        doomed = pool.session(clip, 8, GEOMETRY)
        pool.open_function = open_reader
        assert doomed.worker is broken
        broken._spawn = cannot_start
        with pytest.raises(Problem) as refused:
            await doomed.read([0])
        assert broken.process is None
        doomed.close()
        # New videos go to the worker that runs (the other is tried again, in vain, first).
        elsewhere = pool.session(clip, 8, GEOMETRY)
        assert elsewhere.worker is other
        np.testing.assert_array_equal(normalise((await elsewhere.read([0])).frames), full[:1])
        del broken._spawn  # starting works again: the next new video starts it
        assert pool.session(clip, 8, GEOMETRY).worker is broken and broken.process is not None
        return refused.value

    problem = run(scenario)
    assert problem.status == 503 and problem.headers["Retry-After"] == "1"


def test_with_no_decoder_able_to_start_every_read_is_a_503(clip, full):
    async def scenario(pool):
        (worker,) = pool._workers
        worker.end()

        def cannot_start():
            raise OSError("fork failed")

        worker._spawn = cannot_start
        with pytest.raises(Problem) as refused:
            await pool.session(clip, 8, GEOMETRY).read([0])
        del worker._spawn
        np.testing.assert_array_equal(normalise((await pool.session(clip, 8, GEOMETRY).read([0])).frames), full[:1])
        return refused.value

    problem = run(scenario, workers=1)
    assert problem.status == 503 and problem.headers["Retry-After"] == "1"


def test_a_read_in_flight_when_the_pool_closes_is_a_503(clip):
    async def scenario():
        pool = DecoderPool(1, DecodeLimits(max_wall_s=10.0), hostile_decoders.slow)
        await pool.warm_up()
        reading = asyncio.ensure_future(pool.session(clip, 8, GEOMETRY).read([0]))
        await asyncio.sleep(0.1)
        await pool.close()
        with pytest.raises(Problem) as closing:
            await reading
        return closing.value

    problem = asyncio.run(scenario())
    assert problem.status == 503 and "Retry-After" in problem.headers


def test_a_hung_decoder_is_logged_and_counted(clip, monkeypatch, caplog):
    metrics = Metrics()

    async def scenario(pool):
        monkeypatch.setattr(decoding, "HARD_DEADLINE_MARGIN_S", 0.5)
        pool.limits = DecodeLimits(max_wall_s=0.5)
        pool.open_function = hostile_decoders.hang
        started = time.perf_counter()
        with pytest.raises(Problem) as hung:
            await pool.session(clip, 8, GEOMETRY).read([0])
        assert time.perf_counter() - started < 5
        return hung.value

    with caplog.at_level(logging.WARNING, logger=LOGGER):
        problem = run(scenario, workers=1, metrics=metrics)
    assert problem.status == 504
    assert restarts(metrics, "timeout") == 1 and restarts(metrics, "crash") == 0
    assert "timed out" in caplog.text


# -- recycling ------------------------------------------------------------------------------
def test_a_decoder_is_recycled_after_max_videos_once_its_sessions_close(clip, full, caplog):
    metrics = Metrics()

    async def scenario(pool):
        first, second = pool._workers
        s1, s2, s3 = (pool.session(clip, 8, GEOMETRY) for _ in range(3))
        assert (s1.worker, s2.worker, s3.worker) == (first, second, first)
        await s1.read([0, 1])
        await s3.read([0])  # the first worker's second video: draining
        await s2.read([0])
        assert first.draining and not second.draining
        s3.close()
        await settle()
        pid = first.process.pid
        assert first.process.pid == pid  # s1 is still open there: not recycled
        s4 = pool.session(clip, 8, GEOMETRY)
        assert s4.worker is second  # one session each, but the first is draining
        np.testing.assert_array_equal(normalise((await s1.read([2, 3])).frames), full[2:4])  # in flight: served
        assert first.process.pid == pid and restarts(metrics, "recycled") == 0
        s1.close()
        await settle()
        assert first.process.pid != pid and not first.draining and first.videos == 0
        assert restarts(metrics, "recycled") == 1
        s5 = pool.session(clip, 8, GEOMETRY)
        assert s5.worker is first
        np.testing.assert_array_equal(normalise((await s5.read([0])).frames), full[:1])
        # Every worker draining: the busiest takes new sessions, so that the others can empty.
        first.draining = second.draining = True
        assert pool.session(clip, 8, GEOMETRY).worker is second  # s2, s4 against s5
        for session in (s2, s4, s5):
            session.close()
        return pid

    with caplog.at_level(logging.INFO, logger=LOGGER):
        pid = run(scenario, max_videos=2, metrics=metrics)
    assert any(f"pid {pid}" in r.getMessage() and "recycled" in r.getMessage() for r in caplog.records)
    assert metrics.registry.get_sample_value("adafocus_decoder_rss_bytes", {"worker": "0"}) > 10e6
    assert metrics.registry.get_sample_value("adafocus_decoder_rss_bytes", {"worker": "1"}) > 10e6


def test_a_decoder_past_its_memory_bound_is_recycled_when_idle(clip, full, caplog):
    metrics = Metrics()

    async def scenario(pool):
        worker = pool._workers[0]
        assert restarts(metrics, "recycled") == 1  # over the bound and idle at its warm-up ping
        pool.max_rss_bytes = 1000 * 2**30  # a worker to watch pass it
        s1 = pool.session(clip, 8, GEOMETRY)
        await s1.read([0])
        assert not worker.draining and worker.rss > 10e6
        pool.max_rss_bytes = 1
        await s1.read([1])
        assert worker.draining
        s2 = pool.session(clip, 8, GEOMETRY)  # the only worker: it still serves
        np.testing.assert_array_equal(normalise((await s2.read([0, 1])).frames), full[:2])
        pid = worker.process.pid
        s1.close()
        await settle()
        assert worker.process.pid == pid
        s2.close()
        await settle()
        assert worker.process.pid != pid
        return pid

    with caplog.at_level(logging.INFO, logger=LOGGER):
        run(scenario, workers=1, max_rss_bytes=1, metrics=metrics)
    assert restarts(metrics, "recycled") == 2
    assert "resident memory" in caplog.text


def test_recycling_under_concurrent_requests_fails_none(clip, full):
    """Eight videos arriving one after another, each read in stages, through two workers that
    take two videos each: workers drain and are replaced while others are mid-video, and
    every sample comes back right."""
    metrics = Metrics()

    async def one(pool, delay_s: float) -> np.ndarray:
        await asyncio.sleep(delay_s)
        session = pool.session(clip, 8, GEOMETRY)
        try:
            parts = [normalise((await session.read(stage)).frames) for stage in ([0], [1], [2, 3], [4, 5, 6, 7])]
        finally:
            session.close()
        return np.concatenate(parts)

    async def scenario(pool):
        for frames in await asyncio.gather(*(one(pool, 0.02 * i) for i in range(8))):
            np.testing.assert_array_equal(frames, full)

    run(scenario, max_videos=2, metrics=metrics)
    assert restarts(metrics, "recycled") >= 2 and restarts(metrics, "crash") == 0


def test_the_resident_memory_of_a_process_is_read():
    assert decoding.process_rss_bytes(os.getpid()) > 10e6
    assert decoding.process_rss_bytes(2**30) is None  # no such process: none, no error


# -- through the service --------------------------------------------------------------------
def metric(client: TestClient, name: str, labels: dict[str, str]) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    for family in text_string_to_metric_families(client.get("/metrics").text):
        for sample in family.samples:
            if sample.name == name and all(sample.labels.get(k) == v for k, v in labels.items()):
                return sample.value
    return None


def test_the_service_retries_a_crash_refuses_amplification_and_recycles(clip, tmp_path):
    amplifier = amplification_video(tmp_path / "static.mp4").read_bytes()  # 240 frames of 320x240
    app = create_app(settings(decode_budget_mpx=2.0, decoder_max_videos=3))
    with TestClient(app) as client:
        pool = client.app.state.decoder
        pool.open_function = functools.partial(hostile_decoders.crash_once, str(tmp_path / "crashed"))
        assert client.post("/v1/classify", files={"video": ("x.mp4", clip)}).status_code == 200
        assert metric(client, "adafocus_decoder_restarts_total", {"cause": "crash"}) == 1
        pool.open_function = open_reader

        refused = client.post("/v1/classify", files={"video": ("static.mp4", amplifier)})
        assert refused.status_code == 422 and refused.headers["content-type"] == "application/problem+json"
        detail = refused.json()["detail"]
        assert "decode budget" in detail and "2 megapixels" in detail and "ADAFOCUS_DECODE_BUDGET_MPX" in detail

        assert client.post("/v1/classify", files={"video": ("x.mp4", clip)}).status_code == 200  # the third video
        for _ in range(50):  # its close, then the recycling, run in the background
            if metric(client, "adafocus_decoder_restarts_total", {"cause": "recycled"}) == 1:
                break
            time.sleep(0.02)
        assert metric(client, "adafocus_decoder_restarts_total", {"cause": "recycled"}) == 1
        assert metric(client, "adafocus_decoder_rss_bytes", {"worker": "0"}) > 10e6


# -- open decoders ----------------------------------------------------------------------------
def test_videos_past_the_open_decoder_bound_wait_for_a_slot(clip, full):
    """With one open decoder per worker, a third video waits until a video has read every
    sample (its decoder is closed) or ended, then opens in the worker that freed the slot."""

    async def scenario(pool):
        first, second, third, fourth = (pool.session(clip, 8, GEOMETRY) for _ in range(4))
        await first.read([0])
        await second.read([0])
        assert {first.worker, second.worker} == set(pool._workers)  # one slot each
        waiting = asyncio.create_task(third.read([0, 1]))
        await asyncio.sleep(0.3)
        assert not waiting.done()
        await first.read(list(range(1, 8)))  # its last samples: the decoder closes, the slot is free
        np.testing.assert_array_equal(normalise((await asyncio.wait_for(waiting, 10)).frames), full[:2])
        assert third.worker is first.worker
        blocked = asyncio.create_task(fourth.read([3]))
        await asyncio.sleep(0.3)
        assert not blocked.done()
        second.close()  # a request that ends frees its slot too
        np.testing.assert_array_equal(normalise((await asyncio.wait_for(blocked, 10)).frames), full[3:4])
        assert fourth.worker is second.worker
        for session in (first, third, fourth):
            session.close()
        await settle()
        assert [w.slots_held for w in pool._workers] == [0, 0]

    run(scenario, max_open_per_worker=1)


def test_the_service_bounds_open_decoders_by_default():
    from service.settings import Settings

    assert Settings().decoder_max_open == 2
    with TestClient(create_app(settings())) as client:
        assert client.app.state.decoder.max_open_per_worker == 2
    with TestClient(create_app(settings(decoder_max_open=0))) as client:
        assert client.app.state.decoder.max_open_per_worker is None


def test_the_loop_filter_shortcut_reaches_the_decoders(tmp_path):
    """ADAFOCUS_DECODE_SKIP_LOOP_FILTER: the decoder processes read as read_clip with the same shortcut."""
    from tests.videos import blocky_video

    video = blocky_video(tmp_path / "blocky.mp4")
    skipped = read_clip(video, 8, GEOMETRY, threads=1, skip_loop_filter="all").frames
    assert not np.array_equal(skipped, read_clip(video, 8, GEOMETRY, threads=1).frames)

    async def scenario(pool):
        session = pool.session(video.read_bytes(), 8, GEOMETRY)
        try:
            return normalise((await session.read(list(range(8)))).frames)
        finally:
            session.close()

    np.testing.assert_array_equal(run(scenario, workers=1, skip_loop_filter="all"), skipped)
    with TestClient(create_app(settings(decode_skip_loop_filter="all"))) as client:
        assert client.app.state.decoder.skip_loop_filter == "all"
