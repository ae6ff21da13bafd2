"""The focus-quality measure and the oracle patch on hand-made cases (issue 24)."""

from __future__ import annotations

import numpy as np
import pytest

from training.adafocus.focus_quality import coverage_and_iou, focus_quality, oracle_locations, patch_boxes


def test_patch_boxes_follow_the_crop_convention():
    boxes = patch_boxes(np.array([[0.0, 0.0], [1.0, 0.5]]), frame_size=128, patch_size=48)
    np.testing.assert_allclose(boxes, [[0, 0, 48, 48], [80, 40, 128, 88]])


def test_coverage_and_iou_by_hand():
    patch = np.array([0, 0, 40, 40])
    cases = {
        # target inside the patch: all of it covered, IoU = its area over the patch's
        (10, 10, 30, 30): (1.0, 400 / 1600),
        # half of the target inside (20x20 target, 10 columns in)
        (30, 10, 50, 30): (0.5, 200 / (1600 + 400 - 200)),
        # disjoint
        (50, 50, 70, 70): (0.0, 0.0),
        # the same box
        (0, 0, 40, 40): (1.0, 1.0),
    }
    for target, (coverage, iou) in cases.items():
        got = coverage_and_iou(patch, np.array(target))
        assert (float(got[0]), float(got[1])) == pytest.approx((coverage, iou)), target
    empty = coverage_and_iou(patch, np.array([5, 5, 5, 9]))  # a target with no area (out of the frame)
    assert np.isnan(empty[0]) and np.isnan(empty[1])


def test_hit_rate_counts_half_covered_targets_and_only_processed_frames():
    targets = np.array([[[10, 10, 30, 30], [30, 10, 50, 30], [60, 60, 80, 80], [0, 0, 0, 0]]], dtype=float)
    locations = np.zeros((1, 4, 2))  # every patch at the top-left corner: [0, 40)^2 of a 40 + 88 frame
    quality = focus_quality(locations, targets, frame_size=128, patch_size=40)
    # frames: all covered, half covered (a hit), missed; the empty target is not counted
    assert quality.frames == 3 and quality.hit_rate == pytest.approx(2 / 3)
    assert quality.iou == pytest.approx((400 / 1600 + 200 / 1800 + 0.0) / 3)
    processed = np.array([[True, False, True, True]])
    assert focus_quality(locations, targets, 128, 40, processed).hit_rate == pytest.approx(1 / 2)
    assert focus_quality(locations, targets, 128, 40, np.zeros((1, 4), bool)).frames == 0


def test_the_oracle_patch_holds_every_target_that_fits():
    rng = np.random.default_rng(0)
    corners = rng.uniform(0, 128 - 30, (200, 2))
    targets = np.concatenate([corners, corners + 30], axis=1)
    locations = oracle_locations(targets, frame_size=128, patch_size=48)
    assert ((0 <= locations) & (locations <= 1)).all()
    coverage, _ = coverage_and_iou(patch_boxes(locations, 128, 48), targets)
    assert (coverage == 1.0).all()
    # centred: the patch's centre is the target's, except where the frame's edge stops it
    centres = patch_boxes(locations, 128, 48).reshape(-1, 2, 2).mean(axis=1)
    inside = ((targets[:, :2] + 15 >= 24) & (targets[:, :2] + 15 <= 104)).all(axis=1)
    np.testing.assert_allclose(centres[inside], targets[inside, :2] + 15, atol=1e-4)
