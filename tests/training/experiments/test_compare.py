"""The comparison command: experiments run (and are reused), the report and plot, the aims' verdicts."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from tests.training.tiny import TINY_TRAINING
from training.experiments import compare
from training.experiments.compare import (
    BY_NAME,
    Result,
    check_aims,
    check_gate,
    check_policy_aims,
    compare_with_baselines,
    focus_summary,
    load_results,
    main,
    results_table,
    seed_run_name,
)


def _result(name: str, top1: float, gmacs_per_video: float, points: list[tuple[str, float, float]] = ()) -> Result:
    return Result(
        experiment=BY_NAME[name],
        patch_size=16,
        gmacs_per_frame=gmacs_per_video / 8,
        gmacs_per_video=gmacs_per_video,
        top1=top1,
        exit_points=[
            {"name": n, "names": [n], "p": None, "top1": acc, "gmacs_per_video": gmacs} for n, acc, gmacs in points
        ],
        train_seconds=1.0,
    )


def test_aims_are_judged_from_the_figures():
    results = {
        "full_frame": _result("full_frame", 0.90, 3.0),
        "adafocus_v2": _result("adafocus_v2", 0.92, 0.9, [("full", 0.92, 0.9), ("fast", 0.915, 0.5), ("x", 0.7, 0.1)]),
        "no_stop_gradient": _result("no_stop_gradient", 0.80, 0.9),
        "no_auxiliary_losses": _result("no_auxiliary_losses", 0.915, 0.9),
    }
    lines = check_aims(results, test_videos=500)
    assert len(lines) == 4
    assert lines[0].startswith("- **Met**") and "30%" in lines[0]  # 0.9 / 3.0
    assert lines[1].startswith("- **Met**") and "(fast)" in lines[1] and "44% fewer" in lines[1]
    assert lines[2].startswith("- **Not met**") and "auxiliary" in lines[2]  # half a point: within the noise
    assert lines[3].startswith("- **Met**") and "stop-gradient" in lines[3]
    # More than a third of the full-frame compute fails the first aim even when more accurate.
    results["adafocus_v2"] = _result("adafocus_v2", 0.95, 1.2, [("full", 0.95, 1.2)])
    lines = check_aims(results, test_videos=500)
    assert lines[0].startswith("- **Not met**") and lines[1].startswith("- **Not met**")


def test_the_policy_is_compared_with_fixed_patches():
    results = {
        "adafocus_v2": _result("adafocus_v2", 0.92, 0.23),
        "centre_patch": _result("centre_patch", 1.00, 0.22),
        "random_patch": _result("random_patch", 0.925, 0.22),
    }
    centre, random = compare_with_baselines(results, test_videos=500)
    assert "worse than a centre patch" in centre and "top-1 0.920 vs 1.000" in centre
    assert "no different from a random patch" in random
    results["centre_patch"] = _result("centre_patch", 0.80, 0.22)
    assert "better than a centre patch" in compare_with_baselines(results, test_videos=500)[0]


def test_the_table_shows_where_the_patches_looked():
    oracle = _result("oracle_patch", 0.99, 0.2)
    oracle.hit_rate, oracle.iou = 0.975, 0.5625
    rows = results_table([oracle, _result("full_frame", 1.0, 0.7)])
    assert "| hit rate | IoU |" in rows[0] and rows[1].count("|") == rows[0].count("|")
    assert "| 0.975 | 0.562 |" in rows[2]  # the oracle's
    assert "| - | - |" in rows[3]  # no boxes, or no patch: not measured


def test_the_gate_needs_the_oracle_15_points_above_each_fixed_patch():
    results = {
        "oracle_patch": _result("oracle_patch", 0.95, 0.14),
        "centre_patch": _result("centre_patch", 0.80, 0.14),
        "random_patch": _result("random_patch", 0.81, 0.14),
    }
    centre, random = check_gate(results)
    assert centre.startswith("- **Met**") and "+15.0 points" in centre
    assert random.startswith("- **Not met**") and "+14.0 points" in random
    del results["oracle_patch"]
    assert check_gate(results) == []


def test_the_policy_aims_need_10_points_over_fixed_patches_and_3_of_the_oracle():
    results = {
        "adafocus_v2": _result("adafocus_v2", 0.90, 0.14),
        "oracle_patch": _result("oracle_patch", 0.93, 0.14),
        "centre_patch": _result("centre_patch", 0.80, 0.14),
        "random_patch": _result("random_patch", 0.85, 0.14),
    }
    centre, random, oracle = check_policy_aims(results)
    assert centre.startswith("- **Met**") and "+10.0 points" in centre
    assert random.startswith("- **Not met**") and "+5.0 points" in random
    assert oracle.startswith("- **Met**") and "3.0 points behind" in oracle
    results["oracle_patch"] = _result("oracle_patch", 0.95, 0.14)
    assert check_policy_aims(results)[2].startswith("- **Not met**")
    assert check_policy_aims({"centre_patch": results["centre_patch"]}) == []


def test_compare_runs_reuses_and_reports(tiny_dataset: Path, tmp_path: Path):
    base = tmp_path / "base.json"
    base.write_text(json.dumps({**TINY_TRAINING, "epochs": 1, "data": str(tiny_dataset)}))
    runs, report = tmp_path / "runs", tmp_path / "results" / "tiny.md"
    argv = ["--config", str(base), "--runs", str(runs), "--report", str(report)]
    argv += ["--only", "adafocus_v2", "full_frame", "no_stop_gradient"]
    assert main(argv) == 0
    summaries = {name: (runs / name / "summary.json").stat().st_mtime_ns for name in argv[-3:]}
    text = report.read_text()
    for label in ("AdaFocusV2, patch 16", "local network on full frames", "ablation: no stop-gradient"):
        assert f"| {label} |" in text
    assert "Not run (yet): no_random_patch_branch, no_auxiliary_losses, centre_patch" in text
    assert text.count("- **") == 3  # compute aim, exit aim, one ablation
    assert report.with_suffix(".png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    # The same command again trains nothing; a different base option would be a new run.
    assert main(argv) == 0
    assert {name: (runs / name / "summary.json").stat().st_mtime_ns for name in argv[-3:]} == summaries
    assert main([*argv[:6], "--report-only"]) == 0
    # The report keeps a record of each run, so it can be rewritten once the run folders are gone.
    records = tmp_path / "results" / "tiny"
    assert sorted(p.name for p in records.iterdir()) == ["adafocus_v2", "full_frame", "no_stop_gradient"]
    shutil.rmtree(runs)
    report.unlink()
    assert main(["--runs", str(runs), "--report", str(report), "--report-only"]) == 0
    assert "| ablation: no stop-gradient |" in report.read_text()
    assert main(["--set", "no_such_option=1", "--runs", str(runs), "--report-only"]) == 2


def test_v1_against_v2_report(tiny_dataset: Path, tmp_path: Path):
    from training.experiments.compare_v1 import main as compare_v1

    base = tmp_path / "base.json"
    base.write_text(
        json.dumps({**TINY_TRAINING, "epochs": 1, "v1_stage_epochs": [1, 1, 1, 1], "data": str(tiny_dataset)})
    )
    runs, report = tmp_path / "runs", tmp_path / "results" / "v1-vs-v2.md"
    only = ["--only", "adafocus_v2", "adafocus_v1", "adafocus_v1_skip", "adafocus_v1_skip_0.2"]
    assert compare_v1(["--config", str(base), "--runs", str(runs), "--report", str(report), *only]) == 0
    text = report.read_text()
    assert report.with_suffix(".png").is_file() and "![accuracy vs frames focused](v1-vs-v2.png)" in text
    assert "frame skipping is not all-or-nothing" in text
    for label in ("AdaFocusV2 (one stage)", "AdaFocus V1 (four stages", "AdaFocus V1 with frame skipping"):
        assert f"| {label}" in text
    assert "- Training time: V1's four stages took" in text
    assert "- Frame skipping (cost 0.05): focus on" in text and "- Frame skipping (cost 0.2): focus on" in text
    assert "different machines" not in text  # all three ran here
    v1 = json.loads((runs / "adafocus_v1" / "summary.json").read_text())
    minutes = " / ".join(f"{s / 60:.1f}" for s in v1["stage_seconds"])
    assert f"| {minutes} |" in text


def _v1_summary(top1: float, seconds: list[float] | float, machine: str | None, focus_rate: float | None = None):
    summary = {
        "test": {"per_step": [{"top1": top1}]},
        "gmacs_per_frame": 0.03,
        "gmacs_per_video_full": 0.24,
    }
    if isinstance(seconds, list):
        summary["stage_seconds"] = summary["stage_cpu_seconds"] = seconds
    else:
        summary["train_seconds_this_session"] = summary["train_cpu_seconds_this_session"] = seconds
    if machine is not None:
        summary["machine"] = {"cpu": machine}
    if focus_rate is not None:
        summary["test"].update(focus_rate=focus_rate, gmacs_per_video_all_frames=0.18)
    return summary


def test_v1_report_findings_are_computed_and_flag_machines():
    from training.experiments.compare_v1 import findings

    summaries = {
        "adafocus_v2": _v1_summary(0.95, 600.0, "A"),
        "adafocus_v1": _v1_summary(0.90, [300.0, 600.0, 300.0, 300.0], "A"),
        "adafocus_v1_skip": _v1_summary(0.88, [1.0] * 4, "A", focus_rate=0.5),
        "adafocus_v1_skip_0.2": _v1_summary(0.80, [1.0] * 4, "A", focus_rate=0.25),
    }
    lines = findings(summaries)
    assert "took 2.50x V2's wall-clock time (2.50x its CPU time)" in lines[0]
    assert "V2 5.0 points above V1" in lines[1]
    assert "focus on 50% of the frames, 25% fewer GMACs" in lines[2] and "+2.0 points" in lines[2]
    assert "(cost 0.2): focus on 25% of the frames" in lines[3] and "+10.0 points" in lines[3]
    assert "**Met**: frame skipping is not all-or-nothing" in lines[4] and "2 of 2 intermediate" in lines[4]
    assert len(lines) == 5  # one machine, all recorded
    # All-or-nothing: one cost focuses on every frame, the other on none.
    summaries["adafocus_v1_skip"]["test"]["focus_rate"] = 1.0
    summaries["adafocus_v1_skip_0.2"]["test"]["focus_rate"] = 0.0
    assert "**Not met**" in findings(summaries)[4] and "0 of 2 intermediate" in findings(summaries)[4]
    summaries["adafocus_v1"]["machine"] = {"cpu": "B"}
    del summaries["adafocus_v2"]["machine"]
    lines = findings(summaries)
    assert any("different machines" in line for line in lines)
    assert any("machine of adafocus_v2 was not recorded" in line for line in lines)


def _record(folder: Path, seed: int, top1: float, hit_rate: float | None = None) -> None:
    """A run's record as compare.py keeps it (summary.json and config.json), with what Result.load reads."""
    folder.mkdir(parents=True)
    test = {"per_step": [{"top1": top1}], "operating_points": [], "videos": 100}
    if hit_rate is not None:
        test["focus"] = {"hit_rate": hit_rate, "iou": hit_rate / 2}
    summary = {"operating_points": [], "test": test, "gmacs_per_frame": 0.02, "gmacs_per_video_full": 0.16}
    (folder / "summary.json").write_text(json.dumps(summary))
    (folder / "config.json").write_text(json.dumps({"patch_size": 40, "seed": seed}))


