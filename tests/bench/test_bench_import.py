"""The import benchmark's table: rebuilt from its JSON as committed, and its verdict."""

from __future__ import annotations

import json

import pytest

from bench import bench_import
from bench.bench_import import SERVED, write_report
from bench.import_served import served_verdict
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
