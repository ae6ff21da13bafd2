"""The hostile-input suite (issue 22): every case of ``tests/pipeline/hostile_videos.CASES``
goes through the shared frame pipeline with service-like limits, and must either give a valid
clip or raise one of the frames' typed ``VideoError``s with the expected status and a message
that says what is wrong. Never another exception, never a hang.

Each case runs in a worker process with a time limit (a hang or a crash of FFmpeg fails that
case, not the session), through three readers that must agree: ``read_clip`` on the path,
``read_clip`` on a file object with the seek strategy, and a ``ClipReader`` read in two stages
(as the service does). :data:`EXPECTED` is the table: case -> "ok" or (status, message).
"""

from __future__ import annotations

import dataclasses
import io
import multiprocessing
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from pipeline.frames import DecodeLimits, FrameGeometry, VideoError, VideoLimitError
from pipeline.frames.decode import ClipReader, read_clip
from tests.pipeline.hostile_videos import CASES, make_case
from tests.videos import brightness_index

SAMPLES = 8
GEOMETRY = FrameGeometry(resize=40, crop=32)  # tiny frames: the suite is about the input, not the model
# The service's limits, scaled to the suite's tiny files (the service's defaults are in service/settings.py).
LIMITS = DecodeLimits(
    max_bytes=256 * 1024,
    max_duration_s=60.0,
    max_pixels=640 * 480,
    max_decoded_frames=1000,
    max_decoded_pixels=64 * 64 * 1000,
    max_wall_s=5.0,
    max_streams=16,
)
CASE_TIMEOUT_S = 30.0  # per case, all three readers; a hang shows as a failure, not a stuck run

OK = "ok"
NOT_ACCEPTED = (415, r"not a video in an accepted container")
DAMAGED = (422, r"container cannot be read|no frame of the video stream could be decoded")
NO_VIDEO = (422, r"no video stream")

# case -> "ok", or (status, a regular expression the message must match)
EXPECTED: dict[str, str | tuple[int, str]] = {
    # not a video at all
    "empty": NOT_ACCEPTED,
    "one_byte": NOT_ACCEPTED,
    "random_bytes": NOT_ACCEPTED,
    "text_file": NOT_ACCEPTED,
    "jpeg_image": NOT_ACCEPTED,
    "zip_archive": NOT_ACCEPTED,
    # damaged files of an accepted container
    "mp4_header_only": DAMAGED,
    "mp4_moov_at_end_missing": DAMAGED,
    "mp4_faststart": OK,
    "mp4_faststart_truncated_mid_keyframe": DAMAGED,
    "mkv_truncated_mid_stream": OK,  # the frames before the cut; the last one stands in for the rest
    "mkv_header_only": DAMAGED,
    "avi_truncated_mid_keyframe": DAMAGED,
    "garbage_packets": DAMAGED,
    "polyglot_mp4_zip": OK,  # the MP4 part is a valid video; the archive after it is never read
    "unknown_codec_avi": (422, r"codec is not one this build of FFmpeg decodes"),
    "avi_declares_huge_frames": OK,  # the decoder's size is the JPEGs' (32x32), not the header's
    "mp4_declared_duration_far_too_long": OK,  # the duration is the frames', not the header's
    # containers outside the allow-list
    "flv": NOT_ACCEPTED,
    "mpegts": NOT_ACCEPTED,
    "gif": NOT_ACCEPTED,
    "nut": NOT_ACCEPTED,
    "hls_playlist": NOT_ACCEPTED,
    "concat_script": NOT_ACCEPTED,
    "mpegts_named_mp4": NOT_ACCEPTED,
    # stream layouts
    "audio_only": NO_VIDEO,
    "subtitles_only": NO_VIDEO,
    "data_only": NO_VIDEO,
    "too_many_streams": (422, r"20 streams; the limit is 16"),
    "video_with_audio": OK,
    "zero_frames": DAMAGED,
    # frame counts and timestamps
    "one_frame": OK,
    "fewer_frames_than_samples": OK,
    "non_monotonic_timestamps": OK,  # in presentation order from every reader (see below)
    "non_monotonic_timestamps_mp4": OK,
    "far_future_timestamps": OK,
    "duplicate_timestamps": OK,
    "huge_timestamp_jump": (422, r"s long; the limit is 60 s"),
    "duration_over_the_limit": (422, r"14400\.0 s long; the limit is 60 s"),
    "variable_frame_rate": OK,
    "b_frames": OK,
    "rotated_90": OK,
    "static_long_one_keyframe": OK,  # within the suite's budget; see the limit cases below
    "over_the_byte_limit": (413, r"\d+ bytes; the limit is 262144"),
    # frame sizes
    "one_by_one": OK,
    "two_by_ten_thousand": (422, r"aspect ratio"),
    "odd_dimensions": OK,
    "declared_size_over_pixel_limit": (422, r"1280x720 pixels; the limit is 307200"),
    # pixel formats
    "yuv444p": OK,
    "gray": OK,
    "rgb24": OK,
    "yuv420p10le": OK,
    "yuva420p": OK,
    "pal8_png_mov": OK,
    "pal8_raw_avi": OK,
    # codecs in the accepted containers
    "h264_mov": OK,
    "hevc_mp4": OK,
    "mpeg4_avi": OK,
    "mjpeg_avi": OK,
    "vp8_webm": OK,
    "vp9_webm": OK,
    "av1_mkv": OK,
    "ffv1_mkv": OK,
    "png_mov": OK,
    "rawvideo_avi": OK,
    "prores_mov": OK,
    "mpeg2_mkv": OK,
    "gif_in_mov": OK,
    "ffv1_avi": OK,
}

