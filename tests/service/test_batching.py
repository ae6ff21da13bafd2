"""The dynamic batcher: one batched step for concurrent rows, and no wait for rows that cannot come."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from service.batching import ActiveClips, StepBatcher


class RecordingStep:
    """A step that doubles its input; records the batch size of every call."""

    def __init__(self) -> None:
        self.batch_sizes: list[int] = []

    def __call__(self, feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        rows = feeds["x"]
        self.batch_sizes.append(len(rows))
        return {"y": rows * 2}, {"glance": 0.001}


def _row(value: float) -> dict[str, np.ndarray]:
    return {"x": np.full((1, 3), value, dtype=np.float32)}


def test_a_lone_clip_does_not_wait_for_a_batch():
    async def scenario() -> tuple[RecordingStep, float]:
        step, active = RecordingStep(), ActiveClips()
        batcher = StepBatcher(step, max_batch=8, max_wait_s=30.0, active=active)
        with active.running():
            started = time.perf_counter()
            # Would time out if the batcher waited its 30 s for rows no other clip can send.
            output, _ = await asyncio.wait_for(batcher.run(_row(1.0)), timeout=5)
            elapsed = time.perf_counter() - started
        batcher.close()
        np.testing.assert_array_equal(output["y"], np.full((1, 3), 2.0))
        return step, elapsed

    step, elapsed = asyncio.run(scenario())
    assert step.batch_sizes == [1]
    assert elapsed < 5


def test_concurrent_clips_share_one_call_and_each_gets_its_row():
    async def scenario() -> tuple[RecordingStep, list]:
        step, active = RecordingStep(), ActiveClips()
        batcher = StepBatcher(step, max_batch=8, max_wait_s=30.0, active=active)

        async def clip(value: float):
            with active.running():
                await asyncio.sleep(0)  # all three clips count as running before any row is sent
                return await batcher.run(_row(value))

        outputs = await asyncio.wait_for(asyncio.gather(clip(1.0), clip(2.0), clip(3.0)), timeout=5)
        batcher.close()
        return step, outputs

    step, outputs = asyncio.run(scenario())
    assert step.batch_sizes == [3]
    assert [float(out["y"][0, 0]) for out, _ in outputs] == [2.0, 4.0, 6.0]


def test_a_batch_waits_at_most_max_wait_for_a_running_clip_that_sends_nothing():
    async def scenario() -> tuple[RecordingStep, float]:
        step, active = RecordingStep(), ActiveClips()
        batcher = StepBatcher(step, max_batch=8, max_wait_s=0.2, active=active)
        with active.running(), active.running():  # a second clip is busy elsewhere (decoding)
            started = time.perf_counter()
            await asyncio.wait_for(batcher.run(_row(1.0)), timeout=5)
            elapsed = time.perf_counter() - started
        batcher.close()
        return step, elapsed

    step, elapsed = asyncio.run(scenario())
    assert step.batch_sizes == [1]
    assert elapsed >= 0.15  # it did wait for the other clip's row


def test_active_clips_counts_down_when_a_clip_fails():
    active = ActiveClips()
    try:
        with active.running():
            assert active.count == 1
            raise RuntimeError("decoder crashed")
    except RuntimeError:
        pass
    assert active.count == 0


def test_a_failing_batch_fails_each_of_its_rows_and_the_next_batch_runs():
    calls: list[int] = []

    def flaky(feeds: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], dict[str, float]]:
        calls.append(len(feeds["x"]))
        if len(calls) == 1:
            raise RuntimeError("session failed")
        return {"y": feeds["x"] + 1}, {"focus": 0.001}

    async def scenario() -> tuple[list, dict[str, np.ndarray]]:
        active = ActiveClips()
        batcher = StepBatcher(flaky, max_batch=8, max_wait_s=30.0, active=active)

        async def clip(value: float):
            with active.running():
                await asyncio.sleep(0)
                return await batcher.run(_row(value))

        failed = await asyncio.wait_for(asyncio.gather(clip(1.0), clip(2.0), return_exceptions=True), timeout=5)
        with active.running():
            after, _ = await asyncio.wait_for(batcher.run(_row(5.0)), timeout=5)
        batcher.close()
        return failed, after

    failed, after = asyncio.run(scenario())
    assert [type(error) for error in failed] == [RuntimeError, RuntimeError]
    assert calls == [2, 1]
    np.testing.assert_array_equal(after["y"], np.full((1, 3), 6.0))


def test_a_step_time_is_shared_among_its_stages_as_the_batch_spent_it():
    from service.batching import _share

    seconds = {"decode": 0.5, "glance": 0.0, "focus": 0.0, "classify": 0.0}
    _share(seconds, 0.010, {"glance": 0.001, "focus": 0.003, "classify": 0.0})
    assert seconds["decode"] == 0.5
    assert np.isclose(seconds["glance"], 0.0025) and np.isclose(seconds["focus"], 0.0075)
    assert seconds["classify"] == 0.0


class SlowStep(RecordingStep):
    def __call__(self, feeds):
        time.sleep(0.3)
        return super().__call__(feeds)


@pytest.mark.parametrize(
    "step, max_batch",
    [(RecordingStep(), 4), (SlowStep(), 2)],
    ids=["gathering (waiting for a fourth row)", "running two, the third queued"],
)
def test_closing_answers_every_waiting_row_and_refuses_new_ones_with_503(step: RecordingStep, max_batch: int):
    """Rows in the batch being gathered or run, rows still queued, and rows sent after close
    get a 503 problem: none waits forever."""
    from service.problems import Problem

    async def scenario() -> tuple[list, BaseException | None]:
        batcher = StepBatcher(step, max_batch=max_batch, max_wait_s=30.0)  # no ActiveClips: gathers for 30 s
        waiting = [asyncio.create_task(batcher.run(_row(float(i)))) for i in range(3)]
        await asyncio.sleep(0.05)
        batcher.close()
        answers = await asyncio.wait_for(asyncio.gather(*waiting, return_exceptions=True), timeout=5)
        try:
            await asyncio.wait_for(batcher.run(_row(9.0)), timeout=5)
        except Problem as refused:
            return answers, refused
        return answers, None

    answers, refused = asyncio.run(scenario())
    for answer in [*answers, refused]:
        assert isinstance(answer, Exception) and getattr(answer, "status", None) == 503, answer
        assert answer.title == "Shutting down"
