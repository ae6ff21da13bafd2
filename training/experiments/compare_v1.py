"""AdaFocus V1 against AdaFocusV2 on one dataset: training time, accuracy, GMACs; one report.

    python training/compare_v1.py                    # synthetic benchmark -> docs/results/v1-vs-v2.md
    python training/compare_v1.py --report-only      # rewrite the report from the finished runs
    python training/compare_v1.py --config base.toml --runs runs/mine --report docs/results/mine-v1-v2.md

The runs share the base configuration (same backbones, patch size, frames, data, seed) and
live beside ``training/compare.py``'s in ``RUNS`` (the AdaFocusV2 run is the same one, reused
when finished). Training time is each run's wall-clock training time (all four stages for
V1), so compare only runs made on the same machine: the report lists every run's machine and
says so when they differ. Like ``compare.py``, the report is written from records of the
runs' ``summary.json`` / ``config.json`` kept next to it.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from training.engine.commands import log
from training.experiments.compare import (
    Experiment,
    comparison_command,
    records_folder,
    training_seconds,
    update_records,
)

# The frame-skipping variants' reward cost of focusing on a frame: a sweep from a cost that a
# patch nearly always pays for to one that pays only where a patch adds a fifth of the true
# class's probability (the accuracy-vs-frames-focused curve of issue 24). The first sweep
# (0.02, 0.05, 0.1, 0.2) went from every frame focused to one in two to none between 0.05 and
# 0.2; 0.07 and 0.14 fill that range.
SKIP_COSTS = (0.02, 0.05, 0.07, 0.1, 0.14, 0.2)
# A sweep is "not all-or-nothing" when at least two costs focus on an intermediate share of frames.
INTERMEDIATE_FOCUS = (0.05, 0.95)


def _skip_experiment(cost: float) -> Experiment:
    # (0.05 keeps the folder name of the first skipping variant, so its records stay comparable.)
    name = "adafocus_v1_skip" if cost == 0.05 else f"adafocus_v1_skip_{cost:g}"
    return Experiment(
        name,
        f"AdaFocus V1 with frame skipping (cost {cost:g})",
        "adafocus_v1",
        {"method": "adafocus_v1", "v1_skip_cost": cost},
    )


EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("adafocus_v2", "AdaFocusV2 (one stage)", "adafocus_v2", {}),
    Experiment("adafocus_v1", "AdaFocus V1 (four stages, PPO, 7x7 grid)", "adafocus_v1", {"method": "adafocus_v1"}),
    *(_skip_experiment(cost) for cost in SKIP_COSTS),
)
BY_NAME = {experiment.name: experiment for experiment in EXPERIMENTS}


def _minutes(seconds: float) -> str:
    return "not recorded" if seconds != seconds else f"{seconds / 60:.1f} min"  # NaN: older runs


def _point(summary: dict[str, Any], name: str) -> dict[str, Any] | None:
    named = {(p["name"], p["p"]) for p in summary["operating_points"] if name in p["names"]}
    return next((p for p in summary["test"]["operating_points"] if (p["name"], p["p"]) in named), None)


def row(experiment: Experiment, summary: dict[str, Any]) -> list[str]:
    test = summary["test"]
    gmacs_all = test.get("gmacs_per_video_all_frames", summary["gmacs_per_video_full"])
    cells = [experiment.label, _minutes(training_seconds(summary)), _minutes(training_seconds(summary, cpu=True))]
    stages = summary.get("stage_seconds")
    cells.append(" / ".join(f"{s / 60:.1f}" for s in stages) if stages else "-")
    cells += [f"{gmacs_all:.4f}", f"{test['per_step'][-1]['top1']:.3f}"]
    for name in ("balanced", "fast"):
        point = _point(summary, name)
        cells += [f"{point['gmacs_per_video']:.4f}", f"{point['top1']:.3f}"] if point else ["-", "-"]
    cells.append(f"{test['focus_rate']:.2f}" if "focus_rate" in test else "1.00")
    return cells


def findings(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """The comparisons the report states, computed from the figures."""
    lines = []
    v2, v1 = summaries.get("adafocus_v2"), summaries.get("adafocus_v1")
    if v2 and v1:
        ratio = training_seconds(v1) / training_seconds(v2)
        cpu_ratio = training_seconds(v1, cpu=True) / training_seconds(v2, cpu=True)
        difference = v2["test"]["per_step"][-1]["top1"] - v1["test"]["per_step"][-1]["top1"]
        cpu_text = f"{cpu_ratio:.2f}x its CPU time" if cpu_ratio == cpu_ratio else "CPU time not recorded for both"
        lines.append(
            f"- Training time: V1's four stages took {ratio:.2f}x V2's wall-clock time ({cpu_text}); "
            f"the papers report V2 reaching higher accuracy in about 2.2-2.6x less time."
        )
        lines.append(
            f"- Accuracy with every frame: V2 {abs(difference) * 100:.1f} points "
            f"{'above' if difference >= 0 else 'below'} V1 (top-1 {v2['test']['per_step'][-1]['top1']:.3f} vs "
            f"{v1['test']['per_step'][-1]['top1']:.3f}), at about the same GMACs per frame "
            f"({v2['gmacs_per_frame']:.4f} vs {v1['gmacs_per_frame']:.4f})."
        )
    for experiment in EXPERIMENTS:
        skip = summaries.get(experiment.name) if "v1_skip_cost" in experiment.changes else None
        if not (v1 and skip):
            continue
        saved = round(1 - skip["test"]["gmacs_per_video_all_frames"] / v1["gmacs_per_video_full"], 4) + 0.0  # no -0
        difference = v1["test"]["per_step"][-1]["top1"] - skip["test"]["per_step"][-1]["top1"]
        lines.append(
            f"- Frame skipping (cost {experiment.changes['v1_skip_cost']:g}): focus on "
            f"{skip['test']['focus_rate']:.0%} of the frames, {saved:.0%} fewer GMACs per video than V1 with "
            f"every frame, {difference * 100:+.1f} points of accuracy lost."
        )
    lines += skip_sweep_finding(summaries)
    unrecorded = [name for name, summary in summaries.items() if "machine" not in summary]
    machines = {json.dumps(s["machine"], sort_keys=True) for s in summaries.values() if "machine" in s}
    if len(machines) > 1:
        lines.append("- **The runs were made on different machines: their training times do not compare.**")
    if unrecorded:
        lines.append(
            f"- The machine of {', '.join(unrecorded)} was not recorded (a run older than that record): "
            "compare its training time only if you know it ran on the same machine."
        )
    return lines


def skip_sweep(summaries: dict[str, dict[str, Any]]) -> list[tuple[float, float, float]]:
    """``(cost, share of test frames focused, top-1)`` of each frame-skipping run recorded, by cost."""
    points = []
    for experiment in EXPERIMENTS:
        summary = summaries.get(experiment.name)
        if summary is not None and "v1_skip_cost" in experiment.changes:
            test = summary["test"]
            points.append(
                (experiment.changes["v1_skip_cost"], test.get("focus_rate", 1.0), test["per_step"][-1]["top1"])
            )
    return sorted(points)


def skip_sweep_finding(summaries: dict[str, dict[str, Any]]) -> list[str]:
    """Is frame skipping more than all-or-nothing: do at least two costs give an intermediate rate?"""
    sweep = skip_sweep(summaries)
    if len(sweep) < 2:
        return []
    low, high = INTERMEDIATE_FOCUS
    intermediate = [cost for cost, rate, _ in sweep if low <= rate <= high]
    met = len(intermediate) >= 2
    rates = ", ".join(f"{rate:.0%} at cost {cost:g}" for cost, rate, _ in sweep)
    return [
        f"- **{'Met' if met else 'Not met'}**: frame skipping is not all-or-nothing (at least two costs focus on "
        f"{low:.0%}-{high:.0%} of the frames): frames focused {rates}; {len(intermediate)} of {len(sweep)} "
        "intermediate."
    ]


def plot_skip_sweep(summaries: dict[str, dict[str, Any]], path: Path) -> Path | None:
    """Accuracy vs share of frames focused: the skipping sweep's curve, V1 and V2 with every frame."""
    sweep = skip_sweep(summaries)
    if not sweep:
        return None
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(6.5, 4.5), dpi=120)
    axes.plot([100 * r for _, r, _ in sweep], [100 * a for _, _, a in sweep], "-o", label="V1 with frame skipping")
    for cost, rate, top1 in sweep:
        axes.annotate(
            f"cost {cost:g}", (100 * rate, 100 * top1), textcoords="offset points", xytext=(4, -10), fontsize=7
        )
    for name, marker, label in (("adafocus_v1", "s", "V1, every frame"), ("adafocus_v2", "*", "V2, every frame")):
        if name in summaries:
            axes.plot([100], [100 * summaries[name]["test"]["per_step"][-1]["top1"]], marker, markersize=9, label=label)
    axes.set_xlabel("frames focused (% of test frames)")
    axes.set_ylabel("top-1 accuracy on the test split (%)")
    axes.set_title("AdaFocus V1 frame skipping: accuracy vs frames focused")
    axes.grid(True, alpha=0.3)
    axes.legend(fontsize=8, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def write_report(runs: Path, report: Path, command: str) -> Path:
    records = records_folder(report)
    for name in update_records(runs, records, list(EXPERIMENTS)):
        log(f"{name}: record updated from {runs / name}")
    summaries = {
        e.name: json.loads((records / e.name / "summary.json").read_text())
        for e in EXPERIMENTS
        if (records / e.name / "summary.json").is_file()
    }
    if not summaries:
        raise FileNotFoundError(f"no finished runs under {runs} or {records}; run without --report-only first")
    first = next(iter(summaries))
    config = json.loads((records / first / "config.json").read_text())
    lines = [
        f"# Results: AdaFocus V1 vs AdaFocusV2 ({report.stem})",
        "",
        f"Written by `{command}` from the runs under `{runs}`, recorded in `{records}/`; every figure",
        "comes from their `summary.json` files (test split; GMACs computed from the models).",
        f"Data: {config['data'] or 'the synthetic benchmark (docs/synthetic.md)'}; "
        f"{summaries[first]['test']['videos']} test videos; T = {config['num_frames']}, frame {config['frame_size']}, "
        f"glance {config['glance_size']}, patch {config['patch_size']}; global `{config['global_model']}`, "
        f"local `{config['local_model']}` {json.dumps(config['local_kwargs'])}; V2: {config['epochs']} epochs; "
        f"V1 stages (epochs): {config.get('v1_stage_epochs', [1, 3, 2, 1])}; seed {config['seed']}.",
        "",
        "| run | training time | CPU time | per stage (min) | GMACs/video (all frames) | top-1 (all frames) "
        "| balanced exit: GMACs/video | top-1 | fast exit: GMACs/video | top-1 | frames focused |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
        *("| " + " | ".join(row(BY_NAME[name], summary)) + " |" for name, summary in summaries.items()),
        "",
        *_sweep_lines(summaries, report),
        "## What it shows",
        "",
        *findings(summaries),
        "",
        "Training time is wall-clock, so it includes any other work the machine did meanwhile;",
        "CPU time (the training process and its data-loading workers) does not.",
        "",
        "## Machines",
        "",
        *(f"- {name}: {json.dumps(summary.get('machine', 'not recorded'))}" for name, summary in summaries.items()),
    ]
    missing = [e.name for e in EXPERIMENTS if e.name not in summaries]
    if missing:
        lines += ["", f"Not run (yet): {', '.join(missing)}."]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    return report


def _sweep_lines(summaries: dict[str, dict[str, Any]], report: Path) -> list[str]:
    image = plot_skip_sweep(summaries, report.with_suffix(".png"))
    if image is None:
        return []
    return [
        "## Frame skipping: accuracy vs frames focused",
        "",
        f"![accuracy vs frames focused]({image.name})",
        "",
        "One V1 run per cost of focusing (`--v1-skip-cost`); the skip head reads the classifier's",
        "confidence after the previous frame (docs/adafocus.md). Every frame is still glanced at.",
        "",
    ]


def main(argv: list[str] | None = None) -> int:
    return comparison_command(
        argv,
        "python training/compare_v1.py",
        __doc__.split("\n")[0],
        EXPERIMENTS,
        Path("docs/results/v1-vs-v2.md"),
        write_report,
    )


if __name__ == "__main__":
    raise SystemExit(main())
