"""Generated test videos: each frame shows its own index, so sampling can be checked."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av
import numpy as np

# (container format, extension, codec, pixel format)
CONTAINERS = [
    ("mp4", "mp4", "libx264", "yuv420p"),
    ("webm", "webm", "libvpx-vp9", "yuv420p"),
    ("avi", "avi", "mjpeg", "yuvj420p"),
    ("matroska", "mkv", "libx264", "yuv420p"),
]


def frame_image(index: int, width: int, height: int, marker: bool = False) -> np.ndarray:
    """A frame whose mean brightness encodes ``index`` (robust to lossy coding): 8 * index % 256.

    ``marker`` paints the top-left quarter red, to check orientation.
    """
    image = np.empty((height, width, 3), dtype=np.uint8)
    image[:] = (8 * index) % 256
    if marker:
        image[: height // 2, : width // 2] = (255, 0, 0)
    return image


def set_mp4_rotation(path: Path, clockwise_degrees: int) -> None:
    """Rewrite the track header matrix of an MP4 so players rotate it clockwise for display
    (what phones write; FFmpeg's muxer ignores a 'rotate' tag)."""
    cos, sin = {90: (0, -1), 180: (-1, 0), 270: (0, 1)}[clockwise_degrees]
    one = 1 << 16
    matrix = [cos * one, -sin * one, 0, sin * one, cos * one, 0, 0, 0, 1 << 30]
    data = bytearray(path.read_bytes())
    at = data.index(b"tkhd") + 4  # version + flags follow the box type
    version = data[at]
    matrix_at = at + 4 + (32 if version == 1 else 20) + 16
    data[matrix_at : matrix_at + 36] = b"".join(v.to_bytes(4, "big", signed=True) for v in matrix)
    path.write_bytes(bytes(data))


def brightness_index(frame_chw: np.ndarray) -> int:
    """Inverse of :func:`frame_image` on a normalised ``(3, H, W)`` frame (indices below 32)."""
    from pipeline.frames.transform import IMAGENET_MEAN, IMAGENET_STD

    rgb = frame_chw.transpose(1, 2, 0) * IMAGENET_STD + IMAGENET_MEAN
    return int(round(float(rgb.mean()) * 255 / 8))


def make_video(
    path: Path,
    frames: int = 24,
    width: int = 64,
    height: int = 48,
    fps: int = 12,
    codec: str = "libx264",
    pix_fmt: str = "yuv420p",
    container: str | None = None,
    gop: int | None = 12,
    timestamps: list[int] | None = None,
    marker: bool = False,
    with_audio: bool = False,
) -> Path:
    """Write a video; ``timestamps`` (in 1/1000 s) makes the frame rate variable."""
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream(codec, rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, pix_fmt
        if gop:
            stream.codec_context.gop_size = gop
        if timestamps is not None:
            stream.codec_context.time_base = Fraction(1, 1000)
        audio = output.add_stream("aac", rate=8000) if with_audio else None
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, width, height, marker), format="rgb24")
            if timestamps is not None:
                frame.pts, frame.time_base = timestamps[i], Fraction(1, 1000)
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
        if audio is not None:
            _write_audio(output, audio, seconds=frames / fps)
    return path


def _write_audio(output, stream, seconds: float) -> None:
    samples = int(8000 * seconds)
    frame = av.AudioFrame.from_ndarray(np.zeros((1, samples), dtype=np.float32), format="fltp", layout="mono")
    frame.sample_rate = 8000
    for packet in stream.encode(frame):
        output.mux(packet)
    for packet in stream.encode():
        output.mux(packet)


def make_audio_only(path: Path) -> Path:
    with av.open(str(path), "w", format="mp4") as output:
        _write_audio(output, output.add_stream("aac", rate=8000), seconds=1.0)
    return path


def blocky_video(path: Path, frames: int = 24, size: int = 128) -> Path:
    """Moving noise at a low H.264 quality (crf 40, B-frames): the decoder's deblocking filter
    changes its pixels, so skipping it shows (``skip_loop_filter``)."""
    texture = np.random.default_rng(0).integers(0, 256, (size * 2, size * 2, 3), dtype=np.uint8)
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=12, options={"crf": "40", "preset": "veryfast", "bf": "2"})
        stream.width = stream.height = size
        stream.pix_fmt = "yuv420p"
        stream.codec_context.gop_size = 8  # several keyframes: the parallel decoders take part
        for i in range(frames):
            image = np.ascontiguousarray(texture[3 * i : 3 * i + size, 2 * i : 2 * i + size])
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path
