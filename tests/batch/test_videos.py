"""The job's stages called in this process, without Ray: decode, classify, decode the rest, resume."""

from __future__ import annotations

import dataclasses
import functools
import time
from pathlib import Path

import numpy as np
import pytest

from batch.isolation import read_samples
from batch.limits import Limits
from batch.videos import DecodeSpec, ModelSpec, Video, classifier, decode_batch, decode_video, unpack
from pipeline.answers import DECODER_CRASHED, choose_exit
from pipeline.repository import load_pipeline
from tests.batch.hostile_readers import crash_once
from tests.paths import SHIPPED_MODELS
from tests.pipeline.hostile_videos import make_case
from tests.service import hostile_decoders
from tests.videos import make_video

MANIFEST = load_pipeline(SHIPPED_MODELS, "adafocus_v2").manifest
BALANCED = choose_exit(MANIFEST, "balanced")
# The static clip decodes about 0.5 megapixels to reach its last sample; a flat 64x48 clip 0.05.
LIMITS = Limits(decode_budget_mpx=0.2).decode_limits()


def paths_batch(paths: list[str]) -> dict[str, np.ndarray]:
    return {"path": np.asarray(paths, dtype=object)}


def model(exit=BALANCED) -> ModelSpec:
    return ModelSpec(repo=str(SHIPPED_MODELS), name=MANIFEST.name, version=MANIFEST.version, exit=exit, threads=1)


def run_stages(paths: list[str], exit=BALANCED) -> list[Video]:
    spec = DecodeSpec.of(MANIFEST, LIMITS, exit)
    staged = spec.first is not None
    batch = decode_batch(paths_batch(paths), spec, first=True)
    batch = classifier(model(exit), final=not staged)()(batch)
    if staged:
        batch = decode_batch(batch, spec, first=False)
        batch = classifier(model(exit), final=True)()(batch)
    return [unpack(data) for data in batch["video"]]


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("videos")
    return {
        "flat": str(make_video(root / "flat.mp4", frames=24, width=64, height=48)),
        "static": str(make_case("static_long_one_keyframe", root)),
        "missing": str(root / "missing.mp4"),
        "folder": str(root),
    }


def test_videos_get_answers_or_problems_through_both_rounds(files):
    videos = {Path(v.path).stem: v for v in run_stages([files[name] for name in ("flat", "static", "missing")])}
    flat = videos["flat"].answer
    assert flat["status"] == "ok" and flat["exit_step"] == 7 and flat["operating_point"] == "balanced"
    assert flat["frames_processed"] == 8 and flat["video_frames"] == 24 and flat["frames_decoded"] >= 8
    assert videos["flat"].frames == {} and videos["flat"].recorded == []  # answered: nothing carried on
    static = videos["static"].answer
    assert (static["status"], static["http_status"]) == ("Video exceeds a limit", 422)
    assert "decode budget" in static["detail"]
    missing = videos["missing"].answer
    assert (missing["status"], missing["http_status"]) == ("Unreadable file", 400)
    assert missing["labels"] == [] and missing["exit_step"] is None


def test_without_early_exit_every_sample_is_read_at_once(files):
    spec = DecodeSpec.of(MANIFEST, LIMITS, None)
    assert spec.first is None
    (video,) = run_stages([files["flat"]], exit=None)
    assert video.answer["exit_step"] == 7 and video.answer["operating_point"] is None


def test_the_first_round_reads_step_zeros_sample_only(files):
    video = Video(files["flat"])
    decode_video(video, DecodeSpec.of(MANIFEST, LIMITS, BALANCED), first=True)
    assert list(video.frames) == [MANIFEST.frames.order[0]] and video.problem is None


def test_a_second_round_has_what_the_first_left_of_the_decode_time(files):
    video = Video(files["flat"], decode_s=LIMITS.max_wall_s)  # the first round spent it all
    decode_video(video, DecodeSpec.of(MANIFEST, LIMITS, BALANCED), first=False)
    assert (video.problem.title, video.problem.status) == ("Decoding timed out", 504)


def test_a_folder_named_as_a_video_is_the_files_problem(files):
    video = Video(files["folder"])
    decode_video(video, DecodeSpec.of(MANIFEST, LIMITS, BALANCED), first=True)
    assert video.problem is not None and video.problem.title == "Unreadable file"


