"""Focus-patch geometry: where a patch lies in the model's frame and in the original video.

The policy outputs a location ``(x, y)`` in ``(0, 1)^2`` per frame. The patch's top-left
corner in the model's ``size x size`` frame (the resized, centre-cropped frame of
``pipeline.frames.transform``) is ``location * (size - patch)``, so the patch always lies inside
the frame. This module is the one definition of that mapping; the model's differentiable
crop (``training.adafocus.crop``) and the service both follow it, and a test checks that
they agree.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .transform import CropBox, FrameGeometry


@dataclass(frozen=True)
class PatchBox:
    """A box in pixels: ``[left, left + width) x [top, top + height)`` (floats)."""

    left: float
    top: float
    width: float
    height: float

    def as_dict(self) -> dict[str, float]:
        return {"x": self.left, "y": self.top, "width": self.width, "height": self.height}


def patch_origin(location: np.ndarray, frame_size: int, patch_size: int) -> np.ndarray:
    """Top-left corners ``(..., 2)`` as ``(left, top)`` of patches at ``location`` ``(..., 2)``."""
    if not 0 < patch_size <= frame_size:
        raise ValueError(f"patch size {patch_size} must be positive and at most the frame size {frame_size}")
    location = np.asarray(location, dtype=np.float32)
    return location * np.float32(frame_size - patch_size)


def sampling_grid(origin: np.ndarray, frame_size: int, patch_size: int) -> np.ndarray:
    """Normalised ``grid_sample`` coordinates ``(N, P, P, 2)`` that read the patch at ``origin``.

    With ``align_corners=False``, normalised coordinate ``u`` reads pixel ``((u + 1) * S - 1) / 2``;
    patch pixel ``j`` must read ``origin + j``, so ``u = (2 * (origin + j) + 1) / S - 1``. For
    integer origins this reads pixels exactly (a plain crop), bit for bit when ``S`` is a
    power of two.
    """
    origin = np.asarray(origin, dtype=np.float32).reshape(-1, 2)
    steps = np.arange(patch_size, dtype=np.float32)
    xs = (2 * (origin[:, 0:1] + steps) + 1) / np.float32(frame_size) - 1  # (N, P)
    ys = (2 * (origin[:, 1:2] + steps) + 1) / np.float32(frame_size) - 1
    grid = np.empty((len(origin), patch_size, patch_size, 2), dtype=np.float32)
    grid[..., 0] = xs[:, None, :]
    grid[..., 1] = ys[:, :, None]
    return grid


def box_in_original(
    origin: tuple[float, float],
    patch_size: int,
    geometry: FrameGeometry,
    original_size: tuple[int, int],
) -> PatchBox:
    """The patch at ``origin`` (model-frame pixels) as a box in the original video's pixels.

    The model frame is the centre ``crop x crop`` square of the frame resized so that its
    shorter side is ``geometry.resize``; ``original_size`` is ``(width, height)`` as displayed.
    """
    width, height = original_size
    resized_w, resized_h = geometry.resized_size(width, height)
    centre = geometry.centre_box(width, height)
    scale_x, scale_y = width / resized_w, height / resized_h
    left = (centre.left + float(origin[0])) * scale_x
    top = (centre.top + float(origin[1])) * scale_y
    return PatchBox(left, top, patch_size * scale_x, patch_size * scale_y)


def boxes_in_crop(
    boxes: np.ndarray, geometry: FrameGeometry, crop_box: CropBox, original_size: tuple[int, int]
) -> np.ndarray:
    """Boxes ``(..., 4)`` ``[x0, y0, x1, y1)`` in the original video's pixels as boxes in the model's
    ``crop x crop`` frame: resized with the frame, shifted and scaled by the clip's crop, mirrored
    with it, and clipped to the frame (a box outside it has zero width or height). The inverse
    direction of :func:`box_in_original`, for any crop (a training draw too)."""
    boxes = np.asarray(boxes, dtype=np.float64)
    width, height = original_size
    resized_w, resized_h = geometry.resized_size(width, height)
    scale = geometry.crop / crop_box.size
    xs = (boxes[..., 0::2] * resized_w / width - crop_box.left) * scale
    ys = (boxes[..., 1::2] * resized_h / height - crop_box.top) * scale
    if crop_box.flip:
        xs = geometry.crop - xs[..., ::-1]
    out = np.stack([xs[..., 0], ys[..., 0], xs[..., 1], ys[..., 1]], axis=-1)
    return np.clip(out, 0, geometry.crop).astype(np.float32)
