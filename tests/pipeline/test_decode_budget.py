"""The decode budget (issue 22, decode amplification): a small file whose samples sit behind
many decoded frames (static content, one keyframe) is refused once the frames decoded for
one clip pass ``DecodeLimits.max_decoded_pixels``, whichever way it is read."""

from __future__ import annotations

import io
from pathlib import Path

import av
import numpy as np
import pytest

from pipeline.frames.decode import ClipReader, read_all_resized, read_clip
from pipeline.frames.errors import DecodeBudgetError, VideoLimitError
from pipeline.frames.limits import DecodeLimits
from pipeline.frames.transform import FrameGeometry

WIDTH, HEIGHT, FRAMES = 320, 240, 240  # 76,800 pixels a frame, 18.4 Mpx for every frame
GEOMETRY = FrameGeometry(64, 64)


def amplification_video(path: Path, frames: int = FRAMES, gop: int | None = None) -> Path:
    """A static H.264 video with one keyframe (or one every ``gop`` frames) and no B-frames:
    a few kB, yet every sample past the first needs every frame before it (back to its
    keyframe) decoded, since each P-frame references the last."""
    gop = gop or frames
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=24)
        stream.width, stream.height, stream.pix_fmt = WIDTH, HEIGHT, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.options = {"preset": "ultrafast", "bf": "0", "keyint_min": str(gop), "sc_threshold": "0"}
        still = av.VideoFrame.from_ndarray(np.full((HEIGHT, WIDTH, 3), 90, dtype=np.uint8), format="rgb24")
        for i in range(frames):
            still.pts = i
            for packet in stream.encode(still):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


@pytest.fixture(scope="module")
def amplifier(tmp_path_factory) -> bytes:
    data = amplification_video(tmp_path_factory.mktemp("budget") / "static.mp4").read_bytes()
    assert len(data) < 100_000  # small file, large decode
    return data


def budget(mpx: float) -> DecodeLimits:
    return DecodeLimits(max_decoded_pixels=int(mpx * 1e6))


def test_the_file_is_an_amplifier(amplifier):
    clip = read_clip(io.BytesIO(amplifier), 8, GEOMETRY)
    assert clip.num_frames == FRAMES and clip.seeks == 0  # one keyframe: nothing to seek to
    assert clip.decoded_frames > 0.8 * FRAMES  # every frame up to the last sample


@pytest.mark.parametrize("strategy", ["auto", "seek", "sequential"])
def test_read_clip_stops_at_the_budget_and_says_which(amplifier, strategy):
    with pytest.raises(DecodeBudgetError) as refused:
        read_clip(io.BytesIO(amplifier), 8, GEOMETRY, budget(5.0), strategy=strategy)
    error = refused.value
    assert isinstance(error, VideoLimitError) and error.status == 422
    message = str(error)
    assert "decode budget" in message and "5 megapixels" in message and "ADAFOCUS_DECODE_BUDGET_MPX" in message
    # how far it got: 5 Mpx is 65 frames of 320x240, the 66th passes it
    assert "66 frames decoded" in message and "of 240" in message


def test_a_budget_the_clip_fits_in_changes_nothing(amplifier):
    free = read_clip(io.BytesIO(amplifier), 8, GEOMETRY)
    capped = read_clip(io.BytesIO(amplifier), 8, GEOMETRY, budget(FRAMES * WIDTH * HEIGHT / 1e6 + 0.1))
    np.testing.assert_array_equal(capped.frames, free.frames)


def test_a_clip_reader_counts_every_read_against_one_budget(amplifier):
    """Each stage alone fits in the budget; together they do not."""
    limits = budget(10.0)  # 130 frames
    with ClipReader(io.BytesIO(amplifier), 8, GEOMETRY, limits) as reader:
        reader.read([0, 1, 2, 3])  # up to frame 105
        with pytest.raises(DecodeBudgetError, match="131 frames decoded"):
            reader.read([4, 5, 6, 7])


def test_frames_decoded_again_after_a_seek_count(amplifier):
    """A sample asked for again once the decoder has passed it is decoded again from the keyframe:
    those frames cost too. (Samples of later reads passed on the way are kept, not decoded again.)"""
    per_frame = WIDTH * HEIGHT
    with ClipReader(io.BytesIO(amplifier), 8, GEOMETRY, DecodeLimits(max_decoded_pixels=230 * per_frame)) as reader:
        assert reader.read([7]).decoded_frames == 226  # sampled or not
        assert reader.read([6]).decoded_frames == 0  # kept on the way to sample 7
        with pytest.raises(DecodeBudgetError):
            reader.read([7])  # behind the decoder: a seek to the only keyframe and 226 more


def test_parallel_decoders_of_one_clip_share_its_budget(tmp_path, monkeypatch):
    """A file on disk with several keyframes is decoded by several decoders at once (about 46
    frames each here): their frames add up against the one budget of the clip."""
    from pipeline.frames import decode

    path = amplification_video(tmp_path / "gop60.mp4", gop=60)
    chunks = []
    parallel = decode._decode_in_parallel
    monkeypatch.setattr(decode, "_decode_in_parallel", lambda *args: chunks.append(args[2]) or parallel(*args))
    assert read_clip(path, 8, GEOMETRY, threads=4).decoded_frames > 150
    assert len(chunks[0]) == 4
    with pytest.raises(DecodeBudgetError):
        read_clip(path, 8, GEOMETRY, DecodeLimits(max_decoded_pixels=100 * WIDTH * HEIGHT), threads=4)


def test_reading_every_frame_is_counted_too(amplifier):
    with pytest.raises(DecodeBudgetError):
        read_all_resized(io.BytesIO(amplifier), GEOMETRY, budget(5.0))
    assert len(read_all_resized(io.BytesIO(amplifier), GEOMETRY).frames) == FRAMES


def test_the_default_limits_have_no_budget():
    assert DecodeLimits().max_decoded_pixels is None
