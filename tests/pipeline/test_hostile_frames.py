"""The frame pipeline on hostile input: every failure is a typed ``VideoError``, never a bare
FFmpeg exception, and the limits hold for every decoded frame, not only for the header."""

from __future__ import annotations

import io

import pytest

from pipeline.frames import FrameGeometry, UndecodableVideoError
from pipeline.frames.decode import ClipReader, read_all_resized, read_clip
from tests.pipeline.hostile_videos import negative_start_matroska

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
