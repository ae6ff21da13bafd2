"""bench_memory's verdicts: the committed table states each aim of issue 22 from its own JSON,
and a verdict turns to NOT met when its figure misses."""

from __future__ import annotations

import copy
import json

from bench import bench_memory
from tests.paths import REPO

RESULTS = json.loads((REPO / "docs" / "benchmarks" / "memory.json").read_text())


def test_the_committed_report_states_every_aim_as_met():
    verdicts = bench_memory.verdicts(RESULTS)
    assert len(verdicts) == 4 and all(met for _, _, met in verdicts)
    report = (REPO / "docs" / "benchmarks" / "memory.md").read_text()
    for aim, figure, _ in verdicts:
        assert f"| {aim} | {figure} | met |" in report


def test_a_peak_over_the_budget_or_a_refused_normal_request_is_not_met():
    over = copy.deepcopy(RESULTS)
    over["peaks_mib"]["large uploads"] = over["budget_mib"] + 1
    assert not bench_memory.verdicts(over)[0][2]
    refused = copy.deepcopy(RESULTS)
    refused["slow_uploads"]["normal"]["statuses"] = {"200": 10, "503": 1}
    refused["slow_uploads"]["normal"]["requests"] = 11
    assert not bench_memory.verdicts(refused)[3][2]
