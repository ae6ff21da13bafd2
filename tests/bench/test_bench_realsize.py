"""The real-size benchmark's pieces: forced exits, the samples a service decodes, the CPU split
and the verdicts (the service runs themselves are the benchmark's, not the tests')."""

from __future__ import annotations

import json

import numpy as np
import pytest

from bench.bench_realsize import aims, cpu_split, exit_positions, samples_decoded, with_floors
from bench.realsize_models import MODELS, forced_exit_point
from pipeline.early_exit import simulate_exit
from training.adafocus.model import coarse_to_fine_order


@pytest.mark.parametrize("after", [1, 4, 8, 16])
def test_a_forced_point_exits_after_its_step_whatever_the_confidence(after):
    point = forced_exit_point(after, 16, gmacs_per_frame=2.0)
    confidences = np.random.default_rng(0).random((50, 16))
    confidences[:5] = 1.0  # sure from the first frame
    confidences[5:10] = 0.0  # never sure
    assert simulate_exit(confidences, point.thresholds).tolist() == [after - 1] * 50
    assert point.expected_gmacs == 2.0 * after
    assert point.exit_fractions.index(1.0) == after - 1 and sum(point.exit_fractions) == 1.0
    assert point.names == (["full"] if after == 16 else [f"after_{after}"])


def test_the_models_are_the_papers_configurations():
    p128, full = MODELS["adafocus_v2_p128"].config(), MODELS["full_frame"].config()
    assert (p128.global_model, p128.local_model, p128.patch_size, p128.num_frames) == (
        "mobilenetv2",
        "resnet50",
        128,
        16,
    )
    assert (full.variant, full.local_model, full.frame_size, full.classifier_width) == (
        "full_frame",
        "resnet50",
        224,
        4096,
    )


def test_samples_decoded_follow_the_services_decode_calls():
    coarse = coarse_to_fine_order(16)
    # Coarse to fine: calls [7], [0], [15, 3], [11, 1, 5, 9], then the other eight.
    assert [samples_decoded(coarse, k) for k in (1, 2, 3, 4, 8, 9, 16)] == [1, 2, 4, 4, 8, 16, 16]
    # Chronological: calls [0], [1], [2, 3], [4..7], [8..15].
    chronological = list(range(16))
    assert [samples_decoded(chronological, k) for k in (1, 2, 3, 4, 5, 8, 9, 16)] == [1, 2, 4, 4, 8, 8, 16, 16]


def test_exit_positions_are_the_first_steps_of_the_order(tmp_path):
    order = coarse_to_fine_order(16)
    (tmp_path / "adafocus_v2_p128.v1.json").write_text(json.dumps({"frames": {"order": order}}))
    from bench.bench_realsize import SCENARIOS

    positions = exit_positions(tmp_path, [SCENARIOS["p128_after_4"], SCENARIOS["p128_full"]])
    assert positions == {"full": list(range(16)), "after_4": sorted(order[:4])} and sorted(order[:4]) == [0, 3, 7, 15]


def _cell(concurrency: int, videos_per_s: float, peak: float = 500.0) -> dict:
    return {
        "concurrency": concurrency,
        "videos_per_s": videos_per_s,
        "peak_rss_mb": peak,
        "samples_decoded_per_video": 16,
        "cpu_ms_per_video": {"server": 500.0, "server_event_loop": 20.0, "decoders": 900.0, "client": 5.0},
    }


def test_the_cpu_split_and_the_floor_multiple():
    split = cpu_split(_cell(16, 1.0), resize_ms_per_sample=2.5)
    assert split == {"decode": 860.0, "resize": 40.0, "inference": 480.0, "http": 20.0, "client": 5.0}
    results = _results(ours=3.0, after_4=12.0, base=1.0)
    with_floors(results)
    row = results["cells"]["1080p_h264_gop250"]["p128_full"][0]
    # Server + decoders (1400 ms) over decode floor (700) + inference floor (300).
    assert row["floor_cpu_ms"] == 1000.0 and row["times_floor"] == pytest.approx(1.4)


