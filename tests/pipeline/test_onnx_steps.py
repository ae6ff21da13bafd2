"""The ONNX Runtime step loop normalises uint8 crops with the manifest's statistics."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.onnx_steps import OnnxPipeline, create_sessions, run_step
from pipeline.repository import load_pipeline
from tests.pipeline.model_copies import SHIPPED, copy_with_statistics, normalised

# Far from ImageNet's, so a step that normalised with ImageNet's would answer differently.
MEAN, STD = (0.2, 0.5, 0.8), (0.4, 0.15, 0.3)


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory) -> OnnxPipeline:
    root = copy_with_statistics(tmp_path_factory.mktemp("restated"), MEAN, STD)
    loaded = load_pipeline(root, *SHIPPED)
    return OnnxPipeline(loaded, create_sessions(loaded, threads=1))


def _crops(count: int, size: int) -> np.ndarray:
    return np.random.default_rng(0).integers(0, 256, (count, size, size, 3), dtype=np.uint8)


def test_run_step_normalises_crops_with_the_manifests_statistics(pipeline):
    manifest = pipeline.manifest
    crops = _crops(2, manifest.frames.crop)
    states = {
        "policy_state": np.zeros((2, manifest.state_sizes["policy"]), dtype=np.float32),
        "classifier_state": np.zeros((2, manifest.state_sizes["classifier"]), dtype=np.float32),
        "step": np.zeros(2, dtype=np.int64),
    }
    from_crops, _ = run_step(pipeline.sessions, manifest, {"frames": crops, **states})
    reference, _ = run_step(pipeline.sessions, manifest, {"frames": normalised(crops, MEAN, STD), **states})
    for name in ("logits", "location", "policy_state", "classifier_state"):
        np.testing.assert_allclose(from_crops[name], reference[name], rtol=1e-5, atol=1e-6, err_msg=name)


def test_a_clip_of_crops_runs_as_the_same_clip_normalised_by_hand(pipeline):
    frames = pipeline.manifest.frames
    crops = _crops(frames.num_frames, frames.crop)
    from_crops = pipeline.run_clip(crops)
    reference = pipeline.run_clip(normalised(crops, MEAN, STD))
    np.testing.assert_allclose(np.stack(from_crops.step_logits), np.stack(reference.step_logits), rtol=1e-5, atol=1e-6)


def test_one_normalisation_per_statistics(pipeline):
    """Built once per mean/std (its lookup table is reused by every batch), and equal to the manifest's."""
    from pipeline.onnx_steps import normalisation_of

    normalisation = normalisation_of(pipeline.manifest)
    assert normalisation is normalisation_of(pipeline.manifest)
    assert (normalisation.mean, normalisation.std) == (MEAN, STD)


def test_arena_shrinking_sessions_answer_as_plain_ones(pipeline):
    """Giving the arena back after each run changes where memory lives, not what the graphs compute."""
    from pipeline.onnx_steps import ArenaShrinkingSession

    shrinking = create_sessions(pipeline.pipeline, threads=1, shared_cpu_arena=True, shrink_arena=True)
    assert all(isinstance(session, ArenaShrinkingSession) for session in shrinking.values())
    entry = shrinking["classifier"].run_options.get_run_config_entry("memory.enable_memory_arena_shrinkage")
    assert entry == "cpu:0"
    assert shrinking["glance"].get_providers() == ["CPUExecutionProvider"]  # the session's own API passes through
    crops = _crops(pipeline.manifest.frames.num_frames, pipeline.manifest.frames.crop)
    reference = pipeline.run_clip(crops)
    shrunk = OnnxPipeline(pipeline.pipeline, shrinking).run_clip(crops)
    np.testing.assert_array_equal(np.stack(shrunk.step_logits), np.stack(reference.step_logits))
