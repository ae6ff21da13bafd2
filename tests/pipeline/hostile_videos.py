"""Generated videos that a careless or hostile client could send: odd timestamps, frames that
change size mid-stream. Each writes a small MJPEG file (every packet a JPEG of its own, so
frames may differ in size and timestamps can be set freely)."""

from __future__ import annotations

from fractions import Fraction
from pathlib import Path

import av

from tests.videos import frame_image


def negative_start_matroska(path: Path, frames: int = 24, offset_ms: int = -2000) -> Path:
    """MJPEG in Matroska whose first timestamp is ``offset_ms`` before zero, muxed with the
    negative timestamps kept (``avoid_negative_ts`` disabled): FFmpeg indexes it, but seeking
    in it fails (``av.error.PermissionError`` from ``container.seek``)."""
    with av.open(str(path), "w", format="matroska", options={"avoid_negative_ts": "disabled"}) as output:
        stream = output.add_stream("mjpeg", rate=12)
        stream.width, stream.height, stream.pix_fmt = 64, 64, "yuvj420p"
        stream.codec_context.time_base = Fraction(1, 1000)
        for i in range(frames):
            frame = av.VideoFrame.from_ndarray(frame_image(i, 64, 64), format="rgb24")
            frame.pts, frame.time_base = i * 83, Fraction(1, 1000)
            for packet in stream.encode(frame):
                packet.pts += offset_ms
                packet.dts += offset_ms
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def size_switching_video(path: Path, sizes: list[tuple[int, int]], container: str = "avi", fps: int = 12) -> Path:
    """MJPEG whose frame ``i`` is ``sizes[i]`` (width, height) pixels: the container and the
    stream's header say the first size, the decoder then produces the others."""
    with av.open(str(path), "w", format=container) as output:
        stream = output.add_stream("mjpeg", rate=fps)
        stream.width, stream.height, stream.pix_fmt = *sizes[0], "yuvj420p"
        encoders: dict[tuple[int, int], av.CodecContext] = {}
        for i, (width, height) in enumerate(sizes):
            encoder = encoders.get((width, height))
            if encoder is None:
                encoder = encoders[width, height] = av.CodecContext.create("mjpeg", "w")
                encoder.width, encoder.height, encoder.pix_fmt = width, height, "yuvj420p"
                encoder.time_base = Fraction(1, fps)
            image = frame_image(i, width, height)
            frame = av.VideoFrame.from_ndarray(image, format="rgb24").reformat(format="yuvj420p")
            frame.pts, frame.time_base = i, Fraction(1, fps)
            for packet in encoder.encode(frame):
                packet.stream = stream
                packet.pts = packet.dts = i
                packet.time_base = Fraction(1, fps)
                output.mux(packet)
    return path
