"""What an answer says, for every front end that classifies videos (the HTTP service, the batch job).

Torch-free and web-free, so the batch job (``batch/``) gives the service's answers without
importing FastAPI: the scores and top-k labels of a clip's logits, the exit an option names,
and the problem (title, HTTP status, detail) an unusable input is answered with.

The rules are the service's (``service/classify.py``, ``service/uploads.py``,
``service/problems.py``); ``tests/batch`` checks both front ends answer alike on the same files.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.early_exit import OperatingPoint, choose_operating_point
from pipeline.frames.errors import VideoError
from pipeline.manifest import Manifest

OK = "ok"  # the status of an answered video; any other status is a problem's title


def class_scores(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    """Scores of every class in float64: the softmax of ``logits``, or per-class sigmoids for a
    multi-label model (the service's ``labels[].score``)."""
    logits = np.asarray(logits).astype(np.float64)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def top_labels(manifest: Manifest, logits: np.ndarray, top_k: int) -> list[tuple[str, float]]:
    """The ``top_k`` best ``(label, score)`` pairs, best first, as the service orders them."""
    scores = class_scores(logits, manifest.multi_label)
    best = np.argsort(-scores)[:top_k]
    return [(manifest.labels[i], float(scores[i])) for i in best]


@dataclass(frozen=True)
class Exit:
    """The operating point a run exits with, and the name the answers give it."""

    point: OperatingPoint
    label: str

    @property
    def thresholds(self) -> list[float]:
        return self.point.thresholds

    def may_stop_early(self) -> bool:
        """Whether some step before the last can exit (``full`` and points like it cannot)."""
        return any(threshold != math.inf for threshold in self.point.thresholds[:-1])


class ExitError(ValueError):
    """An exit option that names no usable operating point; the message lists the valid ones."""


def operating_points(manifest: Manifest) -> list[OperatingPoint]:
    """The manifest's operating points as :class:`OperatingPoint` (thresholds as floats)."""
    return [OperatingPoint.from_dict(spec.model_dump()) for spec in manifest.operating_points]


def choose_exit(manifest: Manifest, value: str) -> Exit | None:
    """The exit ``value`` names: ``off`` (``None``: every frame), an operating point's name, or a
    budget in GMACs per video (the most accurate point within it). Raises :class:`ExitError` for
    an unknown name, a budget that is not a finite positive number or is below the cheapest
    point, and any name but ``full`` on a whole-clip model (it cannot exit early)."""
    if value == "off":
        return None
    points = operating_points(manifest)
    budget = _budget(value)
    cheapest = min(point.expected_gmacs for point in points)
    if budget is None and manifest.temporal == "whole_clip" and value != "full":
        raise ExitError(f"{manifest.name} v{manifest.version} runs each video in one whole-clip pass: use off or full")
    if budget is not None:
        if budget < cheapest:
            raise ExitError(f"a budget of {budget!r} GMACs per video is below the cheapest point's {cheapest!r}")
        point = choose_operating_point(points, budget)
        return Exit(point, point.names[0] if point.names else f"p={point.p:.3g}")
    try:
        return Exit(choose_operating_point(points, value), value)
    except KeyError:
        names = sorted({name for point in points for name in point.names})
        raise ExitError(
            f"no operating point named {value!r}; use one of: {', '.join(['off', *names])}, "
            f"or a budget in GMACs per video of at least {cheapest!r}"
        ) from None


def default_exit(manifest: Manifest, value: str) -> Exit | None:
    """The exit of a run that names none: ``value`` where the model has it, else every frame
    (the service's ``ADAFOCUS_DEFAULT_EXIT`` rule: an uncalibrated model has only ``full``)."""
    try:
        return choose_exit(manifest, value)
    except ExitError:
        return None


def _budget(value: str) -> float | None:
    """``value`` as a GMACs budget, ``None`` if it is a name; :class:`ExitError` if not finite and positive."""
    try:
        budget = float(value)
    except ValueError:
        return None
    if not math.isfinite(budget) or budget <= 0:
        raise ExitError(f"an exit budget must be a finite positive number of GMACs per video, got {value!r}")
    return budget


@dataclass(frozen=True)
class Problem:
    """Why an input got no answer: the service's problem+json ``title``, ``status`` and ``detail``."""

    title: str
    status: int
    detail: str


# The service refuses an empty upload before any decoding (``service/uploads.py``).
EMPTY_VIDEO = Problem("Empty upload", 422, "the video is empty")
# The service's answer for a file that crashed a decoder twice (``service/decoding.py``).
DECODER_CRASHED = Problem("Undecodable video", 422, "the decoder crashed on this file twice, once in a fresh process")


def problem_of(error: VideoError) -> Problem:
    """The problem a frames error is answered with (each carries its status and title)."""
    return Problem(error.title, error.status, str(error))


def gmacs_spent(manifest: Manifest, frames_processed: int) -> float:
    """GMACs of ``frames_processed`` frames (the service's ``gmacs.spent``)."""
    return manifest.gmacs_per_frame * frames_processed


def frames_processed(manifest: Manifest, steps: int) -> int:
    """Frames a run of ``steps`` steps processed: one per step, every sample for a whole clip."""
    return manifest.frames.num_frames if manifest.temporal == "whole_clip" else steps


def labels_and_scores(pairs: Sequence[tuple[str, float]]) -> tuple[list[str], list[float]]:
    """``[(label, score), ...]`` as two lists (a columnar row)."""
    return [label for label, _ in pairs], [score for _, score in pairs]
