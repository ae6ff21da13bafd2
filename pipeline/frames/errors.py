"""Typed errors for unusable input. Each carries the HTTP status the service answers with."""

from __future__ import annotations


class VideoError(Exception):
    """Base class: the input cannot be turned into frames. ``status`` is the HTTP answer."""

    status = 422
    title = "Unprocessable video"


class VideoTooLargeError(VideoError):
    """The file is larger than the byte limit."""

    status = 413
    title = "Video too large"


class UnsupportedFormatError(VideoError):
    """Not a video container, or a container format outside the allow-list."""

    status = 415
    title = "Unsupported video format"


class NoVideoStreamError(VideoError):
    """The container holds no video stream (audio-only, subtitles, ...)."""

    title = "No video stream"


class UndecodableVideoError(VideoError):
    """The video stream yields no decodable frame (corrupt, truncated before the first frame)."""

    title = "Undecodable video"


class VideoLimitError(VideoError):
    """Too long, too many pixels, too many frames to decode, or too many streams."""

    title = "Video exceeds a limit"


class DecodeBudgetError(VideoLimitError):
    """Reaching the samples would decode more pixels than the decode budget allows: a small
    file can make the decoder work through thousands of large frames (one keyframe, a long
    static video) to reach a few samples."""


class DecodeTimeoutError(VideoError):
    """Decoding took longer than the wall-time limit."""

    status = 504
    title = "Decoding timed out"
