"""The import benchmark's table: rebuilt from its JSON as committed, and its verdict."""

from __future__ import annotations

import json

import pytest

from bench import bench_import
from bench.bench_import import SERVED, STHSTH, write_report
from bench.import_served import served_verdict
from bench.import_sthsth import sthsth_verdict
from tests.paths import REPO

RESULTS = REPO / "docs" / "benchmarks"


def test_committed_table_is_the_one_its_json_makes(tmp_path):
    write_report(json.loads((RESULTS / "import.json").read_text()), tmp_path)
    assert (tmp_path / "import.md").read_text() == (RESULTS / "import.md").read_text()


def test_one_comparison_past_the_tolerance_turns_the_verdict_to_no(tmp_path):
    report = json.loads((RESULTS / "import.json").read_text())
    report["condensenetv2"][1]["parity"]["inference_form"]["max_abs_diff"] = 2e-4
    write_report(report, tmp_path)
    table = (tmp_path / "import.md").read_text()
    assert "All within tolerance with the same top-1: **no**" in table
    assert "| condensenetv2_b | 1.2e-07 | 2.0e-04 |" in table


def test_the_served_section_is_committed_and_its_verdict_is_yes():
    report = json.loads((RESULTS / "import.json").read_text())
    assert served_verdict(report[SERVED])
    assert "End to end, the same top-5 labels and scores within 0.001: **yes**" in (RESULTS / "import.md").read_text()


def test_the_sthsth_served_section_is_committed_and_its_verdict_is_yes():
    report = json.loads((RESULTS / "import.json").read_text())
    assert sthsth_verdict(report[STHSTH])
    text = (RESULTS / "import.md").read_text()
    assert "the GMACs round to the README's: **yes**" in text


@pytest.mark.parametrize(
    ("field", "value", "cell"),
    [
        (("max_abs_score_diff",), 1.5e-3, "max abs diff 1.5e-03 (tolerance 0.001): **no**"),
        (("all_scores", "max_abs_diff"), 1.5e-3, "max abs diff 1.5e-03: **no**"),
        (("max_box_diff_px",), 0.5, "max diff 5.0e-01 px (tolerance 0.1): **no**"),
        (("same_top5_labels",), False, "| **no** |"),
    ],
)
def test_a_served_score_or_box_past_the_tolerance_turns_its_verdict_to_no(tmp_path, field, value, cell):
    report = json.loads((RESULTS / "import.json").read_text())
    target = report[SERVED]["parity"]
    for key in field[:-1]:
        target = target[key]
    target[field[-1]] = value
    write_report(report, tmp_path)
    table = (tmp_path / "import.md").read_text()
    assert "End to end, the same top-5 labels and scores within 0.001: **no**" in table
    assert cell in table
    assert "All within tolerance with the same top-1: **yes**" in table  # the parity part's verdict is its own


def test_only_one_part_is_measured_and_the_other_kept(tmp_path, monkeypatch):
    committed = json.loads((RESULTS / "import.json").read_text())
    (tmp_path / "import.json").write_text(json.dumps(committed))
    fresh = {**committed[SERVED], "date": "2099-01-01"}
    monkeypatch.setattr(bench_import, "measure_actnet_served", lambda workdir: fresh)
    monkeypatch.setattr(bench_import, "measure_parity", lambda variants: pytest.fail("parity measured"))
    assert bench_import.main(["--only", "served", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "import.json").read_text())
    assert written[SERVED]["date"] == "2099-01-01"
    assert {k: v for k, v in written.items() if k != SERVED} == {k: v for k, v in committed.items() if k != SERVED}

    parity = {
        "date": "2099-01-02",
        **{k: committed[k] for k in ("machine", "tolerance", "condensenetv2", "torchvision")},
    }
    monkeypatch.setattr(bench_import, "measure_parity", lambda variants: parity)
    monkeypatch.setattr(bench_import, "measure_actnet_served", lambda workdir: pytest.fail("served measured"))
    assert bench_import.main(["--only", "parity", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "import.json").read_text())
    assert written["date"] == "2099-01-02" and written[SERVED]["date"] == "2099-01-01"


