"""Frame geometry and normalisation: how a decoded frame becomes a model input.

Evaluation and serving: resize so the shorter side is ``resize`` (aspect kept, the longer
side rounded to the nearest pixel), then take the centre ``crop x crop`` square. Training:
the same resize, then a multi-scale crop (side = scale x shorter side, scales
``{1, .875, .75, .66}``, at one of five fixed positions) resized to ``crop``, and a
horizontal flip with probability 1/2; one draw per clip, applied to every frame.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from functools import cached_property

import av
import numpy as np
from av.video.reformatter import VideoReformatter

from .errors import VideoLimitError

IMAGENET_MEAN_RGB = (0.485, 0.456, 0.406)
IMAGENET_STD_RGB = (0.229, 0.224, 0.225)
IMAGENET_MEAN = np.array(IMAGENET_MEAN_RGB, dtype=np.float32)
IMAGENET_STD = np.array(IMAGENET_STD_RGB, dtype=np.float32)
MULTI_SCALES: tuple[float, ...] = (1.0, 0.875, 0.75, 0.66)
# swscale interpolation used for every resize, in the decoder and after a training crop.
INTERPOLATION = "BILINEAR"
# Widest accepted frame, longer side over shorter (ultra-wide video is 32:9, panoramas 2:1 to 6:1):
# bounds the resized frame at MAX_ASPECT_RATIO x resize^2 pixels whatever the input's shape.
MAX_ASPECT_RATIO = 16
# Scaling contexts kept per thread, one per (input size, format, output size, format).
_SCALERS = threading.local()
_MAX_SCALERS = 8


def scale(frame: av.VideoFrame, width: int, height: int, format: str | None = None) -> av.VideoFrame:
    """``frame.reformat(width, height, format, interpolation=INTERPOLATION)``, cheaper; the same pixels.

    ``VideoFrame.reformat`` builds a new swscale context for every frame and scales with a
    pool of threads started for it; on a small frame that set-up costs 5-15x the scaling
    (measured: 0.16-0.5 ms against 0.03 ms at 128x128). Here each thread keeps one
    single-threaded context per geometry and reuses it (swscale's own context cache).
    """
    scalers: dict = _SCALERS.__dict__.setdefault("by_geometry", {})
    key = (frame.width, frame.height, frame.format.name, width, height, format)
    scaler = scalers.get(key)
    if scaler is None:
        if len(scalers) >= _MAX_SCALERS:  # a worker sees a few geometries; bound it anyway
            scalers.clear()
        scaler = scalers[key] = VideoReformatter()
    return scaler.reformat(frame, width, height, format, interpolation=INTERPOLATION, threads=1)


@dataclass(frozen=True)
class CropBox:
    """A square crop ``[left, left + size) x [top, top + size)`` of the resized frame, maybe mirrored."""

    left: int
    top: int
    size: int
    flip: bool = False


@dataclass(frozen=True)
class FrameGeometry:
    """Resize the shorter side to ``resize``, then crop ``crop x crop`` (``crop <= resize``)."""

    resize: int = 256
    crop: int = 224

    def __post_init__(self) -> None:
        if not 0 < self.crop <= self.resize:
            raise ValueError(f"crop ({self.crop}) must be positive and at most resize ({self.resize})")

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """``(width, height)`` after the shorter-side resize.

        Raises :class:`~pipeline.frames.errors.VideoLimitError` for a frame whose aspect ratio
        exceeds :data:`MAX_ASPECT_RATIO`, before anything is resized: the resize scales the
        longer side too, so a thin sliver becomes a huge frame (2x10000 pixels at a shorter side
        of 128: 128x640000, 245 MB).
        """
        longer, shorter = max(width, height), min(width, height)
        if longer > MAX_ASPECT_RATIO * shorter:
            raise VideoLimitError(
                f"{width}x{height} frames: aspect ratio {longer / shorter:.0f}:1; "
                f"at most {MAX_ASPECT_RATIO}:1 is accepted"
            )
        if width <= height:
            return self.resize, max(self.resize, round(height * self.resize / width))
        return max(self.resize, round(width * self.resize / height)), self.resize

    def centre_box(self, width: int, height: int) -> CropBox:
        """The evaluation crop of a frame of ``(width, height)`` display size."""
        rw, rh = self.resized_size(width, height)
        return CropBox((rw - self.crop) // 2, (rh - self.crop) // 2, self.crop)

    def random_box(self, width: int, height: int, rng: np.random.Generator) -> CropBox:
        """A training crop: multi-scale square at one of five positions, maybe flipped."""
        rw, rh = self.resized_size(width, height)
        size = max(1, int(round(min(rw, rh) * MULTI_SCALES[rng.integers(len(MULTI_SCALES))])))
        positions = [
            (0, 0),
            (rw - size, 0),
            (0, rh - size),
            (rw - size, rh - size),
            ((rw - size) // 2, (rh - size) // 2),
        ]
        left, top = positions[rng.integers(len(positions))]
        return CropBox(left, top, size, flip=bool(rng.random() < 0.5))

    def apply(self, resized_rgb: np.ndarray, box: CropBox) -> np.ndarray:
        """Crop ``box`` out of an already resized ``(H, W, 3)`` uint8 frame, scale it to ``crop``."""
        patch = resized_rgb[box.top : box.top + box.size, box.left : box.left + box.size]
        if box.size != self.crop:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(patch), format="rgb24")
            patch = scale(frame, self.crop, self.crop).to_ndarray()
        if box.flip:
            patch = patch[:, ::-1]
        return patch


@dataclass(frozen=True)
class Normalisation:
    """Per-channel ``(pixel / 255 - mean) / std`` with RGB ``mean`` and ``std`` on [0, 1] pixels.

    A model is served with the statistics it was trained with: the manifest records them
    (``frames.mean``, ``frames.std``) and the service builds its normalisation from there.
    """

    mean: tuple[float, float, float] = IMAGENET_MEAN_RGB
    std: tuple[float, float, float] = IMAGENET_STD_RGB

    def __post_init__(self) -> None:
        if len(self.mean) != 3 or len(self.std) != 3:
            raise ValueError(f"mean and std need 3 values (RGB), got {self.mean} and {self.std}")
        if min(self.std) <= 0:
            raise ValueError(f"std must be positive, got {self.std}")

    @cached_property
    def table(self) -> np.ndarray:
        """``(3, 256)``: every uint8 value of every channel, normalised. The same float32
        operations as normalising pixel by pixel, so a lookup gives identical bits."""
        mean = np.asarray(self.mean, dtype=np.float32)[:, None]
        std = np.asarray(self.std, dtype=np.float32)[:, None]
        values = np.arange(256, dtype=np.float32)[None, :] / np.float32(255.0)
        return (values - mean) / std

    def __call__(self, frames: np.ndarray) -> np.ndarray:
        """``(T, H, W, 3)`` uint8 RGB -> ``(T, 3, H, W)`` float32.

        A table lookup per channel: arithmetic broadcast over a last axis of 3 runs numpy's
        inner loops 3 elements at a time (about 10x slower, measured)."""
        if frames.dtype != np.uint8:
            raise ValueError(f"expected uint8 frames, got {frames.dtype}")
        table = self.table
        out = np.empty((frames.shape[0], 3, *frames.shape[1:3]), dtype=np.float32)
        for t in range(frames.shape[0]):
            for channel in range(3):  # a contiguous output plane per call: no buffering in take
                np.take(table[channel], frames[t, ..., channel], out=out[t, channel])
        return out


IMAGENET = Normalisation()


def normalise(frames: np.ndarray, normalisation: Normalisation = IMAGENET) -> np.ndarray:
    """``(T, H, W, 3)`` uint8 RGB -> ``(T, 3, H, W)`` float32 (ImageNet mean/std unless given)."""
    return normalisation(frames)
