"""bench/bench_loop_filter.py's pieces on small clips: decode costs and pixel differences per
mode, the synthetic top-1 per mode, and its report (the real-size run is the benchmark's)."""

from __future__ import annotations

import numpy as np

from bench.bench_loop_filter import MODES, accuracy, markdown, real_size_costs
from pipeline.onnx_steps import OnnxPipeline, create_sessions
from pipeline.repository import load_pipeline
from tests.paths import SHIPPED_MODELS
from tests.videos import blocky_video
from training.data.splits import load_splits
from training.data.synthetic import SyntheticConfig, generate


def test_real_size_costs_per_mode(tmp_path):
    rows = real_size_costs(blocky_video(tmp_path / "blocky.mp4", frames=32, size=256), [0, 3, 7, 15], repeats=1)
    assert list(rows) == list(MODES) == ["none", "bidir", "all"]
    assert rows["none"]["crop_difference"] == {"mean": 0.0, "p99": 0.0, "max": 0}
    assert rows["all"]["crop_difference"]["max"] > 0
    for row in rows.values():
        assert row["samples_cpu_ms"] > 0 and row["every_frame_cpu_ms"] > 0 and row["after_4_cpu_ms"] > 0


def test_accuracy_per_mode_and_the_report(tmp_path):
    data = generate(tmp_path / "data", SyntheticConfig(seed=5, train=1, calibration=1, test=3), workers=1)
    clips = [(s.path, s.labels[0]) for s in load_splits(data).test]
    pipeline = load_pipeline(SHIPPED_MODELS, "adafocus_v2")
    rows = accuracy(OnnxPipeline(pipeline, create_sessions(pipeline, threads=1)), clips)
    assert list(rows) == list(MODES)
    assert rows["none"]["mean_difference"] == 0.0 and rows["none"]["max"] == 0
    assert all(0.0 <= row["top1"] <= 1.0 for row in rows.values())
    results = {
        "command": "python -m bench.bench_loop_filter",
        "machine": "test",
        "date": "today",
        "repeats": 1,
        "model": "adafocus_v2 v2",
        "clips": len(clips),
        "stolen_cpu_share": 0.0,
        "real_size": {"blocky": real_size_costs(blocky_video(tmp_path / "b.mp4"), [0], repeats=1)},
        "accuracy": {"as generated": rows},
    }
    table = markdown(results)
    assert table.count("| blocky |") == 3 and table.count("| as generated |") == 3
    assert np.isfinite([rows[m]["top1"] for m in MODES]).all()