def _sthsth_section() -> dict:
    """A synthetic ``sthsth_served`` result: every check passes (the values are made up)."""
    frames = [3, 9, 15, 21, 27, 33, 39, 45, 2, 6, 10, 14, 18, 22, 26, 30, 34, 38, 42, 46]
    return {
        "date": "2099-01-03",
        "machine": {"cpu": "test CPU", "threads": 2, "torch": "0", "python": "3"},
        "model": {
            "layout": "sthv1",
            "seed": 0,
            "num_classes": 174,
            "glance": "mobilenetv2",
            "focus": "resnet50",
            "glance_segments": 8,
            "focus_segments": 12,
            "frame_size": 224,
            "patch_size": 128,
            "params": 30_000_000,
            "temporal": "whole_clip",
            "graphs": ["clip"],
            "operating_points": ["full"],
            "gmacs_per_clip": 18.46,
        },
        "sizes_mb": {"checkpoint": 120.0, "run_model_pt": 120.0, "repo_files": {"clip.onnx": 120.0}},
        "video": {"codec": "ffv1", "pix_fmt": "bgr0", "bytes": 9e6, "frames": 48, "size": [320, 240]}
        | {"sampled_indices": frames, "authors_sampling": True},
        "tolerance": {"score": 1e-3, "box_px": 0.1, "gflops": 0.05},
        "torch_location": [0.3, 0.7],
        "onnxruntime": {"threads": 2, "clips": 10, "ms_per_clip": 900.0, "ms_per_clip_min": 880.0}
        | {"max_abs_logit_diff": 2e-5, "max_abs_location_diff": 1e-7, "same_top5_labels": True}
        | {"max_abs_score_diff": 1e-7},
        "served": {
            "labels": ["class_001", "class_002", "class_003", "class_004", "class_005"],
            "torch_labels": ["class_001", "class_002", "class_003", "class_004", "class_005"],
            "same_top5_labels": True,
            "scores": [0.3, 0.2, 0.1, 0.05, 0.01],
            "torch_scores": [0.3, 0.2, 0.1, 0.05, 0.01],
            "max_abs_score_diff": 1e-7,
            "all_scores": {"classes": 174, "max_abs_diff": 1e-7, "same_ranking": True},
            "box": [80.2, 79.9, 120.1, 120.0],
            "expected_box": [80.2, 79.9, 120.1, 120.0],
            "max_box_diff_px": 1e-5,
            "boxes_on_focus_frames": True,
            "frames_with_box": 12,
            "one_box": True,
            "exit_step": 0,
            "frames_processed": 20,
            "frame_indices": frames,
            "first_request_ms": 1500.0,
            "same_frames_as_read_clip": True,
        },
        "torch": {"threads": 2, "clips": 5, "ms_per_clip": 1500.0, "ms_per_clip_min": 1400.0},
        "service": {
            "requests": 10,
            "threads": 2,
            "request_ms": {"p50": 1100.0, "p95": 1200.0, "min": 1000.0, "max": 1250.0},
            "answer_timings_ms": {"decode": 150.0, "glance": 0.0, "focus": 0.0, "classify": 900.0},
        },
        "gmacs": [
            {"patch": p, "gmacs": g, "authors_gflops": a, "diff": g - a}
            for p, g, a in ((128, 18.46, 18.5), (144, 23.54, 23.5), (160, 27.47, 27.5), (176, 33.72, 33.7))
        ],
        "stage_s": {"write_file": 3.0, "import": 4.0, "export": 120.0, "service_ready": 5.0},
    }


STHSTH_YES = "the box is the policy's and the GMACs round to the README's: **yes**"
STHSTH_NO = "the box is the policy's and the GMACs round to the README's: **no**"