# Known bugs, found by this suite and reported: each is a strict xfail, so a fix shows as an
# XPASS to be turned into a plain case. None open (issue 22's three are fixed).
KNOWN_BUGS: dict[str, str] = {}


@dataclass(frozen=True)
class LimitCase:
    """A generated file under other limits than :data:`LIMITS`: the limit that must stop it."""

    case: str
    limits: DecodeLimits
    expected: tuple[int, str]
    readers: tuple[str, ...] = field(default=("path", "seek", "staged"))


LIMIT_CASES: dict[str, LimitCase] = {
    # A few kB that make the decoder work through every frame to reach the last sample.
    "amplification_budget": LimitCase(
        "static_long_one_keyframe",
        dataclasses.replace(LIMITS, max_decoded_pixels=64 * 64 * 100),
        (422, r"decode budget of 0\.4096 megapixels"),
    ),
    "amplification_frame_cap": LimitCase(
        "static_long_one_keyframe",
        dataclasses.replace(LIMITS, max_decoded_frames=100),
        (422, r"more than 100 decoded frames"),
    ),
    "wall_time": LimitCase("mp4_faststart", dataclasses.replace(LIMITS, max_wall_s=1e-9), (504, r"time limit")),
    "pixels_of_an_ordinary_video": LimitCase(
        "yuv444p", dataclasses.replace(LIMITS, max_pixels=16 * 16), (422, r"32x32 pixels")
    ),
    "streams_of_a_video_with_audio": LimitCase(
        "video_with_audio", dataclasses.replace(LIMITS, max_streams=1), (422, r"2 streams; the limit is 1")
    ),
}


