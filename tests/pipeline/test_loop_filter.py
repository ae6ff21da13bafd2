"""``skip_loop_filter``: FFmpeg's deblocking shortcut, off (bit-exact) unless asked for."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from pipeline.frames.decode import ClipReader, decode_only, read_clip
from pipeline.frames.transform import FrameGeometry
from tests.videos import blocky_video

GEOMETRY = FrameGeometry(128, 112)


@pytest.fixture(scope="module")
def video(tmp_path_factory) -> Path:
    return blocky_video(tmp_path_factory.mktemp("loop_filter") / "blocky.mp4")


def test_none_is_the_default_decode_and_all_changes_pixels_slightly(video):
    default = read_clip(video, 8, GEOMETRY, threads=1).frames
    np.testing.assert_array_equal(read_clip(video, 8, GEOMETRY, threads=1, skip_loop_filter="none").frames, default)
    skipped = read_clip(video, 8, GEOMETRY, threads=1, skip_loop_filter="all").frames
    difference = np.abs(skipped - default)
    assert difference.max() > 0  # the filter was skipped
    assert difference.mean() < 0.2  # in normalised units: a few grey levels on this worst-case clip


@pytest.mark.parametrize("mode", ["bidir", "all"])
def test_a_reader_in_stages_and_the_parallel_decoders_skip_it_too(video, mode):
    whole = read_clip(video, 8, GEOMETRY, threads=1, skip_loop_filter=mode).frames
    with ClipReader(video, 8, GEOMETRY, threads=1, skip_loop_filter=mode) as reader:
        staged = np.concatenate(
            [reader.read([3]).frames, reader.read([0, 7]).frames, reader.read([1, 2, 4, 5, 6]).frames]
        )
    np.testing.assert_array_equal(staged, whole[[3, 0, 7, 1, 2, 4, 5, 6]])
    parallel = read_clip(video, 8, GEOMETRY, threads=2, strategy="seek", skip_loop_filter=mode).frames
    np.testing.assert_array_equal(parallel, whole)
    assert decode_only(video, 8, threads=1, skip_loop_filter=mode)[0] > 0