def test_the_sthsth_section_renders_its_checks_and_a_yes(tmp_path):
    report = {**json.loads((RESULTS / "import.json").read_text()), STHSTH: _sthsth_section()}
    assert sthsth_verdict(report[STHSTH])
    write_report(report, tmp_path)
    table = (tmp_path / "import.md").read_text()
    assert "## AdaFocusV2 Something-Something V1, paper size, end to end on the service" in table
    assert STHSTH_YES in table
    assert "| 176 | 33.72 | 33.7 | +0.02 | yes |" in table
    assert "| ONNX Runtime, `OnnxPipeline.run_clip` (10 clips, 2 threads) | 900 | 880 |" in table
    assert "| service request, p50 of 10 sequential (p95 1200) | 1100 | 1000 |" in table
    assert "End to end, the same top-5 labels and scores within 0.001: **yes**" in table  # the other part's


@pytest.mark.parametrize(
    ("path", "value", "cell"),
    [
        (("served", "max_abs_score_diff"), 1.5e-3, "max abs diff 1.5e-03 (tolerance 0.001): **no**"),
        (("served", "all_scores", "max_abs_diff"), 1.5e-3, "max abs diff 1.5e-03: **no**"),
        (("served", "same_top5_labels"), False, "| **no** |"),
        (
            ("served", "max_box_diff_px"),
            0.5,
            "max diff 5.0e-01 px (tolerance 0.1); on the focus frames only, one box: **no**",
        ),
        (("served", "one_box"), False, "one box: **no**"),
        (("served", "frames_processed"), 8, "| 8, step 0 | 20, one pass | **no** |"),
        (("onnxruntime", "same_top5_labels"), False, "same top-5: **no**"),
        (("onnxruntime", "max_abs_score_diff"), 2e-3, "max abs score diff 2.0e-03: **no**"),
        (("video", "authors_sampling"), False, "the authors' TSN centres (8, then 12) | **no** |"),
        (("gmacs", 3, "diff"), 0.3, "| 176 | 33.72 | 33.7 | +0.30 | **no** |"),
    ],
)
def test_an_sthsth_check_that_fails_turns_its_verdict_to_no(tmp_path, path, value, cell):
    section = _sthsth_section()
    target = section
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    report = {**json.loads((RESULTS / "import.json").read_text()), STHSTH: section}
    assert not sthsth_verdict(section)
    write_report(report, tmp_path)
    table = (tmp_path / "import.md").read_text()
    assert STHSTH_NO in table and cell in table
    assert "End to end, the same top-5 labels and scores within 0.001: **yes**" in table  # its own verdict


def test_only_the_sthsth_part_is_measured_and_the_others_kept(tmp_path, monkeypatch):
    committed = json.loads((RESULTS / "import.json").read_text())
    (tmp_path / "import.json").write_text(json.dumps(committed))
    monkeypatch.setattr(bench_import, "measure_sthsth_served", lambda workdir: _sthsth_section())
    monkeypatch.setattr(bench_import, "measure_parity", lambda variants: pytest.fail("parity measured"))
    monkeypatch.setattr(bench_import, "measure_actnet_served", lambda workdir: pytest.fail("served measured"))
    assert bench_import.main(["--only", "sthsth_served", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "import.json").read_text())
    assert written[STHSTH] == _sthsth_section()
    assert {k: v for k, v in written.items() if k != STHSTH} == {k: v for k, v in committed.items() if k != STHSTH}
    assert STHSTH_YES in (tmp_path / "import.md").read_text()

    fresh = {**committed[SERVED], "date": "2099-01-01"}
    monkeypatch.setattr(bench_import, "measure_actnet_served", lambda workdir: fresh)
    monkeypatch.setattr(bench_import, "measure_sthsth_served", lambda workdir: pytest.fail("sthsth measured"))
    assert bench_import.main(["--only", "served", "--out", str(tmp_path)]) == 0
    written = json.loads((tmp_path / "import.json").read_text())
    assert written[SERVED]["date"] == "2099-01-01" and written[STHSTH] == _sthsth_section()