def isolated_spec(function, timeout_s: float = 30.0) -> DecodeSpec:
    limits = Limits(decode_timeout_s=timeout_s).decode_limits()
    return dataclasses.replace(DecodeSpec.of(MANIFEST, limits, None), read_function=function, hard_margin_s=0.5)


def test_a_file_that_crashes_the_decoder_twice_is_undecodable(files):
    video = Video(files["flat"])
    decode_video(video, isolated_spec(hostile_decoders.crash), first=True)
    assert video.problem == DECODER_CRASHED and (video.problem.title, video.problem.status) == (
        "Undecodable video",
        422,
    )


def test_a_death_the_file_does_not_reproduce_costs_nothing(files, tmp_path):
    video = Video(files["flat"])
    decode_video(video, isolated_spec(functools.partial(crash_once, str(tmp_path / "crashed"))), first=True)
    assert video.problem is None and len(video.frames) == MANIFEST.frames.num_frames
    assert (tmp_path / "crashed").exists()


def test_a_decoder_stuck_in_ffmpeg_is_killed_at_the_hard_deadline(files):
    video = Video(files["flat"])
    started = time.monotonic()
    decode_video(video, isolated_spec(hostile_decoders.hang, timeout_s=0.5), first=True)
    assert (video.problem.title, video.problem.status) == ("Decoding timed out", 504)
    assert time.monotonic() - started < 10
    decode_video(video := Video(files["flat"]), isolated_spec(read_samples), first=True)  # a new child reads on
    assert video.problem is None


def test_the_services_loop_filter_shortcut_applies_to_a_job_too(tmp_path, monkeypatch):
    """ADAFOCUS_DECODE_SKIP_LOOP_FILTER (or --skip-loop-filter): a job decodes as the service's
    decoders would with it, in the decoder child too; a value the service refuses is a CLI error."""
    from batch.cli import main
    from batch.limits import SettingError, skip_loop_filter_setting
    from pipeline.frames.decode import ClipReader
    from pipeline.frames.transform import FrameGeometry
    from tests.videos import blocky_video

    path = str(blocky_video(tmp_path / "blocky.mp4"))
    frames = MANIFEST.frames
    geometry = FrameGeometry(frames.resize, frames.crop)
    read = {}
    for mode in ("none", "all"):
        video = Video(path)
        decode_video(video, DecodeSpec.of(MANIFEST, Limits().decode_limits(), None, mode), first=True)
        read[mode] = np.concatenate([video.frames[p] for p in range(frames.num_frames)])
        with ClipReader(path, frames.samples, geometry, threads=1, skip_loop_filter=mode) as reader:
            np.testing.assert_array_equal(read[mode], reader.read(range(frames.num_frames), normalised=False).frames)
    assert not np.array_equal(read["none"], read["all"])
    assert skip_loop_filter_setting() == "none"
    monkeypatch.setenv("ADAFOCUS_DECODE_SKIP_LOOP_FILTER", "all")
    assert skip_loop_filter_setting() == "all"
    monkeypatch.setenv("ADAFOCUS_DECODE_SKIP_LOOP_FILTER", "most")
    with pytest.raises(SettingError):
        skip_loop_filter_setting()
    assert main([str(tmp_path), "--out", str(tmp_path / "out")]) == 2


@pytest.mark.parametrize("fp16", [False, True])
def test_trt_fp16_reaches_the_actors_sessions(monkeypatch, tmp_path, fp16: bool):
    """--trt-fp16 (as the service's ADAFOCUS_TRT_FP16) reaches the TensorRT options of every graph an actor loads."""
    from batch.cli import config_of, parser
    from batch.job import model_spec
    from tests.provider_options import record_fp16

    asked = record_fp16(monkeypatch)
    args = [str(tmp_path), "--out", str(tmp_path / "out"), "--repo", str(SHIPPED_MODELS), "--threads", "1"]
    model, _ = model_spec(config_of(parser().parse_args(args + (["--trt-fp16"] if fp16 else []))))
    actor = classifier(model, final=True)()
    assert len(asked) == len(actor.sessions) and set(asked) == {fp16}
