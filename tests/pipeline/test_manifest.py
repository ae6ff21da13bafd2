"""What the manifest accepts: a whole-clip pipeline (one ``clip`` graph, frame sets, one step) and
a streaming one, and the mixtures it refuses (issue 23)."""

from __future__ import annotations

import json

import pytest
from pydantic import ValidationError

from pipeline.frames.sampling import sample_count, sample_indices
from pipeline.manifest import Manifest
from tests.paths import SHIPPED_MODELS
from tests.pipeline.model_copies import SHIPPED


def _shipped() -> dict:
    return json.loads((SHIPPED_MODELS / Manifest.file_name(*SHIPPED)).read_text())


def _whole_clip() -> dict:
    """The shipped manifest restated as a whole-clip model: 2 glance + 3 focus frames, one graph."""
    manifest = _shipped()
    graph = manifest["graphs"]["glance"]
    manifest.update(
        temporal="whole_clip",
        graphs={"clip": {**graph, "inputs": [{"name": "frames", "dtype": "float32", "shape": ["batch", 5, 3, 8, 8]}]}},
        state_sizes={},
        reference=None,
    )
    manifest["frames"].update(
        num_frames=5,
        order=[0, 1, 2, 3, 4],
        sets=[{"segments": 2, "network": "glance"}, {"segments": 3, "network": "focus"}],
    )
    full = {**manifest["operating_points"][0], "name": "full", "names": ["full"], "p": None}
    manifest["operating_points"] = [{**full, "thresholds": ["-inf"], "exit_fractions": [1.0]}]
    return manifest


def test_a_whole_clip_manifest_is_one_step_over_its_frame_sets():
    manifest = Manifest.model_validate(_whole_clip())
    assert manifest.num_steps == 1 and manifest.frames.samples == (2, 3)
    assert [manifest.frames.network_of(p) for p in range(5)] == ["glance", "glance", "focus", "focus", "focus"]
    shipped = Manifest.model_validate(_shipped())
    assert shipped.temporal == "streaming" and shipped.num_steps == shipped.frames.num_frames
    assert shipped.frames.samples == shipped.frames.num_frames and shipped.frames.network_of(0) is None


@pytest.mark.parametrize(
    ("edit", "message"),
    [
        (lambda m: m["frames"].update(sets=[{"segments": 2, "network": "glance"}]), "do not add up to 5"),
        (lambda m: m["frames"].update(order=[0, 1, 2, 3, 3]), "permutation"),
        (lambda m: m["graphs"].update(classifier=m["graphs"]["clip"]), "whole_clip pipeline has graphs"),
        (lambda m: m.update(temporal="streaming"), "streaming pipeline has graphs"),
        (lambda m: m["operating_points"][0].update(thresholds=["inf"] * 4 + ["-inf"]), "5 thresholds for 1 steps"),
    ],
)
def test_mixtures_of_whole_clip_and_streaming_are_refused(edit, message):
    manifest = _whole_clip()
    edit(manifest)
    with pytest.raises(ValidationError, match=message):
        Manifest.model_validate(manifest)


def test_a_streaming_manifest_needs_its_classifier_and_a_threshold_per_step():
    manifest = _shipped()
    del manifest["graphs"]["classifier"]
    with pytest.raises(ValidationError, match="streaming pipeline has graphs"):
        Manifest.model_validate(manifest)
    manifest = _shipped()
    manifest["operating_points"][0]["thresholds"] = manifest["operating_points"][0]["thresholds"][:-1]
    with pytest.raises(ValidationError, match="thresholds for 8 steps"):
        Manifest.model_validate(manifest)


def test_frame_sets_are_sampled_separately_and_concatenated():
    assert sample_count((8, 12)) == 20 and sample_count(16) == 16
    indices = sample_indices(40, (8, 12)).tolist()
    assert indices == sample_indices(40, 8).tolist() + sample_indices(40, 12).tolist()
    assert indices[:8] == [2, 7, 12, 17, 22, 27, 32, 37]  # int(2.5 + 5 i)
    with pytest.raises(ValueError, match="at least one set"):
        sample_indices(40, ())
