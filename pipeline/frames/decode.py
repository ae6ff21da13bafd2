"""Decode ``T`` sampled frames of a video with PyAV.

1. Open the container with FFmpeg's ``format_whitelist`` (probing considers no other
   demuxer, so playlists cannot be opened) and check the limits that need no decoding.
2. Index the video stream by demuxing it (no decoding): the presentation timestamps of all
   frames, and which packets are keyframes. This is the frame count we trust; container
   metadata (``frames``, ``duration``) is often missing or wrong.
3. Pick ``T`` frames TSN-style (``frames.sampling``) and decode them. For each sample the
   planner either decodes forward from where the decoder is, or seeks to the keyframe before
   the sample, whichever decodes fewer frames: sparse samples on clips with frequent
   keyframes seek, dense samples decode sequentially, and both give identical frames.
4. Convert and resize in one swscale call (``transform.scale``), undo any rotation, crop, normalise.

Frame ``i`` is the ``i``-th frame in presentation order (sorted timestamps), as a player shows
them. Decoders return frames in that order for ordinary files, B-frames included; a file whose
frames are stored out of it (intra-only frames with shuffled timestamps: the decoder returns
them as stored) is detected by the index pass and decoded from its start, without seeking, each
sample being the frame whose timestamp is the sample's (``_StreamIndex.in_order``). Every
reader (a path, a file object, :class:`ClipReader` in stages, :func:`read_all_resized`) takes
the same frames.

Whatever FFmpeg raises on the way (opening, seeking, decoding) comes out as the frames'
typed :class:`~pipeline.frames.errors.UndecodableVideoError`, never as a bare ``av.error``.
The pixel limit holds for every decoded frame, not only for the size the stream declares:
a stream can change its frame size mid-way (MJPEG, H.264 with a new sequence header). The
decode budget (``DecodeLimits.max_decoded_pixels``) counts the pixels of every frame the
decoder produces for one clip, sampled or not, so a small file cannot make it work through
thousands of large frames to reach its samples.
"""

from __future__ import annotations

import bisect
import functools
import logging
import math
import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Literal, ParamSpec, TypeVar

import av
import numpy as np

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
from .preview import encode_jpeg
from .sampling import Samples, Sampling, nearest_keyframes, sample_indices
from .transform import IMAGENET, CropBox, FrameGeometry, Normalisation, scale

log = logging.getLogger(__name__)

Strategy = Literal["auto", "seek", "sequential"]
# FFmpeg's skip_loop_filter: deblock every frame (none, bit-exact), skip it on B-frames (bidir)
# or on every frame (all). A decoder shortcut for serving: docs/benchmarks/loop-filter.md.
LoopFilterSkip = Literal["none", "bidir", "all"]
DEFAULT_LIMITS = DecodeLimits()
# A seek flushes the decoder and re-reads from a keyframe; counted as this many frames of work.
SEEK_COST_FRAMES = 4
VideoSource = str | os.PathLike | BinaryIO
_P = ParamSpec("_P")
_R = TypeVar("_R")


@contextmanager
def _ffmpeg_errors(action: str) -> Iterator[None]:
    """An FFmpeg error raised while ``action`` runs, as :class:`UndecodableVideoError` (a file
    that is not there stays a ``FileNotFoundError``). FFmpeg's message is kept, not its file name."""
    try:
        yield
    except av.error.FFmpegError as error:
        if isinstance(error, FileNotFoundError):
            raise
        raise UndecodableVideoError(f"the video cannot be decoded: {action} failed ({_reason(error)})") from error


def _reason(error: Exception) -> str:
    """What FFmpeg (or the OS) says went wrong, without the errno and the file name that
    ``str(error)`` adds: a message is about the video, never about the server's paths."""
    return getattr(error, "strerror", None) or type(error).__name__


