"""The one frame pipeline: decode, sample, resize and normalise video frames.

Torch-free, so the service and training share it and can never disagree on what a frame is.
"""

from .errors import (
    DecodeBudgetError,
    DecodeTimeoutError,
    NoVideoStreamError,
    UndecodableVideoError,
    UnsupportedFormatError,
    VideoError,
    VideoLimitError,
    VideoTooLargeError,
)
from .limits import DecodeLimits
from .sampling import Samples, sample_count, sample_indices, segment_indices
from .transform import IMAGENET, IMAGENET_MEAN, IMAGENET_STD, FrameGeometry, Normalisation, normalise

__all__ = [
    "IMAGENET",
    "IMAGENET_MEAN",
    "IMAGENET_STD",
    "DecodeBudgetError",
    "DecodeLimits",
    "DecodeTimeoutError",
    "FrameGeometry",
    "NoVideoStreamError",
    "Normalisation",
    "UndecodableVideoError",
    "UnsupportedFormatError",
    "VideoError",
    "VideoLimitError",
    "Samples",
    "VideoTooLargeError",
    "normalise",
    "sample_count",
    "sample_indices",
    "segment_indices",
]
