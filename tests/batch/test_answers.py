"""The batch job's answers and limits follow the service's rules (``pipeline.answers``, ``batch.limits``)."""

from __future__ import annotations

import numpy as np
import pytest

from batch.limits import DEFAULTS, Limits
from pipeline.answers import ExitError, choose_exit, class_scores, default_exit, top_labels
from pipeline.early_exit import OperatingPoint
from pipeline.repository import load_pipeline
from service import classify
from service.app import decode_limits
from service.problems import Problem
from service.registry import ServedModel
from service.settings import Settings
from tests.paths import SHIPPED_MODELS


@pytest.fixture(scope="module", params=["adafocus_v2", "full_frame"])
def model(request) -> ServedModel:
    pipeline = load_pipeline(SHIPPED_MODELS, request.param)
    points = [OperatingPoint.from_dict(p.model_dump()) for p in pipeline.manifest.operating_points]
    return ServedModel(pipeline, runner=None, operating_points=points, providers=[])  # type: ignore[arg-type]


VALUES = ["off", "full", "balanced", "fast", "accurate", "nope", "0.05", "0.2", "1e9", "0.001", "0", "-1", "nan", "inf"]


@pytest.mark.parametrize("value", VALUES)
def test_an_exit_option_chooses_what_the_service_chooses(model, value):
    manifest = model.pipeline.manifest
    try:
        theirs = classify.choose_exit(model, value)
    except Problem:
        with pytest.raises(ExitError):
            choose_exit(manifest, value)
        return
    ours = choose_exit(manifest, value)
    if theirs is None:
        assert ours is None
        return
    assert ours is not None and (ours.point, ours.label) == (theirs.point, theirs.label)
    assert ours.may_stop_early() == classify._may_stop_early(theirs)


def test_a_default_exit_the_model_lacks_runs_every_frame(model):
    manifest = model.pipeline.manifest
    assert default_exit(manifest, "no-such-point") is None
    assert default_exit(manifest, "balanced").label == "balanced"


@pytest.mark.parametrize("multi_label", [False, True])
def test_scores_are_the_services(multi_label):
    logits = np.random.default_rng(0).standard_normal((20, 10)).astype(np.float32) * 5
    for row in logits:
        np.testing.assert_array_equal(class_scores(row, multi_label), classify._softmax(row, multi_label))


def test_top_labels_are_best_first(model):
    manifest = model.pipeline.manifest
    logits = np.arange(len(manifest.labels), dtype=np.float32)
    labels = top_labels(manifest, logits, 3)
    assert [label for label, _ in labels] == manifest.labels[::-1][:3]
    assert labels[0][1] > labels[1][1] > labels[2][1]


def test_the_default_limits_are_the_services():
    defaults = Settings()
    assert DEFAULTS == {name: getattr(defaults, name) for name in DEFAULTS}
    assert Limits().decode_limits() == decode_limits(defaults)


def test_limits_follow_the_services_environment_variables(monkeypatch):
    monkeypatch.setenv("ADAFOCUS_MAX_UPLOAD_MB", "0.5")
    monkeypatch.setenv("ADAFOCUS_DECODE_BUDGET_MPX", "12")
    monkeypatch.setenv("ADAFOCUS_MAX_PIXELS", "1000")
    assert Limits.from_environment().decode_limits() == decode_limits(Settings())
