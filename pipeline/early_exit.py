"""Calibrating and applying conditional exit (AdaFocusV2+, MSDNet-style budget sweep).

After step ``k`` (``k = 0 .. T-1``) a video exits when its confidence reaches ``T_k``; the
last step always exits. Thresholds come from a calibration split, never from training
data: for a sweep parameter ``p``, the share of videos exiting at step ``k`` is
``q_k`` proportional to ``p^k`` (small ``p``: most exit early; ``p = 1``: uniform; large
``p``: most run to the end). At step ``k``, of the videos still running, the
``floor(N * q_k)`` most confident exit and ``T_k`` is the confidence of the last of them.
Each ``p`` gives an operating point: thresholds, expected cost per video, accuracy.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np

CONFIDENCE_KINDS = ("max_prob", "max_logit", "entropy")
NEVER = math.inf  # a threshold no confidence reaches
DEFAULT_SWEEP = tuple(float(p) for p in np.round(np.geomspace(0.05, 20.0, 40), 4))


def _softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def confidence(logits: np.ndarray, kind: str = "max_prob", multi_label: bool = False) -> np.ndarray:
    """Confidence of each prediction ``(..., K) -> (...)``; higher means surer.

    ``max_prob``: largest softmax probability (sigmoid for multi-label models);
    ``max_logit``: largest logit (the reference code's choice); ``entropy``: minus the
    entropy of the softmax (or of the independent sigmoids).
    """
    logits = np.asarray(logits, dtype=np.float64)
    if kind == "max_logit":
        return logits.max(axis=-1)
    if multi_label:
        probs = 1.0 / (1.0 + np.exp(-logits))
        if kind == "max_prob":
            return probs.max(axis=-1)
        if kind == "entropy":
            p = np.clip(probs, 1e-12, 1 - 1e-12)
            return (p * np.log(p) + (1 - p) * np.log(1 - p)).sum(axis=-1)
    else:
        probs = _softmax(logits)
        if kind == "max_prob":
            return probs.max(axis=-1)
        if kind == "entropy":
            return (probs * np.log(np.clip(probs, 1e-12, None))).sum(axis=-1)
    raise ValueError(f"unknown confidence {kind!r}; use one of {', '.join(CONFIDENCE_KINDS)}")


@dataclass
class OperatingPoint:
    """One calibrated exit policy."""

    thresholds: list[float]  # T_k per step; inf = nobody exits there; the last is -inf
    expected_gmacs: float  # average GMACs per video on the calibration split
    accuracy: float | None  # calibration accuracy (top-1 hit) with this policy; None: not measured
    exit_fractions: list[float]  # share of calibration videos exiting at each step
    p: float | None = None  # the sweep parameter (None for "full": no early exit)
    name: str | None = None
    names: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        data = asdict(self)
        data["thresholds"] = [_json_float(t) for t in self.thresholds]
        return data

    @classmethod
    def from_dict(cls, data: dict) -> OperatingPoint:
        data = dict(data)
        data["thresholds"] = [float(t) for t in data["thresholds"]]
        return cls(**data)


def _json_float(value: float) -> float | str:
    # JSON has no infinities; the strings round-trip through float().
    if math.isinf(value):
        return "inf" if value > 0 else "-inf"
    return float(value)


def exit_step(confidences: Sequence[float], thresholds: Sequence[float]) -> int:
    """The first step whose confidence reaches its threshold (the last step otherwise)."""
    for step, (conf, threshold) in enumerate(zip(confidences, thresholds)):
        if conf >= threshold:
            return step
    return len(thresholds) - 1


def simulate_exit(conf: np.ndarray, thresholds: Sequence[float]) -> np.ndarray:
    """Exit step of every video from its per-step confidences ``(N, T)``."""
    passed = np.asarray(conf) >= np.asarray(thresholds, dtype=np.float64)[None, :]
    passed[:, -1] = True
    return passed.argmax(axis=1)


def _correct(step_logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """``(N, T)``: is the top-1 prediction after each step right (one of the labels, if multi-label)."""
    top1 = step_logits.argmax(axis=-1)  # (N, T)
    if targets.ndim == 1:
        return top1 == targets[:, None]
    return np.take_along_axis(targets, top1, axis=1) > 0


def _thresholds_for(conf: np.ndarray, p: float) -> list[float]:
    count, steps = conf.shape
    weights = p ** np.arange(steps, dtype=np.float64)
    quotas = np.floor(count * weights / weights.sum()).astype(int)
    running = np.ones(count, dtype=bool)
    thresholds = []
    for k in range(steps - 1):
        remaining = np.flatnonzero(running)
        take = min(quotas[k], len(remaining))
        if take == 0:
            thresholds.append(NEVER)
            continue
        order = remaining[np.argsort(-conf[remaining, k], kind="stable")]
        threshold = float(conf[order[take - 1], k])
        thresholds.append(threshold)
        running &= ~(conf[:, k] >= threshold)  # ties exit together, as they will at inference
    thresholds.append(-NEVER)
    return thresholds


def _evaluate(conf: np.ndarray, correct: np.ndarray, thresholds: list[float], cost: np.ndarray, p) -> OperatingPoint:
    steps = simulate_exit(conf, thresholds)
    hits = correct[np.arange(len(steps)), steps]
    fractions = np.bincount(steps, minlength=conf.shape[1]) / len(steps)
    return OperatingPoint(
        thresholds=thresholds,
        expected_gmacs=float(cost[steps].mean()),
        accuracy=float(hits.mean()),
        exit_fractions=[float(f) for f in fractions],
        p=p,
    )


def calibrate(
    step_logits: np.ndarray,
    targets: np.ndarray,
    step_gmacs: Sequence[float],
    kind: str = "max_prob",
    multi_label: bool = False,
    sweep: Sequence[float] = DEFAULT_SWEEP,
) -> list[OperatingPoint]:
    """Operating points from calibration logits ``(N, T, K)`` and targets.

    ``step_gmacs[k]`` is the cost of processing frame ``k``; the cost of exiting after step
    ``k`` is their running sum. ``targets`` are class indices ``(N,)`` or multi-hot ``(N, K)``.
    Returns the "full" point (no early exit) followed by the sweep, cheapest first, with
    dominated points (costlier and no more accurate) removed.
    """
    step_logits = np.asarray(step_logits, dtype=np.float64)
    targets = np.asarray(targets)
    if step_logits.ndim != 3 or len(step_logits) == 0:
        raise ValueError("calibration needs logits of shape (videos, steps, classes) for at least one video")
    num_steps = step_logits.shape[1]
    if len(step_gmacs) != num_steps:
        raise ValueError(f"{len(step_gmacs)} step costs for {num_steps} steps")
    conf = confidence(step_logits, kind, multi_label)
    correct = _correct(step_logits, targets)
    cost = np.cumsum(np.asarray(step_gmacs, dtype=np.float64))
    full = _evaluate(conf, correct, [NEVER] * (num_steps - 1) + [-NEVER], cost, None)
    points = [_evaluate(conf, correct, _thresholds_for(conf, p), cost, p) for p in sweep]
    points.sort(key=lambda point: (point.expected_gmacs, -point.accuracy))
    frontier: list[OperatingPoint] = []
    for point in points:
        if point.expected_gmacs < full.expected_gmacs and all(point.accuracy > kept.accuracy for kept in frontier):
            frontier.append(point)
    return [full, *frontier]


# Named points: the cheapest point within this many accuracy points of running every frame.
NAMED_TOLERANCES = {"accurate": 0.005, "balanced": 0.01, "fast": 0.03}


def name_operating_points(points: list[OperatingPoint]) -> list[OperatingPoint]:
    """Name the points: ``full`` (no early exit), and ``accurate`` / ``balanced`` / ``fast``,
    the cheapest points within 0.5 / 1 / 3 accuracy points of ``full`` on the calibration split.
    A point may carry several names; ``name`` is the first."""
    full = points[0]
    full.names = ["full"]
    for name, tolerance in NAMED_TOLERANCES.items():
        eligible = [pt for pt in points if pt.accuracy >= full.accuracy - tolerance - 1e-12]
        cheapest = min(eligible, key=lambda pt: pt.expected_gmacs)
        cheapest.names.append(name)
    for point in points:
        point.name = point.names[0] if point.names else None
    return points


def choose_operating_point(points: list[OperatingPoint], choice: str | float) -> OperatingPoint:
    """A point by name (``full``, ``accurate``, ``balanced``, ``fast``) or, for a number, the most
    accurate point whose expected GMACs per video fit that budget (the cheapest if none does)."""
    if isinstance(choice, str):
        for point in points:
            if choice in point.names:
                return point
        known = sorted({name for point in points for name in point.names})
        raise KeyError(f"no operating point named {choice!r}; known: {', '.join(known)}")
    fitting = [point for point in points if point.expected_gmacs <= choice]
    if not fitting:
        return min(points, key=lambda point: point.expected_gmacs)
    return max(fitting, key=lambda point: (_measured(point.accuracy), -point.expected_gmacs))


def _measured(accuracy: float | None) -> float:
    return -math.inf if accuracy is None else accuracy
