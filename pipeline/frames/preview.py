"""Small JPEG previews of decoded frames (for people looking at a result, never for a model).

Encoded with FFmpeg's MJPEG encoder through PyAV, which the pipeline already depends on.
"""

from __future__ import annotations

from fractions import Fraction

import av
import numpy as np

# FFmpeg's MJPEG quantiser scale: 2 (best) .. 31 (worst); 5 looks clean at a few kB per frame.
DEFAULT_QUANTISER = 5


def encode_jpeg(rgb: np.ndarray, quantiser: int = DEFAULT_QUANTISER) -> bytes:
    """``rgb`` (H, W, 3) uint8 as a baseline JPEG file."""
    if rgb.dtype != np.uint8 or rgb.ndim != 3 or rgb.shape[2] != 3:
        raise ValueError(f"expected uint8 (H, W, 3), got {rgb.dtype} {rgb.shape}")
    height, width = rgb.shape[:2]
    encoder = av.CodecContext.create("mjpeg", "w")
    encoder.width, encoder.height = width, height
    encoder.pix_fmt = "yuvj420p"  # full-range 4:2:0, what JPEG viewers expect
    encoder.time_base = Fraction(1, 25)  # required by the encoder, meaningless for one image
    encoder.options = {"qmin": str(quantiser), "qmax": str(quantiser)}
    frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(rgb), format="rgb24").reformat(format="yuvj420p")
    return b"".join(bytes(packet) for packet in [*encoder.encode(frame), *encoder.encode(None)])