# -- what runs in the worker process ----------------------------------------------------------
def _read(path: str, reader: str, limits: DecodeLimits):
    """One way of reading the file, as its outcome: ("ok", clip frames, indices, num_frames,
    size) or (status, error class, message), or ("untyped", ...) for any other exception."""
    try:
        if reader == "path":
            clip = read_clip(path, SAMPLES, GEOMETRY, limits=limits)
        elif reader == "seek":
            clip = read_clip(io.BytesIO(Path(path).read_bytes()), SAMPLES, GEOMETRY, limits=limits, strategy="seek")
        else:  # the service's way: one reader, the samples in two stages
            with ClipReader(io.BytesIO(Path(path).read_bytes()), SAMPLES, GEOMETRY, limits=limits) as opened:
                first, rest = opened.read([0, 1]), opened.read(list(range(2, SAMPLES)))
            clip = first
            clip.frames = np.concatenate([first.frames, rest.frames])
            clip.frame_indices = np.concatenate([first.frame_indices, rest.frame_indices])
        return (OK, clip.frames, clip.frame_indices, clip.num_frames, clip.original_size)
    except VideoError as error:
        return (error.status, type(error).__name__, str(error))
    except Exception as error:  # noqa: BLE001 - the suite reports it, whatever it is
        return ("untyped", f"{type(error).__module__}.{type(error).__name__}", str(error))


def run_case(path: str, limits: DecodeLimits, readers: tuple[str, ...]) -> dict[str, tuple]:
    """Every reader's outcome on ``path`` (runs in the worker process)."""
    return {reader: _read(path, reader, limits) for reader in readers}


# -- the harness ------------------------------------------------------------------------------
class NoAnswer(Exception):
    """A case that hung, or killed its worker process."""


class Worker:
    """One spawned process that runs cases; replaced after a case that hangs or kills it."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("spawn")
        self._pool = self._context.Pool(1)

    def run(
        self, path: Path, limits: DecodeLimits, readers: tuple[str, ...], timeout_s: float = CASE_TIMEOUT_S
    ) -> dict[str, tuple]:
        """The readers' outcomes; raises :class:`NoAnswer` after ``timeout_s``."""
        pending = self._pool.apply_async(run_case, (str(path), limits, readers))
        try:
            return pending.get(timeout_s)
        except multiprocessing.TimeoutError:
            self._pool.terminate()
            self._pool = self._context.Pool(1)
            raise NoAnswer(f"no answer within {timeout_s:g} s: the decode hung or its process died") from None

    def close(self) -> None:
        self._pool.terminate()


@pytest.fixture(scope="module")
def worker():
    worker = Worker()
    yield worker
    worker.close()


def outcomes_of(worker: Worker, path: Path, limits: DecodeLimits, readers: tuple[str, ...]) -> dict[str, tuple]:
    try:
        return worker.run(path, limits, readers)
    except NoAnswer as error:
        pytest.fail(str(error))


def check_outcomes(outcomes: dict[str, tuple], expected: str | tuple[int, str]) -> None:
    """Every reader gave ``expected``: a valid clip, or the typed error with its status and message."""
    for reader, outcome in outcomes.items():
        assert outcome[0] != "untyped", f"{reader}: an untyped exception, {outcome[1]}: {outcome[2]}"
        if expected == OK:
            assert outcome[0] == OK, f"{reader}: expected a clip, got {outcome}"
            check_clip(*outcome[1:])
        else:
            status, message = expected
            assert outcome[0] == status, f"{reader}: expected {status}, got {outcome}"
            assert re.search(message, outcome[2]), f"{reader}: the message {outcome[2]!r} does not say {message!r}"
    clips = [outcome[1] for outcome in outcomes.values() if outcome[0] == OK]
    for other in clips[1:]:  # every reader gives the same frames
        np.testing.assert_array_equal(other, clips[0])


def check_clip(frames: np.ndarray, indices: np.ndarray, num_frames: int, size: tuple[int, int]) -> None:
    assert frames.shape == (SAMPLES, 3, GEOMETRY.crop, GEOMETRY.crop) and frames.dtype == np.float32
    assert np.isfinite(frames).all()
    assert num_frames >= 1 and indices.shape == (SAMPLES,)
    assert (0 <= indices).all() and (indices < num_frames).all() and (np.diff(indices) >= 0).all()
    assert min(size) >= 1


