"""Step loops in lockstep (``pipeline.step_batches``): the reference loop's results, batched, and
the same again when a loop pauses for a frame and is resumed elsewhere by replay."""

from __future__ import annotations

import pickle

import numpy as np
import pytest

from pipeline.answers import choose_exit
from pipeline.onnx_steps import OnnxPipeline, create_sessions
from pipeline.repository import load_pipeline
from pipeline.step_batches import ClipRun, run_in_lockstep
from tests.paths import SHIPPED_MODELS


@pytest.fixture(scope="module", params=["adafocus_v2", "full_frame"])
def runner(request) -> OnnxPipeline:
    pipeline = load_pipeline(SHIPPED_MODELS, request.param)
    return OnnxPipeline(pipeline, create_sessions(pipeline, threads=1))


def clips(runner: OnnxPipeline, count: int) -> list[np.ndarray]:
    """Random uint8 crops, and a few flat ones (flat clips make the model unsure: no early exit)."""
    frames = runner.manifest.frames
    rng = np.random.default_rng(3)
    shape = (frames.num_frames, frames.crop, frames.crop, 3)
    made = [rng.integers(0, 256, shape, dtype=np.uint8) for _ in range(count - 2)]
    return made + [np.full(shape, value, dtype=np.uint8) for value in (90, 160)]


def frames_of(clip: np.ndarray) -> dict[int, np.ndarray]:
    return {position: clip[position : position + 1] for position in range(len(clip))}


def assert_same(result, reference) -> None:
    assert result.exit_step == reference.exit_step
    assert len(result.step_logits) == len(reference.step_logits)
    for ours, theirs in zip(result.step_logits, reference.step_logits):
        np.testing.assert_allclose(ours, theirs, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("exit", ["off", "balanced"])
def test_lockstep_gives_the_reference_loops_results(runner, exit):
    manifest = runner.manifest
    chosen = choose_exit(manifest, exit)
    thresholds = chosen.thresholds if chosen is not None else None
    videos = clips(runner, 7)
    runs = [ClipRun(manifest, thresholds, frames_of(clip)) for clip in videos]
    batches = run_in_lockstep(runner.sessions, manifest, runs, max_batch=4)
    assert all(run.done for run in runs)
    for run, clip in zip(runs, videos):
        assert_same(run.result, runner.run_clip(clip, thresholds))
        assert run.result.seconds["classify"] > 0
    # Each step's rows (the loops still running) in batches of at most 4.
    steps = range(max(run.result.exit_step for run in runs) + 1)
    assert batches == sum(-(-sum(run.result.exit_step >= step for run in runs) // 4) for step in steps)


def test_a_paused_loop_resumed_by_replay_ends_as_an_unpaused_one(runner):
    manifest = runner.manifest
    thresholds = [-np.inf if step == 5 else np.inf for step in range(manifest.num_steps)]  # exit at step 5
    order = manifest.frames.order
    videos = clips(runner, 4)
    firsts = [ClipRun(manifest, thresholds, {order[0]: clip[order[0] : order[0] + 1]}) for clip in videos]
    run_in_lockstep(runner.sessions, manifest, firsts)
    assert [(run.done, run.wanted) for run in firsts] == [(False, order[1])] * len(videos)
    carried = [pickle.loads(pickle.dumps(run.recorded)) for run in firsts]  # to another process
    resumed = [ClipRun(manifest, thresholds, frames_of(clip), recorded) for clip, recorded in zip(videos, carried)]
    run_in_lockstep(runner.sessions, manifest, resumed)
    for run, clip in zip(resumed, videos):
        assert run.done and run.result.exit_step == 5
        assert_same(run.result, runner.run_clip(clip, thresholds))