def _results(ours: float, after_4: float, base: float, peak: float = 500.0, samples_ratio: float = 0.5) -> dict:
    decode = {
        "exits": {"full": {"cpu_ms": 700.0, "frames_decoded": 120}, "after_4": {"cpu_ms": 300.0, "frames_decoded": 60}},
        "resize_ms_per_sample": 2.5,
        "samples_vs_every_frame": {
            "1": {"samples_ms": 100 * samples_ratio, "every_frame_ms": 100.0, "ratio": samples_ratio},
            "2": {"samples_ms": 60 * samples_ratio, "every_frame_ms": 60.0, "ratio": samples_ratio},
        },
    }
    return {
        "concurrency": [1, 16],
        "cells": {
            "1080p_h264_gop250": {
                "p128_full": [_cell(16, ours, peak)],
                "p128_after_4": [_cell(16, after_4, peak)],
                "full_frame_full": [_cell(16, base, peak)],
            }
        },
        "floors": {
            "decode": {"1080p_h264_gop250": decode},
            "inference": {
                "p128_full": {"cpu_ms": 300.0},
                "p128_after_4": {"cpu_ms": 100.0},
                "full_frame_full": {"cpu_ms": 700.0},
            },
        },
        "eager_vs_onnx": {"ms_per_clip": {"pytorch_eager": 2000.0, "onnxruntime": 800.0}, "speedup": 2.5},
    }


def test_the_aims_are_stated_met_or_not_with_their_figures():
    def verdicts(**kwargs) -> list[str]:
        results = _results(**kwargs)
        with_floors(results)
        return aims(results)

    met = verdicts(ours=1.7, after_4=6.5, base=1.0)
    assert met[0].startswith("- **Met**: AdaFocusV2 p128 (p128_full) at least 1.6x") and "1.70x" in met[0]
    assert met[1].startswith("- **Met**: AdaFocusV2 p128 (p128_after_4) at least 6x")
    assert met[2].startswith("- **Met**: decoding the 16 samples") and "(0.50x)" in met[2]
    assert met[3].startswith("- **Not met**: service CPU per video within 1.3x")  # 1.4x and more
    assert met[4].startswith("- **Met**: served ONNX Runtime at least 2x") and "(2.50x)" in met[4]
    assert met[5].startswith("- **Not measured**: INT8")  # no INT8 scenario in these results
    assert met[6].startswith("- **Met**: peak resident memory") and "500 MB" in met[6]
    slow = verdicts(ours=1.5, after_4=5.9, base=1.0, peak=1100.0, samples_ratio=0.7)
    assert [line.split(":")[0] for line in (slow[0], slow[1], slow[2], slow[6])] == ["- **Not met**"] * 4


def test_the_int8_aim_needs_both_the_floor_and_the_served_ratio():
    def int8_verdict(alone_ms: float, served_server_ms: float) -> str:
        results = _results(ours=1.0, after_4=2.0, base=1.0)
        results["floors"]["inference"]["p128_full"]["wall_ms"] = 1000.0
        results["floors"]["inference"]["p128_int8_full"] = {"cpu_ms": 300.0, "wall_ms": alone_ms}
        int8 = _cell(16, 2.0)
        int8["cpu_ms_per_video"]["server"] = served_server_ms  # the FP32 cell: 500 ms, 480 of inference
        results["cells"]["1080p_h264_gop250"]["p128_int8_full"] = [int8]
        with_floors(results)
        return next(line for line in aims(results) if "INT8" in line)

    met = int8_verdict(alone_ms=500.0, served_server_ms=20.0 + 240.0)
    assert met.startswith("- **Met**") and "(2.00x)" in met and "1080p_h264_gop250 2.00x" in met
    assert int8_verdict(alone_ms=700.0, served_server_ms=260.0).startswith("- **Not met**")  # 1.43x alone
    assert int8_verdict(alone_ms=500.0, served_server_ms=340.0).startswith("- **Not met**")  # 1.5x served


def test_the_resize_cost_is_measured_on_the_clips_own_samples_and_grows_with_the_frame(tmp_path):
    from bench.bench_realsize import resize_ms_per_sample
    from tests.videos import make_video

    # The same output size (the model's resize), 36x the input pixels.
    small = make_video(tmp_path / "small.mp4", frames=32, width=320, height=180)
    large = make_video(tmp_path / "large.mp4", frames=32, width=1920, height=1080)
    small_ms, large_ms = resize_ms_per_sample(small, repeats=5), resize_ms_per_sample(large, repeats=5)
    assert 0 < small_ms < large_ms


def test_the_bench_refuses_a_device_it_could_not_measure(tmp_path):
    """--hwaccel stops with the reason rather than measuring software decoding under a device's name."""
    from av.codec.hwaccel import hwdevices_available

    from bench.bench_realsize import hwaccel_problem
    from tests.pipeline.test_hwaccel import _creatable
    from tests.videos import make_video

    clip = make_video(tmp_path / "clip.mp4", frames=8)
    assert "not a hardware device" in hwaccel_problem("cudaa", clip)
    missing = [device for device in hwdevices_available() if not _creatable(device, clip)]
    if missing:
        assert "cannot create the device" in hwaccel_problem(missing[0], clip)
    for device in set(hwdevices_available()) - set(missing):
        assert hwaccel_problem(device, clip) is None
