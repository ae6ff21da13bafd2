"""Limits on what a decode may cost; the service sets them from its configuration."""

from __future__ import annotations

from dataclasses import dataclass

# Demuxer names (as FFmpeg reports them) of the containers we accept by default.
DEFAULT_FORMATS: tuple[str, ...] = ("mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm", "avi")


@dataclass(frozen=True)
class DecodeLimits:
    """Every field is a hard cap; ``None`` means no cap.

    ``max_decoded_pixels`` is the decode budget of one clip (one ``read_clip`` call, or every
    read of one ``ClipReader`` together): the pixels of every frame the decoder produces,
    sampled or not, frames decoded after a seek included. It bounds the work a small file can
    ask for (decode amplification), which ``max_pixels`` and ``max_decoded_frames`` do not.

    ``allowed_formats`` lists FFmpeg demuxer names; probing never considers any other, so a
    playlist (HLS, concat, ...) cannot even be opened, let alone reach a URL or another file.
    """

    max_bytes: int | None = 500 * 1024 * 1024
    max_duration_s: float | None = 3600.0
    max_pixels: int | None = 3840 * 2160  # per frame: the stream's declared size and every decoded frame's
    max_decoded_frames: int | None = 20_000
    max_decoded_pixels: int | None = None
    max_wall_s: float | None = 60.0
    max_streams: int | None = 16
    allowed_formats: tuple[str, ...] = DEFAULT_FORMATS

    @property
    def format_whitelist(self) -> str:
        """The demuxer names as FFmpeg's ``format_whitelist`` option wants them."""
        return ",".join(self.allowed_formats)


UNLIMITED = DecodeLimits(
    max_bytes=None, max_duration_s=None, max_pixels=None, max_decoded_frames=None, max_wall_s=None, max_streams=None
)
