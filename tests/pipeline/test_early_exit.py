"""Conditional-exit calibration on fixed logits (torch-free)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from pipeline.early_exit import (
    OperatingPoint,
    _thresholds_for,
    calibrate,
    choose_operating_point,
    confidence,
    exit_step,
    name_operating_points,
    simulate_exit,
)


def test_confidence_kinds():
    logits = np.array([[2.0, 0.0, 0.0], [0.0, 0.0, 0.0]])
    probs = np.exp(logits) / np.exp(logits).sum(1, keepdims=True)
    np.testing.assert_allclose(confidence(logits, "max_prob"), probs.max(1))
    np.testing.assert_allclose(confidence(logits, "max_logit"), [2.0, 0.0])
    np.testing.assert_allclose(confidence(logits, "entropy"), (probs * np.log(probs)).sum(1))
    assert confidence(logits, "entropy")[0] > confidence(logits, "entropy")[1]  # surer = higher
    np.testing.assert_allclose(confidence(logits, "max_prob", multi_label=True), 1 / (1 + np.exp(-logits.max(1))))
    with pytest.raises(ValueError, match="unknown confidence"):
        confidence(logits, "margin")


def test_thresholds_follow_the_exit_quotas():
    # 10 videos, 3 steps; confidences rise with the video index at every step.
    conf = np.tile(np.linspace(0.1, 1.0, 10)[:, None], (1, 3))
    conf[:, 1] += 0.001  # distinct values per step
    # p = 1: quotas floor(10 / 3) = 3 per early step.
    thresholds = _thresholds_for(conf, 1.0)
    assert thresholds[0] == pytest.approx(conf[7, 0])  # the 3 most confident (7, 8, 9) exit
    assert thresholds[1] == pytest.approx(conf[4, 1])  # then 3 more of the rest (4, 5, 6)
    assert thresholds[2] == -math.inf
    np.testing.assert_array_equal(simulate_exit(conf, thresholds), [2, 2, 2, 2, 1, 1, 1, 0, 0, 0])
    # Tiny p: everybody leaves at step 0 (quota floor(10 * ~1) = 9, the tenth stays).
    assert simulate_exit(conf, _thresholds_for(conf, 1e-6)).tolist().count(0) == 9


def test_exit_step_is_the_first_confident_step():
    assert exit_step([0.2, 0.9, 0.95], [0.5, 0.8, -math.inf]) == 1
    assert exit_step([0.2, 0.3, 0.1], [0.5, 0.8, -math.inf]) == 2
    assert exit_step([0.9, 0.3, 0.1], [math.inf, math.inf, -math.inf]) == 2


def _fixed_problem(seed: int = 0, videos: int = 400, steps: int = 4, classes: int = 5):
    """Logits that get better with more frames, confidence correlated with correctness."""
    rng = np.random.default_rng(seed)
    targets = rng.integers(0, classes, videos)
    logits = rng.normal(size=(videos, steps, classes))
    for t in range(steps):
        logits[np.arange(videos), t, targets] += 0.8 * (t + 1)
    return logits, targets


def test_calibration_trades_compute_for_accuracy():
    logits, targets = _fixed_problem()
    points = name_operating_points(calibrate(logits, targets, [1.0] * 4))
    full = points[0]
    assert full.names == ["full"] and full.p is None and full.expected_gmacs == pytest.approx(4.0)
    assert full.accuracy == pytest.approx(np.mean(logits[:, -1].argmax(-1) == targets))
    cheaper = points[1:]
    assert cheaper and all(p.expected_gmacs < full.expected_gmacs for p in cheaper)
    costs = [p.expected_gmacs for p in cheaper]
    accuracies = [p.accuracy for p in cheaper]
    assert costs == sorted(costs) and accuracies == sorted(accuracies)  # a frontier: pay more, get more
    for point in cheaper:
        assert sum(point.exit_fractions) == pytest.approx(1.0)
        expected = sum(f * (k + 1) for k, f in enumerate(point.exit_fractions))
        assert point.expected_gmacs == pytest.approx(expected)
    balanced = choose_operating_point(points, "balanced")
    assert balanced.accuracy >= full.accuracy - 0.01 - 1e-12
    fast = choose_operating_point(points, "fast")
    assert fast.expected_gmacs <= balanced.expected_gmacs


def test_operating_points_round_trip_and_choice_by_budget():
    logits, targets = _fixed_problem(1)
    points = name_operating_points(calibrate(logits, targets, [0.5] * 4))
    restored = [OperatingPoint.from_dict(p.as_dict()) for p in points]
    assert [p.thresholds for p in restored] == [p.thresholds for p in points]
    budget = 1.2
    chosen = choose_operating_point(restored, budget)
    assert chosen.expected_gmacs <= budget
    assert all(p.accuracy <= chosen.accuracy for p in restored if p.expected_gmacs <= budget)
    assert choose_operating_point(restored, 0.0) == min(restored, key=lambda p: p.expected_gmacs)
    with pytest.raises(KeyError, match="no operating point named"):
        choose_operating_point(restored, "turbo")


def test_multi_label_calibration_counts_a_hit_on_any_label():
    logits = np.zeros((2, 2, 3))
    logits[0, :, 1] = 5.0
    logits[1, :, 2] = 5.0
    targets = np.array([[0, 1, 1], [1, 0, 0]])
    full = calibrate(logits, targets, [1.0, 1.0], multi_label=True)[0]
    assert full.accuracy == 0.5


def test_bad_calibration_input_is_refused():
    with pytest.raises(ValueError, match="shape"):
        calibrate(np.zeros((0, 4, 3)), np.zeros(0), [1.0] * 4)
    with pytest.raises(ValueError, match="step costs"):
        calibrate(np.zeros((2, 4, 3)), np.zeros(2), [1.0] * 3)


def test_a_point_whose_accuracy_was_not_measured_is_chosen_after_measured_ones():
    """An imported model's ``full`` point has no accuracy (nothing was calibrated): a budget that fits it
    and a measured point takes the measured one, and a budget that fits only it takes it."""
    unmeasured = OperatingPoint([math.inf, -math.inf], 2.0, None, [0.0, 1.0], name="full", names=["full"])
    measured = OperatingPoint([0.5, -math.inf], 1.5, 0.7, [0.5, 0.5], p=1.0, name="fast", names=["fast"])
    restored = OperatingPoint.from_dict(unmeasured.as_dict())
    assert restored.accuracy is None
    assert choose_operating_point([restored, measured], 5.0) is measured
    assert choose_operating_point([restored], 5.0) is restored
    assert choose_operating_point([restored, measured], "full") is restored
