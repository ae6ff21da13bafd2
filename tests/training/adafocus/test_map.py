"""mAP as the AdaFocusV2 authors compute it: classes rank softmax probabilities, not logits."""

from __future__ import annotations

import numpy as np
import pytest

from training.adafocus.evaluation import average_precision, mean_average_precision

# Two videos, three classes. Class 0's raw logit is higher for video A (2 > 1), but A's softmax
# mass goes to class 1, so class 0's probability is higher for video B (0.96 > 0.05).
LOGITS = np.array([[2.0, 5.0, 0.0], [1.0, -3.0, -3.0]])
TARGETS = np.array([[0, 1, 0], [1, 0, 0]])  # A is class 1, B class 0; class 2 has no positive


def test_ranking_logits_and_probabilities_disagree_on_this_case():
    assert average_precision(LOGITS[:, 0], TARGETS[:, 0]) == pytest.approx(0.5)  # B ranked second by logit


def test_map_ranks_softmax_probabilities_over_all_classes():
    # Softmax ranking: class 0 puts B first (AP 1), class 1 puts A first (AP 1); class 2 is skipped.
    assert mean_average_precision(LOGITS, TARGETS) == pytest.approx(1.0)


def test_map_is_unchanged_by_a_shift_of_a_video_logits():
    # Softmax is shift-invariant per video; ranking raw logits, this shift turns mAP 0.75 into 1.
    shifted = LOGITS + np.array([[0.0], [3.5]])
    assert mean_average_precision(shifted, TARGETS) == pytest.approx(mean_average_precision(LOGITS, TARGETS))


def test_map_of_a_perfect_ranking_is_one_and_skips_classes_without_positives():
    logits = np.array([[4.0, 0.0, 0.0], [0.0, 4.0, 0.0], [3.0, 0.0, 0.0]])
    targets = np.array([[1, 0, 0], [0, 1, 0], [1, 0, 0]])
    assert mean_average_precision(logits, targets) == pytest.approx(1.0)