def test_seeds_are_combined_into_mean_and_spread(tmp_path: Path):
    records = tmp_path / "records"
    for seed, top1, hit in ((0, 0.90, 0.8), (1, 0.80, 0.7), (2, 0.70, 0.6)):
        _record(records / seed_run_name("adafocus_v2", seed, 0), seed, top1, hit)
    _record(records / "adafocus_v2_p48", 0, 0.5)  # another experiment, not a seed of this one
    _record(records / "centre_patch", 0, 0.4, 0.1)
    results = {r.experiment.name: r for r in load_results(records, [BY_NAME["adafocus_v2"], BY_NAME["centre_patch"]])}
    ours = results["adafocus_v2"]
    assert ours.seeds == [0, 1, 2]
    assert abs(ours.top1 - 0.80) < 1e-12 and abs(ours.top1_sd - 0.10) < 1e-12  # sample standard deviation
    assert abs(ours.hit_rate - 0.7) < 1e-12 and ours.exit_top1 == 0.90  # exit points: the first seed's run
    assert results["centre_patch"].seeds == [0] and results["centre_patch"].top1_sd != results["centre_patch"].top1_sd
    row = results_table([ours])[2]
    assert "| 0.800 ± 0.100 | 0, 1, 2 |" in row
    summary = focus_summary(results)
    assert set(summary) == {"adafocus_v2", "centre"}
    assert summary["adafocus_v2"] == {
        "top1_mean": 0.8,
        "top1_sd": 0.1,
        "seeds": [0, 1, 2],
        "hit_rate": 0.7,
        "iou": 0.35,
        "gmacs_per_video": 0.16,
    }
    assert summary["centre"]["top1_sd"] is None
    ours.train_seconds = ours.train_cpu_seconds = 1800.0
    assert compare._cost_line([ours]).startswith("Cost: 3 training runs, 1.5 h of wall-clock and 1.5 h of CPU")
    # The exit aim compares the operating points with the accuracy of the run they come from.
    ours.exit_points = [{"name": "fast", "names": ["fast"], "p": None, "top1": 0.895, "gmacs_per_video": 0.05}]
    (exit_line,) = check_aims({"adafocus_v2": ours}, test_videos=100)
    assert exit_line.startswith("- **Met**") and "at 0.900 (the first seed's run): 69% fewer" in exit_line


