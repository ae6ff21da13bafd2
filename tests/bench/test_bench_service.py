"""The service benchmark's verdicts: the 3x aim counts only at equal or better accuracy."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.bench_service import (
    BALANCED,
    MATCHED,
    aims,
    calibration_accuracy,
    check_providers,
    matching_point,
    output_stem,
    served_manifests,
)
from tests.paths import REPO


def _row(concurrency: int, videos_per_s: float, top1: float, calibration_top1: float) -> dict:
    return {
        "concurrency": concurrency,
        "videos_per_s": videos_per_s,
        "top1": top1,
        "calibration_top1": calibration_top1,
    }


def _results(ours: tuple[float, float, float], base: tuple[float, float, float]) -> dict:
    return {
        "videos": 96,
        "matched_point": {"p": 0.068, "names": []},
        "scenarios": {
            MATCHED: [_row(1, ours[0] / 2, *ours[1:]), _row(16, *ours)],
            BALANCED: [_row(1, ours[0] / 2, *ours[1:]), _row(16, *ours)],
            "full_frame": [_row(1, base[0] / 2, *base[1:]), _row(16, *base)],
        },
    }


def test_the_throughput_aim_needs_equal_accuracy_on_clips_and_calibration_split():
    def verdict(ours, base) -> str:
        return aims(_results(ours, base))[0]

    met = verdict((310.0, 1.0, 1.0), (100.0, 1.0, 1.0))
    assert met.startswith("- Met: AdaFocusV2 with exit (p=0.068, its cheapest operating point as accurate")
    assert "serves 3.10x" in met
    assert verdict((290.0, 1.0, 1.0), (100.0, 1.0, 1.0)).startswith("- Not met")  # too slow
    assert verdict((400.0, 1.0, 0.974), (100.0, 1.0, 1.0)).startswith("- Not met")  # less accurate at calibration
    assert verdict((400.0, 0.99, 1.0), (100.0, 1.0, 1.0)).startswith("- Not met")  # less accurate on the clips
    less_accurate = verdict((400.0, 1.0, 0.974), (100.0, 1.0, 1.0))
    assert "0.974 vs 1.000 on the calibration splits" in less_accurate
    assert "none is as accurate as the baseline" in less_accurate
    concurrency_line = aims(_results((310.0, 1.0, 1.0), (100.0, 1.0, 1.0)))[-1]
    assert concurrency_line.startswith("- Met: throughput at concurrency 16 is 2.00x")


def test_accuracy_and_source_run_come_from_the_shipped_manifests():
    manifests = served_manifests(REPO / "model_repo")
    assert calibration_accuracy(manifests["full_frame"], "full") == 1.0
    assert 0.0 < calibration_accuracy(manifests["adafocus_v2"], "balanced") <= 1.0
    assert Path(manifests["adafocus_v2"].source.run_dir).parts[:2] == ("runs", "compare")


def test_the_matching_point_is_the_cheapest_one_as_accurate_as_asked():
    manifest = served_manifests(REPO / "model_repo")["adafocus_v2"]
    points = manifest.operating_points
    for target in sorted({p.accuracy for p in points}):
        chosen = matching_point(manifest, target)
        assert chosen.accuracy >= target
        assert all(p.expected_gmacs >= chosen.expected_gmacs for p in points if p.accuracy >= target)
    best = max(p.accuracy for p in points)
    assert matching_point(manifest, best + 0.01).accuracy == best  # none reaches it: the most accurate


def test_a_gpu_run_stops_where_the_provider_did_not_load_and_writes_its_own_table():
    served = [{"name": "adafocus_v2", "providers": ["CUDAExecutionProvider", "CPUExecutionProvider"]}]
    check_providers(served, "CUDAExecutionProvider")
    with pytest.raises(SystemExit, match="TensorrtExecutionProvider is not what the service runs on"):
        check_providers(served, "TensorrtExecutionProvider")  # ONNX Runtime fell back without a word
    assert output_stem("CPUExecutionProvider") == "service"
    assert output_stem("TensorrtExecutionProvider") == "service_tensorrt"
