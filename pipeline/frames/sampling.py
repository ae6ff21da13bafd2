"""TSN-style frame sampling: ``T`` equal segments, one frame from each."""

from __future__ import annotations

import numpy as np


def segment_indices(num_frames: int, num_samples: int, rng: np.random.Generator | None = None) -> np.ndarray:
    """Frame indices of ``num_samples`` samples from ``num_frames`` frames, in order.

    The frames are cut into ``num_samples`` equal segments (fractional bounds). Without
    ``rng`` each sample is its segment's centre (evaluation and serving); with ``rng`` it is
    a uniformly random frame of its segment (training). With fewer frames than samples,
    segments are shorter than a frame and frames repeat: a 1-frame video gives that frame
    ``num_samples`` times. Deterministic given the generator state.
    """
    if num_frames < 1:
        raise ValueError("a video needs at least one frame")
    if num_samples < 1:
        raise ValueError("at least one sample is needed")
    bounds = np.arange(num_samples + 1, dtype=np.float64) * num_frames / num_samples
    if rng is None:
        positions = (bounds[:-1] + bounds[1:]) / 2
    else:
        positions = bounds[:-1] + rng.random(num_samples) * (bounds[1:] - bounds[:-1])
    return np.clip(np.floor(positions).astype(np.int64), 0, num_frames - 1)
