"""The frame pipeline on hostile input: every failure is a typed ``VideoError``, never a bare
FFmpeg exception, and the limits hold for every decoded frame, not only for the header."""

from __future__ import annotations

import io

import pytest

from pipeline.frames import DecodeLimits, FrameGeometry, UndecodableVideoError, VideoLimitError
from pipeline.frames.decode import ClipReader, read_all_resized, read_clip
from tests.pipeline.hostile_videos import negative_start_matroska, size_switching_video

GEOMETRY = FrameGeometry(resize=40, crop=32)


@pytest.mark.parametrize("strategy", ["auto", "seek", "sequential"])
def test_a_file_that_cannot_be_sought_is_undecodable_not_an_ffmpeg_error(tmp_path, strategy):
    """FFmpeg's seek fails on a Matroska file that starts 2 s before zero (PermissionError);
    every reading path answers with the frames' typed error, which the service turns into a 422."""
    path = negative_start_matroska(tmp_path / "negative.mkv")
    with pytest.raises(UndecodableVideoError):
        read_clip(path, 8, GEOMETRY, strategy=strategy)
    with pytest.raises(UndecodableVideoError):
        read_clip(io.BytesIO(path.read_bytes()), 8, GEOMETRY, strategy=strategy)


def test_a_clip_reader_on_a_file_that_cannot_be_sought_raises_the_typed_error(tmp_path):
    data = negative_start_matroska(tmp_path / "negative.mkv").read_bytes()
    with ClipReader(io.BytesIO(data), 8, GEOMETRY) as reader:
        with pytest.raises(UndecodableVideoError, match="seek"):
            reader.read([0])
    with pytest.raises(UndecodableVideoError):
        read_all_resized(io.BytesIO(data), GEOMETRY)


SWITCHING = [(64, 64)] * 6 + [(640, 640)] * 6  # the header says 64x64
BETWEEN = DecodeLimits(max_pixels=100 * 100)  # above the first size, below the second


@pytest.mark.parametrize("container, ext", [("avi", "avi"), ("matroska", "mkv")])
def test_a_frame_size_that_grows_mid_stream_hits_the_pixel_limit(tmp_path, container, ext):
    path = size_switching_video(tmp_path / f"switching.{ext}", SWITCHING, container)
    for strategy in ("auto", "seek", "sequential"):
        with pytest.raises(VideoLimitError, match="640x640"):
            read_clip(path, 8, GEOMETRY, limits=BETWEEN, strategy=strategy)
    with pytest.raises(VideoLimitError, match="pixels"):
        read_all_resized(path, GEOMETRY, limits=BETWEEN)
    with ClipReader(io.BytesIO(path.read_bytes()), 8, GEOMETRY, limits=BETWEEN) as reader:
        reader.read([0, 1])  # the first samples are 64x64: within the limit
        with pytest.raises(VideoLimitError, match="pixels"):
            reader.read([7])
    # Without the limit the same file decodes (both sizes are fine frames).
    assert read_clip(path, 8, GEOMETRY, limits=DecodeLimits(max_pixels=640 * 640)).num_frames == 12


def test_a_frame_size_that_shrinks_mid_stream_is_within_the_limit(tmp_path):
    path = size_switching_video(tmp_path / "shrinking.avi", [(96, 96)] * 4 + [(64, 64)] * 4)
    assert read_clip(path, 4, GEOMETRY, limits=DecodeLimits(max_pixels=96 * 96)).num_frames == 8