def test_each_seed_trains_in_its_own_folder(tmp_path: Path, monkeypatch):
    trained = []
    monkeypatch.setattr(compare, "train", lambda config, stop: trained.append((Path(config.out).name, config.seed)))
    compare.run_experiments({"seed": 3}, [BY_NAME["centre_patch"]], tmp_path, None, [3, 4])
    assert trained == [("centre_patch", 3), ("centre_patch-seed4", 4)]
    trained.clear()
    compare.run_experiments({}, [BY_NAME["oracle_patch"]], tmp_path, None)
    assert trained == [("oracle_patch", 0)]


def test_v1_skipping_runs_are_named_by_their_cost():
    """A record's folder says its cost: the first skipping variant's folder keeps cost 0.05 (its
    records compare across sessions), every other folder ends with its own cost."""
    from training.experiments.compare_v1 import BY_NAME, SKIP_COSTS

    skipping = {name: e.changes["v1_skip_cost"] for name, e in BY_NAME.items() if "v1_skip_cost" in e.changes}
    assert sorted(skipping.values()) == sorted(SKIP_COSTS) and len(set(skipping)) == len(SKIP_COSTS)
    assert skipping["adafocus_v1_skip"] == 0.05
    for name, cost in skipping.items():
        if name != "adafocus_v1_skip":
            assert float(name.removeprefix("adafocus_v1_skip_")) == cost