def test_the_table_names_every_case():
    assert set(EXPECTED) == set(CASES)
    assert len(CASES) >= 25
    assert set(KNOWN_BUGS) <= set(CASES) and {c.case for c in LIMIT_CASES.values()} <= set(CASES)


def _with_known_bugs(names):
    return [
        pytest.param(name, marks=pytest.mark.xfail(strict=True, reason=KNOWN_BUGS[name]))
        if name in KNOWN_BUGS
        else name
        for name in names
    ]


@pytest.mark.parametrize("name", _with_known_bugs(sorted(CASES)))
def test_hostile_case(worker, tmp_path, name):
    path = make_case(name, tmp_path)
    check_outcomes(outcomes_of(worker, path, LIMITS, ("path", "seek", "staged")), EXPECTED[name])


@pytest.mark.parametrize("name", sorted(LIMIT_CASES))
def test_limit_case(worker, tmp_path, name):
    case = LIMIT_CASES[name]
    path = make_case(case.case, tmp_path)
    check_outcomes(outcomes_of(worker, path, case.limits, case.readers), case.expected)


def test_the_playlist_trap_would_catch_a_reader_that_follows_the_playlist(worker, tmp_path):
    """The control for the playlist cases: with HLS allowed, FFmpeg opens the file the playlist
    names, a named pipe that blocks; so their quick 415 shows that nothing was opened."""
    path = make_case("hls_playlist", tmp_path)
    follows = dataclasses.replace(LIMITS, allowed_formats=("hls", *LIMITS.allowed_formats))
    with pytest.raises(NoAnswer):
        worker.run(path, follows, ("path",), timeout_s=2.0)


# -- what a few cases must show beyond "a valid clip" -----------------------------------------
def test_frames_come_in_display_order_whatever_order_the_file_stores_them(worker, tmp_path):
    """Frame ``i`` has brightness ``8 i``; the file stores them at 0, 300, 100, ... ms, so in
    display order they are frames 0, 2, 4, 1, 5, 3, 7, 6."""
    for name in ("non_monotonic_timestamps", "non_monotonic_timestamps_mp4"):
        outcome = worker.run(make_case(name, tmp_path), LIMITS, ("path",))["path"]
        assert [brightness_index(frame) for frame in outcome[1]] == [0, 2, 4, 1, 5, 3, 7, 6], name


def test_no_message_names_the_file_or_ffmpegs_error_number(worker, tmp_path):
    """A message says what is wrong with the video, not where the file lies or FFmpeg's errno."""
    for name in ("mp4_header_only", "mkv_header_only", "zero_frames", "avi_truncated_mid_keyframe"):
        outcome = worker.run(make_case(name, tmp_path), LIMITS, ("path",))["path"]
        assert outcome[0] == 422 and str(tmp_path) not in outcome[2] and "Errno" not in outcome[2], outcome


def test_a_rotated_video_is_displayed_upright(worker, tmp_path):
    outcome = worker.run(make_case("rotated_90", tmp_path), LIMITS, ("path",))["path"]
    assert outcome[4] == (32, 48)  # stored 48x32, displayed 32x48


def test_an_extreme_aspect_ratio_is_refused_before_the_resize_allocates_it():
    """A 2x10000 frame (23 kB as FFV1) resized to a shorter side of 128 is 128x640000 pixels:
    245 MB per frame, 590 MB peak for a 2-frame file. Refused before anything is allocated."""
    with pytest.raises(VideoLimitError, match="aspect ratio 5000:1"):
        FrameGeometry(resize=128, crop=128).resized_size(2, 10000)
    with pytest.raises(VideoLimitError, match="aspect ratio"):
        FrameGeometry(resize=128, crop=128).resized_size(10000, 2)
    assert FrameGeometry(resize=128, crop=112).resized_size(32 * 16, 32) == (2048, 128)  # 16:1 is fine
