"""TSN-style frame sampling: ``T`` equal segments, one frame from each.

``keyframes`` sampling (a serving option) moves each sample to the keyframe nearest to it, so
the decoder decodes keyframes only; where a video has fewer keyframes than samples, samples share
them (a 10 s clip with a keyframe every 8.3 s offers two frames).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence
from typing import Literal

import numpy as np

# How the samples are chosen: the segment centres (what the models are trained and calibrated
# on), or the keyframe nearest to each (decoding only keyframes: cheaper, less accurate).
Sampling = Literal["uniform", "keyframes"]
SAMPLING_MODES: tuple[Sampling, ...] = ("uniform", "keyframes")


def segment_indices(num_frames: int, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices of ``num_samples`` samples from ``num_frames`` frames, in order.

    The frames are cut into ``num_samples`` equal segments (fractional bounds). Without
    ``rng`` each sample is its segment's centre (evaluation and serving), computed as TSN's
    test code does, ``int(tick / 2 + tick * i)`` with ``tick = num_frames / num_samples`` in
    float64, so that the frames agree exactly with the authors' where the centre is an integer
    that rounding puts just below (16 frames, 12 samples: their sample 7 is frame 9, not 10);
    with ``rng`` it is a uniformly random frame of its segment (training). With fewer frames
    than samples, segments are shorter than a frame and frames repeat: a 1-frame video gives
    that frame ``num_samples`` times. Deterministic given the generator state.
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    if num_samples < 1:
        raise ValueError("at least one sample is needed")
    if rng is None:
        tick = num_frames / num_samples
        positions = tick / 2 + tick * np.arange(num_samples, dtype=np.float64)
    else:
        bounds = np.arange(num_samples + 1, dtype=np.float64) * num_frames / num_samples
        positions = bounds[:-1] + rng.random(num_samples) * (bounds[1:] - bounds[:-1])
    return np.clip(np.floor(positions).astype(np.int64), 0, num_frames - 1)


# What a model samples from a video: ``T`` segments (one set of frames), or several sets
# sampled separately and concatenated (a whole-clip TSM model's glance frames, then its focus
# frames: ``(8, 12)``).
Samples = int | tuple[int, ...]


def sample_count(samples: Samples) -> int:
    """How many frames ``samples`` gives (the sum of the sets)."""
    return samples if isinstance(samples, int) else sum(samples)


def sample_indices(num_frames: int, samples: Samples, rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices of ``samples``: :func:`segment_indices` of one set, or of each set in turn,
    concatenated (not sorted: position ``p`` is the ``p``-th sample of the model's input; sets
    may share frames)."""
    if isinstance(samples, int):
        return segment_indices(num_frames, samples, rng)
    if not samples:
        raise ValueError("at least one set of samples is needed")
    return np.concatenate([segment_indices(num_frames, count, rng) for count in samples])


def nearest_keyframes(indices: np.ndarray, keyframes: Sequence[int]) -> np.ndarray:
    """Each frame index of ``indices`` replaced by the nearest of ``keyframes`` (sorted frame
    indices, at least one), the earlier one on a tie."""
    if not keyframes:
        raise ValueError("a video needs at least one keyframe")
    nearest = []
    for index in indices.tolist():
        after = bisect.bisect_left(keyframes, index)
        candidates = keyframes[max(0, after - 1) : after + 1]
        nearest.append(min(candidates, key=lambda keyframe: (abs(keyframe - index), keyframe)))
    return np.asarray(nearest, dtype=np.int64)