def _typed_errors(function: Callable[_P, _R]) -> Callable[_P, _R]:
    """``function`` with every FFmpeg error that escapes it turned into :class:`UndecodableVideoError`."""

    @functools.wraps(function)
    def wrapper(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        with _ffmpeg_errors("decoding"):
            return function(*args, **kwargs)

    return wrapper


@dataclass
class Clip:
    """``T`` sampled frames of one video, ready for a model."""

    frames: np.ndarray  # float32 (T, 3, crop, crop), normalised (uint8 (T, crop, crop, 3) if asked)
    frame_indices: np.ndarray  # int64 (T,), index of each sample among the video's frames
    timestamps: np.ndarray  # float64 (T,), seconds since the first frame
    original_size: tuple[int, int]  # (width, height) as displayed (rotation applied)
    num_frames: int  # frames in the video
    decoded_frames: int  # frames the decoder produced to get the samples (the cost)
    seeks: int  # how many times the decoder sought
    previews: list[bytes] | None = None  # JPEG of each sample's whole resized frame, when asked for
    crop_box: CropBox | None = None  # the crop of the resized frames (a training draw, or the centre)
    # ClipReader: the frame index of every sample of the video, read by this call or not
    sample_frame_indices: np.ndarray | None = None


@dataclass
class _StreamIndex:
    pts: list[int]  # presentation timestamps, sorted: pts[i] is frame i
    keyframes: list[int]  # presentation timestamps of keyframes, sorted
    time_base: float
    # False: frames are stored out of presentation order across keyframes, so the decoder
    # returns them out of it too and a seek lands anywhere: decode from the start, match exactly.
    in_order: bool = True
    rewind_to: int = -1  # a timestamp below every packet's: seeking there goes to the first packet


@_typed_errors
def read_clip(
    source: VideoSource,
    num_samples: Samples,
    geometry: FrameGeometry,
    limits: DecodeLimits | None = None,
    rng: np.random.Generator | None = None,
    strategy: Strategy = "auto",
    threads: int = 0,
    thread_type: str | None = None,
    positions: Sequence[int] | None = None,
    previews: bool = False,
    normalisation: Normalisation = IMAGENET,
    sampling: Sampling = "uniform",
    skip_loop_filter: LoopFilterSkip = "none",
) -> Clip:
    """Decode ``num_samples`` frames of ``source`` (a path or a binary file object): one set of
    segments, or several sets sampled separately (:func:`pipeline.frames.sampling.sample_indices`).

    ``positions`` (evaluation only): decode just these of the ``num_samples`` samples; the
    clip then holds them in that order, bit for bit as in the full clip. The service uses it
    to decode the frames after an early exit never. ``previews``: also a JPEG of each sample's
    whole frame, upright and resized (uncropped, so a box in original pixels scales onto it).

    ``limits`` defaults to :data:`DEFAULT_LIMITS`. ``rng`` given: training sampling and
    augmentation (a random frame per segment, one random crop and flip for the clip);
    ``None``: centre frames and the centre crop. ``threads``: the decoding thread budget (0:
    one per core); for a file on disk whose samples span several keyframes, that many
    decoders work on different keyframe groups at once, otherwise one decoder uses them
    (``thread_type``, FFmpeg's FRAME, SLICE, AUTO or NONE, chosen from the plan when None).
    ``normalisation``: the model's input statistics (ImageNet's unless given). ``sampling``:
    ``keyframes`` moves each sample to its nearest keyframe and decodes keyframes only
    (:mod:`pipeline.frames.sampling`). ``skip_loop_filter``: FFmpeg's decoder shortcut
    (:data:`LoopFilterSkip`; anything but ``none`` changes pixels).
    Raises a :class:`pipeline.frames.errors.VideoError` subclass for unusable input (an FFmpeg
    error included: :class:`UndecodableVideoError`).
    """
    raw, indices, index, decoded, seeks = _decode_samples(
        source, num_samples, limits, rng, strategy, threads, thread_type, positions, sampling, skip_loop_filter
    )
    return _finish(raw, indices, index, geometry, rng, decoded, seeks, previews, normalisation)


@_typed_errors
def decode_only(
    source: VideoSource,
    num_samples: Samples,
    limits: DecodeLimits | None = None,
    threads: int = 0,
    positions: Sequence[int] | None = None,
    sampling: Sampling = "uniform",
    skip_loop_filter: LoopFilterSkip = "none",
    hwaccel: str | None = None,
) -> tuple[int, int]:
    """Decode the evaluation samples of ``source`` as :func:`read_clip` does (the same index,
    plan, seeks and skipped frames) but convert nothing: ``(frames decoded, seeks)``. The
    decoding floor a benchmark compares the service's decoding with (bench/bench_realsize.py);
    ``hwaccel`` as :class:`ClipReader` takes it."""
    _, _, _, decoded, seeks = _decode_samples(
        source, num_samples, limits, None, "auto", threads, None, positions, sampling, skip_loop_filter, hwaccel
    )
    return decoded, seeks


def _decode_samples(
    source: VideoSource,
    num_samples: Samples,
    limits: DecodeLimits | None,
    rng: np.random.Generator | None,
    strategy: Strategy,
    threads: int,
    thread_type: str | None,
    positions: Sequence[int] | None,
    sampling: Sampling = "uniform",
    skip_loop_filter: LoopFilterSkip = "none",
    hwaccel: str | None = None,
) -> tuple[dict[int, av.VideoFrame], np.ndarray, _StreamIndex, int, int]:
    """The decoded frames of the samples (by timestamp), their indices, the stream's index, and
    the work it took (frames decoded, seeks): :func:`read_clip` before any conversion."""
    limits = limits or DEFAULT_LIMITS
    deadline = None if limits.max_wall_s is None else time.monotonic() + limits.max_wall_s
    _check_size(source, limits)
    with _open(source, limits, hwaccel) as container:
        stream, index = _video_stream_and_index(container, limits, deadline)
        indices = sampled_frames(index, num_samples, rng, sampling)
        if positions is not None:
            if rng is not None:
                raise ValueError("positions are for evaluation sampling (rng=None) only")
            indices = indices[np.asarray(positions, dtype=np.int64)]
        targets = [index.pts[i] for i in indices]
        if not index.in_order:
            strategy = "sequential"  # from the start, in one decoder: seeking is no use (_StreamIndex)
        groups = _keyframe_groups(sorted(set(targets)), index)
        # Keyframes only: one frame per group, nothing worth a decoder of its own.
        keyframes_only = sampling == "keyframes"
        chunks = [targets] if keyframes_only else _parallel_chunks(source, threads, strategy, groups, index)
        budget = _PixelBudget(limits.max_decoded_pixels, len(index.pts))
        if len(chunks) > 1:
            raw, decoded, seeks = _decode_in_parallel(
                source, index, chunks, limits, deadline, strategy, budget, skip_loop_filter
            )
        else:
            stream.thread_type = thread_type or _thread_type_for(len(groups), strategy)
            stream.codec_context.thread_count = threads
            decoder = _SampleDecoder(
                container,
                stream,
                index,
                limits,
                deadline,
                budget,
                keyframes_only=keyframes_only,
                skip_loop_filter=skip_loop_filter,
            )
            raw = decoder.decode(targets, strategy)
            decoded, seeks = decoder.decoded, decoder.seeks
    return raw, indices, index, decoded, seeks


def sampled_frames(
    index: _StreamIndex, num_samples: Samples, rng: np.random.Generator | None, sampling: Sampling
) -> np.ndarray:
    """The frame index of each sample: :func:`sample_indices`, moved to the nearest keyframes
    with ``keyframes`` sampling."""
    indices = sample_indices(len(index.pts), num_samples, rng)
    if sampling == "uniform":
        return indices
    if sampling != "keyframes":
        raise ValueError(f"unknown sampling {sampling!r}: uniform or keyframes")
    keyframe_numbers = sorted({bisect.bisect_left(index.pts, stamp) for stamp in index.keyframes})
    return nearest_keyframes(indices, keyframe_numbers)


class ClipReader:
    """A video opened once, whose evaluation samples are decoded over several calls.

    The service's early exit asks for a clip's samples a few at a time. Reading them from
    one open container continues from where the decoder stopped, rather than opening,
    indexing and decoding from the keyframe again for every call: a clip read in stages
    costs the frames up to its last sample read, as one :func:`read_clip` would. Samples
    are bit-identical to :func:`read_clip`'s (``rng=None``). The decoding time of all calls
    together counts against ``limits.max_wall_s``, and the pixels they decode against
    ``limits.max_decoded_pixels``. Use it as a context manager, or
    :meth:`close` it.

    ``need_probability`` (one per sample position): how likely a caller that reads in stages
    is to ask for each sample at all (an early exit's: samples of late stages are read only for
    the videos that have not exited). When deciding whether to seek past samples of later calls,
    the reader weighs the cost of coming back for them by that likelihood (given the call being
    made); without it, every sample counts as certain to be asked for. The samples are the same
    either way; only the frames decoded to reach them differ.

    ``hwaccel``: decode on an FFmpeg hardware device (``cuda``: NVDEC), software decoding as the
    fallback (:func:`_open`). Unmeasured here (no GPU): hardware decoders hand over NV12 frames,
    whose conversion may round differently from the software decoder's YUV 4:2:0, so the
    samples are not promised bit-identical to :func:`read_clip`'s.
    """

    @_typed_errors
    def __init__(
        self,
        source: VideoSource,
        num_samples: Samples,
        geometry: FrameGeometry,
        limits: DecodeLimits | None = None,
        threads: int = 1,
        normalisation: Normalisation = IMAGENET,
        sampling: Sampling = "uniform",
        skip_loop_filter: LoopFilterSkip = "none",
        need_probability: Sequence[float] | None = None,
        hwaccel: str | None = None,
    ) -> None:
        self.limits = limits or DEFAULT_LIMITS
        self.hwaccel = hwaccel
        self.sampling = sampling
        self.skip_loop_filter = skip_loop_filter
        self.geometry = geometry
        self.normalisation = normalisation
        self._spent_s = 0.0
        started = time.monotonic()
        _check_size(source, self.limits)
        self._container = _open(source, self.limits, hwaccel)
        try:
            stream, self.index = _video_stream_and_index(self._container, self.limits, self._deadline(started))
        except BaseException:
            self._container.close()
            raise
        self._source, self._stream_number, self._threads = source, stream.index, threads
        self.indices = sampled_frames(self.index, num_samples, None, sampling)
        self._samples = {self.index.pts[i] for i in self.indices}
        if need_probability is not None and len(need_probability) != len(self.indices):
            raise ValueError(f"need_probability has {len(need_probability)} values for {len(self.indices)} samples")
        self._need = None if need_probability is None else np.asarray(need_probability, dtype=np.float64)
        self._decoder = self._sample_decoder(stream)
        self._spent_s += time.monotonic() - started

    def _sample_decoder(self, stream, budget: _PixelBudget | None = None) -> _SampleDecoder:
        stream.thread_type = "SLICE"  # no frame-threading pipeline to refill after a seek
        stream.codec_context.thread_count = self._threads
        geometry = self.geometry
        keep = lambda frame: _Upright.of(frame, geometry)  # noqa: E731
        keyframes_only = self.sampling == "keyframes"
        return _SampleDecoder(
            self._container,
            stream,
            self.index,
            self.limits,
            None,
            budget,
            keep=keep,
            keyframes_only=keyframes_only,
            skip_loop_filter=self.skip_loop_filter,
        )

    def _release_when_done(self) -> None:
        """Close the container once every sample has been read: its decoder holds reference
        frames and a pool of full-size frame buffers (tens of MB at 1080p) that the reader,
        kept open until its request ends, would otherwise hold while the model runs."""
        if self._container is not None and self._samples <= self._decoder.delivered:
            self.close()

    def _reopen(self) -> None:
        """Open the container again for a sample asked for after the reader released it."""
        previous = self._decoder
        self._container = _open(self._source, self.limits, self.hwaccel)
        self._decoder = self._sample_decoder(self._container.streams[self._stream_number], previous.budget)
        self._decoder.decoded, self._decoder.seeks = previous.decoded, previous.seeks
        self._decoder.delivered.update(previous.delivered)

    def _later_likelihood(self, positions: Sequence[int]) -> dict[int, float] | None:
        """For each sample's timestamp, the probability that a later call asks for it, given
        that this call (``positions``) was made: its ``need_probability`` over this call's."""
        if self._need is None:
            return None
        now = float(self._need[np.asarray(positions, dtype=np.int64)].max())
        likelihood: dict[int, float] = {}
        for position, frame in enumerate(self.indices):
            chance = 1.0 if now <= 0 else min(1.0, float(self._need[position]) / now)
            stamp = self.index.pts[frame]
            likelihood[stamp] = max(likelihood.get(stamp, 0.0), chance)
        return likelihood

    def _deadline(self, now: float) -> float | None:
        budget = self.limits.max_wall_s
        return None if budget is None else now + budget - self._spent_s

    @_typed_errors
    def read(self, positions: Sequence[int], previews: bool = False, normalised: bool = True) -> Clip:
        """Samples ``positions`` (of the ``num_samples``), as ``read_clip(positions=...)`` gives
        them; ``decoded_frames`` and ``seeks`` count this call's work only. ``normalised=False``:
        the uint8 crops (the reader's normalisation of them is the usual clip), a
        quarter of the bytes to send to another process."""
        started = time.monotonic()
        indices = self.indices[np.asarray(positions, dtype=np.int64)]
        if self._container is None:
            self._reopen()
        decoded, seeks = self._decoder.decoded, self._decoder.seeks
        self._decoder.deadline = self._deadline(started)
        _check_deadline(self._decoder.deadline)  # the budget may be spent by earlier calls
        try:
            targets = [self.index.pts[i] for i in indices]
            raw = self._decoder.decode(targets, "auto", self._samples, self._later_likelihood(positions))
        finally:
            self._spent_s += time.monotonic() - started
        work = self._decoder.decoded - decoded, self._decoder.seeks - seeks
        self._release_when_done()
        normalisation = self.normalisation if normalised else None
        clip = _finish(raw, indices, self.index, self.geometry, None, *work, previews, normalisation)
        clip.sample_frame_indices = self.indices.astype(np.int64)
        return clip

    @property
    def holds_decoder(self) -> bool:
        """Whether the reader holds an open container and decoder (False once every sample has
        been read, or after :meth:`close`)."""
        return self._container is not None

    def close(self) -> None:
        if self._container is not None:
            self._decoder.let_go()  # the stream and the demuxing generator hold the codec
            self._container.close()
            self._container = None

    def __enter__(self) -> ClipReader:
        return self

    def __exit__(self, *_exc) -> None:
        self.close()


def _keyframe_groups(targets: list[int], index: _StreamIndex) -> list[list[int]]:
    """Sorted targets grouped by the keyframe they are decoded from."""
    groups: dict[int, list[int]] = {}
    for target in targets:
        groups.setdefault(_keyframe_of(target, index), []).append(target)
    return list(groups.values())


def _parallel_chunks(
    source: VideoSource, threads: int, strategy: Strategy, groups: list[list[int]], index: _StreamIndex
) -> list[list[int]]:
    """Targets split for independent decoders, or one chunk when that would not pay.

    PyAV releases the GIL while decoding, so decoders working on different keyframe groups
    of one file in threads scale with cores. Only for files on disk (each decoder opens its
    own), never for ``sequential``, and only when the work (frames from each group's keyframe
    to its last target) splits evenly enough: one long group is faster on one decoder with
    its own threads.
    """
    if strategy == "sequential" or len(groups) < 2 or not isinstance(source, (str, os.PathLike)):
        return [[t for group in groups for t in group]]
    budget = threads if threads > 0 else (os.cpu_count() or 1)
    workers = max(1, min(budget, len(groups), 8))
    number = {pts: i for i, pts in enumerate(index.pts)}
    work = [number[group[-1]] - number[_keyframe_of(group[0], index)] + 1 for group in groups]
    chunks, current, current_work, share = [], [], 0, sum(work) / workers
    for group, cost in zip(groups, work):
        if current and current_work + cost / 2 > share and len(chunks) < workers - 1:
            chunks.append(current)
            current, current_work = [], 0
        current += group
        current_work += cost
    chunks.append(current)
    largest = max(sum(c for g, c in zip(groups, work) if g[0] in chunk) for chunk in chunks)
    if len(chunks) < 2 or largest > 0.7 * sum(work):
        return [[t for group in groups for t in group]]
    return chunks


def _keyframe_of(target: int, index: _StreamIndex) -> int:
    return index.keyframes[max(0, bisect.bisect_right(index.keyframes, target) - 1)]


def _decode_in_parallel(
    source: VideoSource,
    index: _StreamIndex,
    chunks: list[list[int]],
    limits: DecodeLimits,
    deadline: float | None,
    strategy: Strategy,
    budget: _PixelBudget,
    skip_loop_filter: LoopFilterSkip = "none",
) -> tuple[dict[int, av.VideoFrame], int, int]:

    def decode_chunk(targets: list[int]) -> tuple[dict[int, av.VideoFrame], int, int]:
        with _open(source, limits) as container:
            stream = container.streams.video[0]
            stream.thread_type = "NONE"  # the parallelism is across decoders
            decoder = _SampleDecoder(
                container, stream, index, limits, deadline, budget, skip_loop_filter=skip_loop_filter
            )
            try:
                found = decoder.decode(targets, strategy)
            except UndecodableVideoError:
                found = {}  # e.g. past a truncation: earlier chunks' frames stand in
            return found, decoder.decoded, decoder.seeks

    with ThreadPoolExecutor(len(chunks)) as pool:
        results = list(pool.map(decode_chunk, chunks))
    raw: dict[int, av.VideoFrame] = {}
    for found, _, _ in results:
        raw.update(found)
    if not raw:
        raise UndecodableVideoError("no frame of the video stream could be decoded")
    for target in sorted(t for chunk in chunks for t in chunk):
        if target not in raw:  # a chunk that decoded nothing: the last good frame before it
            earlier = [t for t in raw if t < target]
            raw[target] = raw[max(earlier)] if earlier else raw[min(raw)]
    return raw, sum(r[1] for r in results), sum(r[2] for r in results)


def _video_stream_and_index(container, limits: DecodeLimits, deadline: float | None):
    """The first video stream and its index, after the checks that need no decoding."""
    if limits.max_streams is not None and len(container.streams) > limits.max_streams:
        raise VideoLimitError(f"{len(container.streams)} streams; the limit is {limits.max_streams}")
    if not container.streams.video:
        raise NoVideoStreamError("the file has no video stream")
    stream = container.streams.video[0]
    if stream.codec_context is None:  # FFmpeg has no decoder for the stream's codec (id or tag)
        raise UndecodableVideoError("the video stream's codec is not one this build of FFmpeg decodes")
    _check_pixels(stream.codec_context.width, stream.codec_context.height, limits)
    return stream, _index_stream(container, stream, limits, deadline)


def _thread_type_for(keyframe_groups: int, strategy: Strategy) -> str:
    """Frame threads pay off on long forward runs but refill their pipeline after every
    seek; slice threads do not care. Measured in bench/bench_decode.py."""
    seeks_often = strategy != "sequential" and keyframe_groups > 2
    return "SLICE" if seeks_often else "AUTO"


def _check_size(source: VideoSource, limits: DecodeLimits) -> None:
    if limits.max_bytes is None:
        return
    if isinstance(source, (str, os.PathLike)):
        size = Path(source).stat().st_size
    else:
        position = source.tell()
        size = source.seek(0, os.SEEK_END)
        source.seek(position)
    if size > limits.max_bytes:
        raise VideoTooLargeError(f"{size} bytes; the limit is {limits.max_bytes}")


# First bytes of the containers we know, with their demuxer: a broken file that starts like
# an allowed one is a damaged video (422); anything else is not a video we take (415).
_MP4 = "mov,mp4,m4a,3gp,3g2,mj2"
_SIGNATURES = (
    (4, b"ftyp", _MP4),
    (4, b"moov", _MP4),
    (4, b"mdat", _MP4),
    (4, b"free", _MP4),
    (4, b"wide", _MP4),
    (0, b"\x1a\x45\xdf\xa3", "matroska,webm"),  # EBML
    (8, b"AVI ", "avi"),  # RIFF....AVI
)


def _looks_like_allowed_container(source: VideoSource, limits: DecodeLimits) -> bool:
    if isinstance(source, (str, os.PathLike)):
        with open(source, "rb") as f:
            head = f.read(16)
    else:
        position = source.tell()
        source.seek(0)
        head = source.read(16)
        source.seek(position)
    return any(
        head[offset : offset + len(magic)] == magic and demuxer in limits.allowed_formats
        for offset, magic, demuxer in _SIGNATURES
    )


_unusable_hwaccels: set[str] = set()  # device types this process could not create: not tried again


def hardware_device(device_type: str):
    """PyAV's ``hwaccel`` argument for ``av.open``: decode on ``device_type`` (``cuda``, ...), in
    software what that device cannot decode. ``av.open`` raises if the device cannot be created."""
    from av.codec.hwaccel import HWAccel

    return HWAccel(device_type=device_type, allow_software_fallback=True)


def _open(source: VideoSource, limits: DecodeLimits, hwaccel: str | None = None) -> av.container.InputContainer:
    """``source`` opened for decoding; ``hwaccel``: an FFmpeg hardware device type (``cuda``, ...)
    to decode on, with FFmpeg's software decoder as the fallback for what it cannot decode. A
    device this process cannot create (no GPU, no driver) is warned about once, then decoding
    goes on in software: a misconfigured machine serves slower, not not at all."""
    if hwaccel is not None and hwaccel not in _unusable_hwaccels:
        try:
            return _open_container(source, limits, hwaccel)
        except (av.error.FFmpegError, ValueError, OSError):
            container = _open_container(source, limits)  # the file's own errors are raised here
            _unusable_hwaccels.add(hwaccel)
            log.warning("hardware decoding (%s) is unavailable in this process: decoding in software", hwaccel)
            return container
    return _open_container(source, limits)


def _open_container(
    source: VideoSource, limits: DecodeLimits, hwaccel: str | None = None
) -> av.container.InputContainer:
    options = {"format_whitelist": limits.format_whitelist, "protocol_whitelist": "file"}
    if not isinstance(source, (str, os.PathLike)):
        source.seek(0)
    if hwaccel is not None:  # errors of the device are the caller's (_open) to tell apart
        return av.open(source, mode="r", options=options, metadata_errors="ignore", hwaccel=hardware_device(hwaccel))
    try:
        return av.open(source, mode="r", options=options, metadata_errors="ignore")
    except (av.error.FFmpegError, ValueError, OSError) as error:
        if isinstance(error, FileNotFoundError):
            raise
        if _looks_like_allowed_container(source, limits):
            raise UndecodableVideoError(
                f"the container cannot be read (truncated or damaged?): {_reason(error)}"
            ) from None
        raise UnsupportedFormatError(
            f"not a video in an accepted container ({', '.join(limits.allowed_formats)})"
        ) from None


def _check_pixels(width: int, height: int, limits: DecodeLimits) -> None:
    """The stream's size when it is opened, and every decoded frame's (streams can change size)."""
    if limits.max_pixels is not None and width * height > limits.max_pixels:
        raise VideoLimitError(f"{width}x{height} pixels; the limit is {limits.max_pixels} pixels per frame")


def _check_deadline(deadline: float | None) -> None:
    if deadline is not None and time.monotonic() > deadline:
        raise DecodeTimeoutError("decoding took longer than the time limit")


def _index_stream(container, stream, limits: DecodeLimits, deadline: float | None) -> _StreamIndex:
    """Demux the video stream (no decoding): every frame's timestamp and the keyframes, and
    whether they are stored in presentation order (``_StreamIndex.in_order``).

    Packets are stored in decoding order, so within a group of pictures timestamps go back
    and forth (B-frames, which the decoder puts back in order); but no packet is shown before
    one stored ahead of the keyframe it follows, open GOPs' leading pictures included. A packet
    that is (its timestamp is below the highest one stored before its keyframe) means the file
    is stored out of presentation order.
    """
    pts: list[int] = []
    keyframes: list[int] = []
    cap = limits.max_decoded_frames
    # The highest timestamp stored so far, and before the last keyframe (two comparisons a packet).
    highest = floor = -math.inf
    in_order = True
    first_dts = None
    try:
        for count, packet in enumerate(container.demux(stream)):
            if packet.size == 0:
                continue  # the demuxer's end-of-stream marker
            stamp = packet.pts if packet.pts is not None else packet.dts
            if stamp is None:
                stamp = pts[-1] + 1 if pts else 0  # no timestamps at all: number the frames
            pts.append(stamp)
            if packet.is_keyframe:
                keyframes.append(stamp)
                floor = highest
            if stamp < floor:
                in_order = False
            if stamp > highest:
                highest = stamp
            if count == 0:
                first_dts = packet.dts
            if count % 256 == 0:
                _check_deadline(deadline)
            if cap is not None and len(pts) > 20 * cap:
                raise VideoLimitError(f"more than {20 * cap} frames")
    except av.error.FFmpegError:
        pass  # truncated or damaged tail: keep the frames indexed so far
    if not pts:
        raise UndecodableVideoError("the video stream has no frames")
    pts.sort()
    keyframes.sort()
    if not keyframes or keyframes[0] > pts[0]:
        keyframes.insert(0, pts[0])  # decoding always starts somewhere: the first frame
    time_base = float(stream.time_base) if stream.time_base else 1.0
    step = (pts[-1] - pts[0]) / (len(pts) - 1) if len(pts) > 1 else 0
    duration = (pts[-1] - pts[0] + step) * time_base
    if limits.max_duration_s is not None and duration > limits.max_duration_s:
        raise VideoLimitError(f"{duration:.1f} s long; the limit is {limits.max_duration_s:.0f} s")
    # Below every timestamp: decoding times never go back, so the first is the lowest.
    rewind_to = min(pts[0], pts[0] if first_dts is None else first_dts) - 1
    return _StreamIndex(pts, keyframes, time_base, in_order, rewind_to)


class _PixelBudget:
    """The decode budget of one clip: pixels of every decoded frame, against
    ``DecodeLimits.max_decoded_pixels`` (``limit`` None: counted, never refused). Shared by
    the decoders of one clip (threads: the count takes a lock)."""

    def __init__(self, limit: int | None, num_frames: int) -> None:
        self.limit, self.num_frames = limit, num_frames
        self.pixels = 0
        self.frames = 0
        self._lock = threading.Lock()

    def spend(self, width: int, height: int, frame_number: int) -> None:
        """Count one decoded frame (``frame_number``: its index in the video); raises
        :class:`DecodeBudgetError` once the clip has decoded more than the budget."""
        with self._lock:
            self.pixels += width * height
            self.frames += 1
            pixels, frames = self.pixels, self.frames
        if self.limit is not None and pixels > self.limit:
            raise DecodeBudgetError(
                f"the decode budget of {self.limit / 1e6:g} megapixels per video (ADAFOCUS_DECODE_BUDGET_MPX) "
                f"is spent before the samples were reached: {frames} frames decoded ({pixels / 1e6:.1f} "
                f"megapixels), up to frame {frame_number + 1} of {self.num_frames}"
            )


class _SampleDecoder:
    """Decodes the frames at given timestamps, seeking or running forward as planned."""

    def __init__(
        self,
        container,
        stream,
        index: _StreamIndex,
        limits: DecodeLimits,
        deadline: float | None,
        budget: _PixelBudget | None = None,
        keep: Callable[[av.VideoFrame], object] | None = None,
        keyframes_only: bool = False,
        skip_loop_filter: LoopFilterSkip = "none",
    ):
        self.container = container
        if skip_loop_filter != "none":  # read when the codec opens, at the first packet decoded
            stream.codec_context.options = {**stream.codec_context.options, "skip_loop_filter": skip_loop_filter}
        # Frames that are not targets are skipped: non-reference ones (the targets come out
        # bit-identical), or every non-keyframe when every target is a keyframe.
        self.skip_unwanted = "NONKEY" if keyframes_only else "NONREF"
        self.stream = stream
        self.index = index
        self.limits = limits
        self.deadline = deadline
        # The clip's own budget unless the caller shares one between decoders (parallel chunks).
        self.budget = budget or _PixelBudget(limits.max_decoded_pixels, len(index.pts))
        self.decoded = 0
        self.seeks = 0
        self.errors = 0
        self._frames: Iterator[av.VideoFrame] | None = None
        self._wanted: set[int] = set()  # timestamps of the samples
        self._position = -1  # index of the last frame decoded, -1 before the first
        # The latest target decoded so far: it stands in for targets past a truncation.
        self.last_good: tuple[int, av.VideoFrame] | None = None
        # Files out of presentation order (index.in_order False): samples decoded before their
        # turn, and the timestamps decoded since the decoder last started from the beginning.
        self._early: dict[int, av.VideoFrame] = {}
        self._passed: set[int] = set()
        # What is kept of each decoded sample (a reader keeps it resized, not at full size).
        # Files in order, read in several calls: samples of later calls decoded on the way to
        # this call's, and the timestamps of the samples decoded so far.
        self.keep = keep or (lambda frame: frame)
        self._kept: dict[int, object] = {}
        self._done: set[int] = set()
        self._likelihood: dict[int, float] = {}  # of later calls' samples (decode()); 1 if absent

    def let_go(self) -> None:
        """Drop the container, the stream and the frame generator (the codec and its frame
        buffers are freed with them); the counters and the samples kept stay."""
        self._frames = None
        self.container = self.stream = None

    @property
    def delivered(self) -> set[int]:
        """Timestamps of the targets decoded and handed out so far (stand-ins excluded)."""
        return self._done

    def decode(
        self,
        targets: list[int],
        strategy: Strategy,
        wanted: set[int] | None = None,
        likelihood: Mapping[int, float] | None = None,
    ) -> dict[int, av.VideoFrame]:
        """The decoded frame for each distinct target timestamp.

        ``wanted``: every timestamp that this decoder will be asked for, in this call or a
        later one (default: ``targets``); those frames are never skipped, even when they go
        through the decoder's reordering delay before they are asked for. ``likelihood``: for
        the wanted timestamps of later calls, the probability that a later call asks for them
        (1 unless given): a seek that jumps over samples few videos will need is worth more.
        """
        found: dict[int, av.VideoFrame] = {}
        self._wanted = set(targets) if wanted is None else wanted | set(targets)
        self._likelihood = dict(likelihood or {})
        for target in sorted(set(targets)):
            if target in self._kept:
                found[target] = self._kept.pop(target)  # type: ignore[assignment]
                self._done.add(target)
                continue
            if self.index.in_order and self._should_seek(target, strategy):
                self._seek(target)
            frame = self._advance_to(target)
            if frame is None:
                if self.index.in_order:
                    break  # the stream ended early (truncated): the last good frame stands in
                if self.last_good is not None:  # out of order: a later target may still be there
                    found[target] = self.last_good[1]
                continue
            # Kept as ``keep`` makes it at once: a full-size frame held until the call ends
            # would keep its buffer in the codec's pool for as long as the decoder stays open
            # (16 samples of 1080p: 50 MB per open reader).
            frame = self.keep(frame)
            found[target] = frame
            self._done.add(target)
            if self.last_good is None or target > self.last_good[0]:
                self.last_good = (target, frame)
        if self.last_good is None:
            raise UndecodableVideoError("no frame of the video stream could be decoded")
        # Targets left: past a truncation (in order), or before any found (out of order).
        stand_in = self.last_good[1] if self.index.in_order or not found else found[min(found)]
        return {t: found.get(t, stand_in) for t in targets}

    def _frame_number(self, pts: int) -> int:
        return bisect.bisect_left(self.index.pts, pts)

    def _should_seek(self, target: int, strategy: Strategy) -> bool:
        """``seek``: always; ``sequential``: never; ``auto``: when it decodes fewer frames,
        counting the samples of later calls that a seek would jump over (each to be reached
        again from its own keyframe) against the frames that going forward costs now.
        A target the decoder has already passed (asked for by a later call) always seeks."""
        if self._frame_number(target) <= self._position:
            return True
        if strategy != "auto":
            return strategy == "seek"
        keyframe = self._frame_number(self._keyframe_before(target))
        if keyframe <= self._position:
            return False  # the decoder is already past the keyframe: going forward is cheaper
        forward = self._frame_number(target) - self._position
        from_keyframe = self._frame_number(target) - keyframe + SEEK_COST_FRAMES
        return from_keyframe + self._cost_of_jumping(keyframe) < forward

    def _cost_of_jumping(self, keyframe: int) -> float:
        """Frames it is expected to take to come back, later, for the samples not decoded yet
        between the decoder's position and frame ``keyframe`` (0 when nothing is asked for
        there): per keyframe group, from its keyframe to its last such sample, plus a seek,
        times the likelihood that a later call asks for one of them."""
        last_by_keyframe: dict[int, int] = {}
        likelihood_by_keyframe: dict[int, float] = {}
        for stamp in self._wanted - self._done - self._kept.keys():
            number = self._frame_number(stamp)
            if self._position < number < keyframe:
                group = self._frame_number(self._keyframe_before(stamp))
                last_by_keyframe[group] = max(last_by_keyframe.get(group, number), number)
                chance = self._likelihood.get(stamp, 1.0)
                likelihood_by_keyframe[group] = max(likelihood_by_keyframe.get(group, 0.0), chance)
        return sum(
            (last - group + SEEK_COST_FRAMES) * likelihood_by_keyframe[group]
            for group, last in last_by_keyframe.items()
        )

    def _keyframe_before(self, target: int) -> int:
        keyframes = self.index.keyframes
        return keyframes[max(0, bisect.bisect_right(keyframes, target) - 1)]

    def _seek(self, target: int) -> None:
        keyframe = self._keyframe_before(target)
        with _ffmpeg_errors("seeking"):
            self.container.seek(keyframe, stream=self.stream, backward=True, any_frame=False)
        self.seeks += 1
        self._frames = self._decoded_frames()
        self._position = self._frame_number(keyframe) - 1

    def _decoded_frames(self) -> Iterator[av.VideoFrame]:
        """Frames from the demuxer's position on. Frames that no other frame references and
        that are not samples are skipped by the decoder (``skip_frame``): they cannot change
        any other frame, so the samples are bit-identical, and decoding to a sample costs
        only the reference frames before it."""
        context = self.stream.codec_context
        try:
            for packet in self.container.demux(self.stream):
                stamp = packet.pts if packet.pts is not None else packet.dts
                needed = packet.size == 0 or stamp is None or stamp in self._wanted
                context.skip_frame = "DEFAULT" if needed else self.skip_unwanted
                try:
                    yield from packet.decode()
                except av.error.InvalidDataError:
                    self.errors += 1  # a damaged packet: skip it, keep going
        except av.error.FFmpegError:
            return  # truncated: the stream ends here

    def _advance_to(self, target: int) -> av.VideoFrame | None:
        """Decode forward to the first frame at or after ``target`` (None: the stream ended);
        in a file out of presentation order, to the frame at ``target`` exactly."""
        if not self.index.in_order:
            return self._take_exactly(target)
        if self._frames is None:  # rewind: the index pass left the demuxer at the end
            with _ffmpeg_errors("seeking to the first frame"):
                self.container.seek(self.index.keyframes[0], stream=self.stream, backward=True, any_frame=False)
            self._frames = self._decoded_frames()
        for frame in self._frames:
            stamp = (
                frame.pts if frame.pts is not None else self.index.pts[min(self._position + 1, len(self.index.pts) - 1)]
            )
            self._position = self._frame_number(stamp)
            self._count(frame, self._position)
            if stamp >= target:
                return frame
            if stamp in self._wanted and stamp not in self._done and stamp not in self._kept:
                self._kept[stamp] = self.keep(frame)  # a later call's sample, passed on the way
        return None

    def _take_exactly(self, target: int) -> av.VideoFrame | None:
        """The frame whose timestamp is ``target``, in a file out of presentation order: the
        decoder runs forward from the file's first packet (no seeks: where one lands depends
        on the demuxer), keeping the samples that come before their turn. A target it has
        already passed (asked for again by a later call) starts it from the beginning again."""
        if target in self._early:
            return self._early.pop(target)
        if self._frames is None or target in self._passed:
            self._rewind()
        for frame in self._frames:
            self._count(frame, self._frame_number(frame.pts) if frame.pts is not None else 0)
            if frame.pts is None:
                continue  # no timestamp: it cannot be told which frame it is
            if frame.pts == target:
                self._passed.add(frame.pts)
                return frame
            if frame.pts in self._wanted and frame.pts not in self._passed:  # not a repeated timestamp
                self._early[frame.pts] = self.keep(frame)
            self._passed.add(frame.pts)
        return None

    def _rewind(self) -> None:
        """Back to the first packet the file stores (seeking below every timestamp it has)."""
        with _ffmpeg_errors("seeking to the first frame"):
            self.container.seek(self.index.rewind_to, stream=self.stream, backward=True, any_frame=False)
        self._early.clear()
        self._passed.clear()
        self._frames = self._decoded_frames()

    def _count(self, frame: av.VideoFrame, frame_number: int) -> None:
        """One more decoded frame, against the limits and the clip's decode budget."""
        self.decoded += 1
        # Every frame, not only the header's size: a stream may change size mid-way.
        _check_pixels(frame.width, frame.height, self.limits)
        cap = self.limits.max_decoded_frames
        if cap is not None and self.decoded > cap:
            raise VideoLimitError(f"needed more than {cap} decoded frames")
        if self.decoded % 32 == 0:
            _check_deadline(self.deadline)
        self.budget.spend(frame.width, frame.height, frame_number)


@dataclass(frozen=True)
class _Upright:
    """A decoded sample, already upright and resized (what a reader keeps of a sample that a
    later call will ask for, instead of the full-size frame), and its display size."""

    image: np.ndarray  # uint8 (resized_h, resized_w, 3)
    display: tuple[int, int]

    @classmethod
    def of(cls, frame: av.VideoFrame | _Upright, geometry: FrameGeometry) -> _Upright:
        if isinstance(frame, _Upright):
            return frame
        return cls(resize_upright(frame, geometry), _display_size(frame))


def _finish(
    raw: dict[int, av.VideoFrame | _Upright],
    indices: np.ndarray,
    index: _StreamIndex,
    geometry: FrameGeometry,
    rng: np.random.Generator | None,
    decoded: int,
    seeks: int,
    previews: bool = False,
    normalisation: Normalisation | None = IMAGENET,
) -> Clip:
    """The clip of the decoded samples: resized, cropped and normalised (uint8 crops when
    ``normalisation`` is None)."""
    upright: dict[int, _Upright] = {}
    for target in (index.pts[i] for i in indices):
        if target not in upright:
            upright[target] = _Upright.of(raw[target], geometry)
    samples = [upright[index.pts[i]].image for i in indices]
    first = index.pts[0]
    timestamps = np.array([(index.pts[i] - first) * index.time_base for i in indices], dtype=np.float64)
    display = upright[next(iter(raw))].display  # (raw holds the targets only: each is in upright)
    box = clip_crop_box(geometry, rng, display)
    crops = crop_clip(samples, geometry, box)
    return Clip(
        frames=normalisation(crops) if normalisation is not None else crops,
        frame_indices=indices.astype(np.int64),
        timestamps=timestamps,
        original_size=display,
        num_frames=len(index.pts),
        decoded_frames=decoded,
        seeks=seeks,
        previews=[encode_jpeg(frame) for frame in samples] if previews else None,
        crop_box=box,
    )


def resize_upright(frame: av.VideoFrame, geometry: FrameGeometry) -> np.ndarray:
    """The frame as displayed (rotation undone), shorter side at ``geometry.resize``, uint8 RGB.

    Conversion and scaling happen in one swscale call (:func:`pipeline.frames.transform.scale`), in the
    coded orientation.
    """
    rotation = _rotation(frame)
    resized_w, resized_h = geometry.resized_size(*_display_size(frame))
    coded = (resized_h, resized_w) if rotation % 180 else (resized_w, resized_h)
    rgb = scale(frame, *coded, format="rgb24").to_ndarray()
    return _unrotate(rgb, rotation)


def clip_crop_box(geometry: FrameGeometry, rng: np.random.Generator | None, display: tuple[int, int]) -> CropBox:
    """The clip's crop: one random draw for the whole clip (training), or the centre."""
    return geometry.random_box(*display, rng) if rng is not None else geometry.centre_box(*display)


def crop_clip(resized: list[np.ndarray], geometry: FrameGeometry, box: CropBox) -> np.ndarray:
    """``box`` of every frame, scaled to the crop: uint8 ``(T, S, S, 3)``."""
    return np.stack([geometry.apply(frame, box) for frame in resized])


def crop_and_normalise(
    resized: list[np.ndarray],
    geometry: FrameGeometry,
    box: CropBox,
    normalisation: Normalisation = IMAGENET,
) -> np.ndarray:
    """:func:`crop_clip`, normalised: float32 ``(T, 3, S, S)``."""
    return normalisation(crop_clip(resized, geometry, box))


@dataclass
class ResizedVideo:
    """Every frame of a video, upright and resized (what a frame cache stores)."""

    frames: np.ndarray  # uint8 (N, resized_h, resized_w, 3)
    timestamps: np.ndarray  # float64 (N,), seconds since the first frame
    original_size: tuple[int, int]


@_typed_errors
def read_all_resized(source: VideoSource, geometry: FrameGeometry, limits: DecodeLimits | None = None) -> ResizedVideo:
    """Decode every frame (sequentially) and resize it as :func:`read_clip` would."""
    limits = limits or DEFAULT_LIMITS
    deadline = None if limits.max_wall_s is None else time.monotonic() + limits.max_wall_s
    _check_size(source, limits)
    with _open(source, limits) as container:
        stream, index = _video_stream_and_index(container, limits, deadline)
        stream.thread_type = "AUTO"
        decoder = _SampleDecoder(container, stream, index, limits, deadline)
        decoder._wanted = set(index.pts)
        # One frame per distinct timestamp, as read_clip decodes them: frames that share a
        # timestamp are one frame to both.
        stamps = list(dict.fromkeys(index.pts))
        resized: list[np.ndarray | None] = []
        display = (0, 0)
        for target in stamps:
            frame = decoder._advance_to(target)
            if frame is None:
                if index.in_order:
                    break  # truncated: the last good frame stands in for the rest, as in read_clip
                resized.append(None)  # out of order: later frames may still come
                continue
            resized.append(resize_upright(frame, geometry))
            display = _display_size(frame)
    if not any(frame is not None for frame in resized):
        raise UndecodableVideoError("no frame of the video stream could be decoded")
    by_stamp = dict(zip(stamps, _stand_ins(resized, len(stamps))))
    frames = [by_stamp[stamp] for stamp in index.pts]
    first = index.pts[0]
    timestamps = np.array([(p - first) * index.time_base for p in index.pts], dtype=np.float64)
    return ResizedVideo(np.stack(frames), timestamps, display)


def _stand_ins(frames: list[np.ndarray | None], count: int) -> list[np.ndarray]:
    """``count`` frames: a missing one (None, or past the end) takes the last frame before it,
    as in :func:`read_clip` (leading ones the first frame there is)."""
    previous = next(frame for frame in frames if frame is not None)
    filled = []
    for frame in frames + [None] * (count - len(frames)):
        previous = frame if frame is not None else previous
        filled.append(previous)
    return filled


def clip_from_resized(
    video: ResizedVideo,
    num_samples: Samples,
    geometry: FrameGeometry,
    rng: np.random.Generator | None = None,
    normalisation: Normalisation = IMAGENET,
) -> Clip:
    """The clip :func:`read_clip` returns, taken from already resized frames."""
    indices = sample_indices(len(video.frames), num_samples, rng)
    resized = [video.frames[i] for i in indices]
    box = clip_crop_box(geometry, rng, video.original_size)  # drawn after the frames, as read_clip does
    return Clip(
        frames=crop_and_normalise(resized, geometry, box, normalisation),
        frame_indices=indices.astype(np.int64),
        timestamps=video.timestamps[indices],
        original_size=video.original_size,
        num_frames=len(video.frames),
        decoded_frames=0,
        seeks=0,
        crop_box=box,
    )


def _display_size(frame: av.VideoFrame) -> tuple[int, int]:
    return (frame.height, frame.width) if _rotation(frame) % 180 else (frame.width, frame.height)


def _rotation(frame: av.VideoFrame) -> int:
    """Clockwise rotation (0, 90, 180, 270) needed to display the frame upright."""
    try:
        angle = frame.rotation  # counter-clockwise degrees from the display matrix
    except (AttributeError, VideoError):
        return 0
    return int(round(-angle / 90.0)) % 4 * 90 if angle else 0


def _unrotate(rgb: np.ndarray, rotation: int) -> np.ndarray:
    if rotation == 0:
        return rgb
    return np.ascontiguousarray(np.rot90(rgb, k=-rotation // 90))
