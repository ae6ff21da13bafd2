"""The import benchmark's table: rebuilt from its JSON as committed, and its verdict."""

from __future__ import annotations

import json

from bench.bench_import import write_report
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
