"""Where the focus patch looks against where the target is (issue 24), and the oracle patch.

For a benchmark whose clips carry ground-truth target boxes (``<clip>.boxes.json``, mapped into
the model's frame by ``pipeline.frames.patch.boxes_in_crop``), each processed frame's patch is
compared with the target's box:

* **hit**: the patch holds at least half of the target's area (:data:`HIT_COVERAGE`);
* **IoU**: intersection over union of the patch and the target's box.

Frames where the target is not in the model's frame (zero area after the crop) do not count.
The *oracle* places the patch centred on the target (clipped to the frame): the upper bound a
policy can reach with the same local network and budget.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

HIT_COVERAGE = 0.5  # a patch "holds" the target when it covers at least this share of its area


def patch_boxes(locations: np.ndarray, frame_size: int, patch_size: int) -> np.ndarray:
    """Boxes ``(..., 4)`` ``[x0, y0, x1, y1)`` of patches at ``locations`` ``(..., 2)`` in ``(0, 1)``
    (top-left corner ``location * (frame_size - patch_size)``, the crop's convention)."""
    origin = np.asarray(locations, dtype=np.float64) * (frame_size - patch_size)
    return np.concatenate([origin, origin + patch_size], axis=-1)


def _area(boxes: np.ndarray) -> np.ndarray:
    return np.clip(boxes[..., 2] - boxes[..., 0], 0, None) * np.clip(boxes[..., 3] - boxes[..., 1], 0, None)


def coverage_and_iou(patches: np.ndarray, targets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per box pair: the share of the target's area inside the patch, and their IoU (NaN where
    the target has no area)."""
    patches, targets = np.asarray(patches, dtype=np.float64), np.asarray(targets, dtype=np.float64)
    low = np.maximum(patches[..., :2], targets[..., :2])
    high = np.minimum(patches[..., 2:], targets[..., 2:])
    inter = np.clip(high - low, 0, None).prod(axis=-1)
    target_area = _area(targets)
    union = _area(patches) + target_area - inter
    with np.errstate(invalid="ignore", divide="ignore"):
        coverage = np.where(target_area > 0, inter / target_area, np.nan)
        iou = np.where(target_area > 0, inter / union, np.nan)
    return coverage, iou


def oracle_locations(targets: np.ndarray, frame_size: int, patch_size: int) -> np.ndarray:
    """Locations ``(..., 2)`` of patches centred on the targets' boxes, kept inside the frame."""
    targets = np.asarray(targets, dtype=np.float64)
    centre = (targets[..., :2] + targets[..., 2:]) / 2
    span = max(frame_size - patch_size, 1)
    return np.clip((centre - patch_size / 2) / span, 0.0, 1.0).astype(np.float32)


@dataclass(frozen=True)
class FocusQuality:
    """How well a run's patches hold the target, over the frames it processed."""

    hit_rate: float  # share of frames whose patch holds at least HIT_COVERAGE of the target
    iou: float  # mean IoU of patch and target
    frames: int  # frames counted (processed, with the target in the model's frame)

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def focus_quality(
    locations: np.ndarray,
    targets: np.ndarray,
    frame_size: int,
    patch_size: int,
    processed: np.ndarray | None = None,
) -> FocusQuality:
    """:class:`FocusQuality` of patches at ``locations`` ``(N, T, 2)`` against target boxes
    ``(N, T, 4)`` in the model's frame; ``processed`` ``(N, T)`` bool: the frames that count (an
    early exit's or a frame-skipping policy's), all by default."""
    coverage, iou = coverage_and_iou(patch_boxes(locations, frame_size, patch_size), targets)
    counted = ~np.isnan(coverage)
    if processed is not None:
        counted &= np.asarray(processed, dtype=bool)
    frames = int(counted.sum())
    if frames == 0:
        return FocusQuality(float("nan"), float("nan"), 0)
    hits = coverage[counted] >= HIT_COVERAGE - 1e-9
    return FocusQuality(float(hits.mean()), float(iou[counted].mean()), frames)
