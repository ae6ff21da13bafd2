"""Train AdaFocusV2, its baselines and its ablations on one dataset; write the accuracy-vs-GMACs report.

    python training/compare.py                                # synthetic benchmark: runs/compare -> docs/results/
    python training/compare.py --report-only                  # rewrite the report from the finished runs
    python training/compare.py --only adafocus_v2 full_frame  # a subset
    python training/compare.py --config base.toml --set epochs=4 --runs runs/mine --report docs/results/mine.md
    python training/compare.py --only adafocus_v2 centre_patch --seeds 0 1 2 --summary docs/results/focus.json

Every experiment is one ``python training/train.py`` run in ``RUNS/<name>`` that shares the base
configuration (``--config`` file and ``--set key=value`` entries, on top of the defaults) and
changes only what the experiment is about (:data:`EXPERIMENTS`). A finished run with the same
configuration is reused and an interrupted one resumes, so rerunning the command after a kill
loses at most one checkpoint interval. The report (Markdown table + PNG plot, test split) is
computed from the runs' ``summary.json`` files, nothing typed in; it states each aim of the
method as met or not met with the figures.

Run folders are large and not versioned, so the report keeps a record of what it was built from:
each finished run's ``summary.json`` and ``config.json`` are copied next to the report
(``docs/results/synthetic/<name>/``) and the report is written from those records. A record is
replaced whenever its run folder holds a newer finished run.

``--seeds`` trains each experiment once per seed (``RUNS/<name>`` for the base configuration's
seed, ``RUNS/<name>-seed<k>`` for the others); the report shows the mean and spread over every
seed recorded, and ``--summary`` writes the methods' figures as JSON (issue 24's ``focus.json``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import shutil
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from training.adafocus.config import TrainConfig
from training.adafocus.run import train
from training.engine.commands import StopRequest, log, run_command
from training.engine.options import from_mapping, load_config_file
from training.engine.resume import config_differences


def training_seconds(summary: dict[str, Any], cpu: bool = False) -> float:
    """Wall-clock (or CPU) training time of a run over all its sessions. Runs summarised before
    that was recorded give their stages' sum (V1) or their last session's time (the whole run
    unless it was resumed); NaN where nothing was recorded."""
    key = "train_cpu_seconds" if cpu else "train_seconds"
    if key in summary:
        return float(summary[key])
    stages = summary.get("stage_cpu_seconds" if cpu else "stage_seconds")
    if stages:
        return float(sum(stages))
    return float(summary.get(f"{key}_this_session", "nan"))


@dataclass(frozen=True)
class Experiment:
    """One training run of the comparison: a name (its folder), a label and its option changes."""

    name: str
    label: str
    group: str  # "adafocus_v2", "baseline" or "ablation"
    changes: dict[str, Any]


# In the order they run: what the aims need first, so a partial comparison is already useful.
EXPERIMENTS: tuple[Experiment, ...] = (
    Experiment("adafocus_v2", "AdaFocusV2", "adafocus_v2", {}),  # the base configuration's patch size
    Experiment("full_frame", "local network on full frames", "baseline", {"variant": "full_frame"}),
    Experiment(
        "no_random_patch_branch", "ablation: no random-patch branch", "ablation", {"random_patch_branch": False}
    ),
    Experiment("no_auxiliary_losses", "ablation: no auxiliary losses", "ablation", {"auxiliary_losses": False}),
    Experiment("no_stop_gradient", "ablation: no stop-gradient", "ablation", {"stop_gradient": False}),
    Experiment("centre_patch", "centre patch", "baseline", {"variant": "centre_patch"}),
    Experiment("random_patch", "random patch", "baseline", {"variant": "random_patch"}),
    # A patch centred on the ground-truth target: needs target boxes (benchmark v2 writes them).
    Experiment("oracle_patch", "oracle patch (on the target)", "baseline", {"variant": "oracle_patch"}),
    # (No local network to start from pre-trained weights, whatever the base configuration says.)
    Experiment("glance_only", "glance only", "baseline", {"variant": "glance_only", "local_weights": None}),
    # The additions to the paper's recipe that benchmark v2 needs (docs/adafocus.md, "Why the policy
    # stayed at the centre"), each taken away in turn from a base configuration that has them all.
    Experiment("no_policy_noise", "ablation: no exploration noise", "ablation", {"policy_noise": 0.0}),
    Experiment("no_crop_gradient_blur", "ablation: no blurred crop gradient", "ablation", {"crop_gradient_blur": 0.0}),
    Experiment(
        "policy_head_at_centre", "ablation: policy head at zero (centre)", "ablation", {"policy_head_init": "centre"}
    ),
    Experiment("paper_policy_lr", "ablation: the paper's policy lr ratio (0.1)", "ablation", {"lr_policy": 0.1}),
    Experiment("no_local_pretraining", "ablation: no pre-trained local network", "ablation", {"local_weights": None}),
    # AdaFocus (V1): stages with a PPO policy over a 7x7 grid (docs/adafocus.md).
    Experiment("adafocus_v1", "AdaFocus V1 (PPO, 7x7 grid)", "baseline", {"method": "adafocus_v1"}),
    Experiment("adafocus_v2_p48", "AdaFocusV2", "adafocus_v2", {"patch_size": 48}),
    Experiment("adafocus_v2_p80", "AdaFocusV2", "adafocus_v2", {"patch_size": 80}),
)
BY_NAME = {experiment.name: experiment for experiment in EXPERIMENTS}

# The aims of the method on this benchmark (issue 4), checked from the results.
COMPUTE_SHARE = 1 / 3  # AdaFocusV2 at most a third of the full-frame network's GMACs ...
EXIT_SAVING = 0.40  # ... and conditional exit saves at least 40% more ...
EXIT_MAX_DROP = 0.01  # ... for at most one point of accuracy.


# -- running ---------------------------------------------------------------------------------
def seed_run_name(name: str, seed: int, base_seed: int) -> str:
    """The folder of ``name``'s run with ``seed``: ``name`` for the base configuration's seed,
    ``name-seed<k>`` for the others (so a one-seed comparison keeps its folders)."""
    return name if seed == base_seed else f"{name}-seed{seed}"


def seed_runs(folder: Path, name: str) -> list[str]:
    """The folders under ``folder`` that hold runs of experiment ``name``: the base seed's first."""
    found = [name] if (folder / name).is_dir() else []
    prefix = f"{name}-seed"
    others = [p.name for p in folder.glob(f"{prefix}*") if p.is_dir() and p.name[len(prefix) :].isdigit()]
    return found + sorted(others, key=lambda n: int(n[len(prefix) :]))


def experiment_config(base: dict[str, Any], experiment: Experiment, runs: Path, seed: int | None = None) -> TrainConfig:
    """The run's configuration: the base, the experiment's changes, its folder (and ``seed``)."""
    settings = {**base, **experiment.changes}
    base_seed = int(settings.get("seed", TrainConfig.seed))
    seed = base_seed if seed is None else seed
    name = seed_run_name(experiment.name, seed, base_seed)
    return from_mapping(TrainConfig, {**settings, "seed": seed, "out": str(runs / name)})


def is_finished(config: TrainConfig) -> bool:
    """A run folder whose summary was written by a run of exactly this configuration."""
    run = Path(config.out)
    if not (run / "summary.json").is_file() or not (run / "config.json").is_file():
        return False
    saved = json.loads((run / "config.json").read_text())
    defaults = json.loads(json.dumps(dataclasses.asdict(TrainConfig())))
    return not config_differences(saved, json.loads(json.dumps(dataclasses.asdict(config))), defaults=defaults)


def run_experiments(
    base: dict[str, Any], experiments: list[Experiment], runs: Path, stop: StopRequest, seeds: list[int] | None = None
) -> None:
    """Train (or reuse) every experiment with every seed (``None``: the base configuration's), a
    seed at a time: every experiment's first seed before any second, so a partial run compares."""
    plan = [(e, seed) for seed in (seeds or [None]) for e in experiments]
    for number, (experiment, seed) in enumerate(plan, 1):
        config = experiment_config(base, experiment, runs, seed)
        what = f"[{number}/{len(plan)}] {Path(config.out).name}"
        if is_finished(config):
            log(f"{what}: finished earlier, reused")
            continue
        log(f"{what}: training ({experiment.label}, seed {config.seed})")
        train(config, stop)


# -- the report ------------------------------------------------------------------------------
@dataclass
class Result:
    """What the report needs from one finished run (test split)."""

    experiment: Experiment
    patch_size: int
    gmacs_per_frame: float
    gmacs_per_video: float  # every frame processed
    top1: float  # after the last frame
    exit_points: list[dict[str, Any]]  # test accuracy and GMACs of each calibrated operating point
    train_seconds: float
    train_cpu_seconds: float = float("nan")  # not recorded by older runs
    hit_rate: float = float("nan")  # share of test frames whose patch holds half the target (NaN: no boxes)
    iou: float = float("nan")  # mean IoU of patch and target
    # Over seeds (``combine_seeds``): top1, hit_rate, iou and the times are means; the exit points
    # and ``exit_top1`` are the first seed's run (operating points are calibrated per run).
    top1_sd: float = float("nan")  # sample standard deviation of top-1 over seeds (NaN: one seed)
    seeds: list[int] = dataclasses.field(default_factory=list)
    exit_top1: float | None = None  # the top-1 the exit points belong to (None: ``top1``)

    @classmethod
    def load(cls, experiment: Experiment, run: Path) -> Result:
        summary = json.loads((run / "summary.json").read_text())
        config = json.loads((run / "config.json").read_text())
        seed = int(config.get("seed", 0))
        names = {(p["name"], p["p"]): p["names"] for p in summary["operating_points"]}
        points = [{**p, "names": names.get((p["name"], p["p"]), [])} for p in summary["test"]["operating_points"]]
        focus = summary["test"].get("focus") or {}
        return cls(
            experiment=experiment,
            patch_size=config["patch_size"],
            gmacs_per_frame=summary["gmacs_per_frame"],
            gmacs_per_video=summary["gmacs_per_video_full"],
            top1=summary["test"]["per_step"][-1]["top1"],
            exit_points=points,
            train_seconds=training_seconds(summary),
            train_cpu_seconds=training_seconds(summary, cpu=True),
            hit_rate=float(focus.get("hit_rate", "nan")),
            iou=float(focus.get("iou", "nan")),
            seeds=[seed],
        )

    @property
    def label(self) -> str:
        if self.experiment.group == "adafocus_v2":
            return f"{self.experiment.label}, patch {self.patch_size}"
        return self.experiment.label

    def named_point(self, name: str) -> dict[str, Any] | None:
        return next((p for p in self.exit_points if name in p["names"]), None)


RECORD_FILES = ("summary.json", "config.json")


def records_folder(report: Path) -> Path:
    """Where the report keeps the records of its runs: ``docs/results/synthetic.md`` -> ``.../synthetic/``."""
    return report.with_suffix("")


def update_records(runs: Path, records: Path, experiments: list[Experiment]) -> list[str]:
    """Copy each finished run's summary and configuration into ``records``; the names updated."""
    updated = []
    for experiment in experiments:
        for folder in seed_runs(runs, experiment.name) if runs.is_dir() else []:
            run, record = runs / folder, records / folder
            if not all((run / name).is_file() for name in RECORD_FILES):
                continue
            if all(
                (record / n).is_file() and (record / n).read_bytes() == (run / n).read_bytes() for n in RECORD_FILES
            ):
                continue
            record.mkdir(parents=True, exist_ok=True)
            for name in RECORD_FILES:
                shutil.copyfile(run / name, record / name)
            updated.append(folder)
    return updated


def _mean(values: list[float]) -> float:
    present = [v for v in values if v == v]
    return sum(present) / len(present) if present else float("nan")


def combine_seeds(runs: list[Result]) -> Result:
    """One result from an experiment's runs with different seeds: means, and top-1's spread."""
    if len(runs) == 1:
        return runs[0]
    top1 = [r.top1 for r in runs]
    mean = sum(top1) / len(top1)
    spread = (sum((v - mean) ** 2 for v in top1) / (len(top1) - 1)) ** 0.5
    first = runs[0]
    return dataclasses.replace(
        first,
        top1=mean,
        top1_sd=spread,
        seeds=[seed for r in runs for seed in r.seeds],
        exit_top1=first.top1,
        hit_rate=_mean([r.hit_rate for r in runs]),
        iou=_mean([r.iou for r in runs]),
        train_seconds=_mean([r.train_seconds for r in runs]),
        train_cpu_seconds=_mean([r.train_cpu_seconds for r in runs]),
        gmacs_per_video=_mean([r.gmacs_per_video for r in runs]),
    )


def load_results(records: Path, experiments: list[Experiment]) -> list[Result]:
    """Each experiment's result from its records, combined over the seeds recorded."""
    results = []
    for experiment in experiments:
        names = [n for n in seed_runs(records, experiment.name) if (records / n / "summary.json").is_file()]
        if names:
            results.append(combine_seeds([Result.load(experiment, records / n) for n in names]))
    return results


def _cheapest_within(result: Result, max_drop: float) -> dict[str, Any] | None:
    """The cheapest test operating point within ``max_drop`` of the all-frames accuracy (of the run
    the points belong to)."""
    reference = result.top1 if result.exit_top1 is None else result.exit_top1
    good = [p for p in result.exit_points if p["top1"] >= reference - max_drop - 1e-12]
    return min(good, key=lambda p: p["gmacs_per_video"], default=None)


def _standard_error(accuracy: float, videos: int) -> float:
    return (accuracy * (1 - accuracy) / max(videos, 1)) ** 0.5


def _point_label(point: dict[str, Any]) -> str:
    """An operating point's name, or its place in the budget sweep when it has none."""
    return "/".join(point.get("names") or []) or point.get("name") or f"p={point['p']:.3g}"


def compare_with_baselines(results: dict[str, Result], test_videos: int) -> list[str]:
    """Not an aim of the issue, but what a reader needs: does the policy beat fixed patches?"""
    ours = results.get("adafocus_v2")
    lines = []
    for name in ("centre_patch", "random_patch"):
        baseline = results.get(name)
        if ours is None or baseline is None:
            continue
        errors = (_standard_error(ours.top1, test_videos), _standard_error(baseline.top1, test_videos))
        margin = 2 * (errors[0] ** 2 + errors[1] ** 2) ** 0.5
        gain = ours.top1 - baseline.top1
        verdict = "better than" if gain > margin else "worse than" if -gain > margin else "no different from"
        lines.append(
            f"- AdaFocusV2's policy is {verdict} a {baseline.experiment.label} on this benchmark: top-1 "
            f"{ours.top1:.3f} vs {baseline.top1:.3f} at {ours.gmacs_per_video:.4f} vs "
            f"{baseline.gmacs_per_video:.4f} GMACs per video (two standard errors: {margin * 100:.1f} points)."
        )
    return lines


GATE_MARGIN = 0.15  # issue 24: the oracle beats the centre and the random patch by 15 points each


def check_gate(results: dict[str, Result]) -> list[str]:
    """Issue 24's gate, checked before any method is compared: does location matter on this
    benchmark? The oracle patch (on the ground-truth target) must beat the centre and the random
    patch by at least 15 points of top-1 each, with the same local network and budget."""
    oracle = results.get("oracle_patch")
    lines = []
    for name in ("centre_patch", "random_patch"):
        baseline = results.get(name)
        if oracle is None or baseline is None:
            continue
        gain = oracle.top1 - baseline.top1
        met = gain >= GATE_MARGIN - 1e-12
        lines.append(
            f"- **{'Met' if met else 'Not met'}**: the oracle patch beats a {baseline.experiment.label} by at "
            f"least {GATE_MARGIN * 100:.0f} points: top-1 {oracle.top1:.3f} vs {baseline.top1:.3f} "
            f"({gain * 100:+.1f} points; hit rate {oracle.hit_rate:.3f} vs {baseline.hit_rate:.3f})."
        )
    return lines


POLICY_MARGIN = 0.10  # issue 24: the learned policy beats each fixed patch by 10 points ...
ORACLE_GAP = 0.03  # ... and is within 3 points of the oracle


def check_policy_aims(results: dict[str, Result]) -> list[str]:
    """Issue 24's aims for the learned policy, on a benchmark that passed the gate."""
    ours = results.get("adafocus_v2")
    if ours is None:
        return []
    lines = []
    for name in ("centre_patch", "random_patch"):
        baseline = results.get(name)
        if baseline is not None:
            gain = ours.top1 - baseline.top1
            lines.append(
                f"- **{'Met' if gain >= POLICY_MARGIN - 1e-12 else 'Not met'}**: AdaFocusV2 beats a "
                f"{baseline.experiment.label} by at least {POLICY_MARGIN * 100:.0f} points: top-1 {ours.top1:.3f} "
                f"vs {baseline.top1:.3f} ({gain * 100:+.1f} points; hit rate {ours.hit_rate:.3f} vs "
                f"{baseline.hit_rate:.3f})."
            )
    oracle = results.get("oracle_patch")
    if oracle is not None:
        gap = oracle.top1 - ours.top1
        lines.append(
            f"- **{'Met' if gap <= ORACLE_GAP + 1e-12 else 'Not met'}**: AdaFocusV2 within {ORACLE_GAP * 100:.0f} "
            f"points of the oracle patch: top-1 {ours.top1:.3f} vs {oracle.top1:.3f} ({gap * 100:.1f} points behind; "
            f"hit rate {ours.hit_rate:.3f} vs {oracle.hit_rate:.3f})."
        )
    return lines


def check_aims(results: dict[str, Result], test_videos: int) -> list[str]:
    """One line per aim: met or not met, with the figures."""
    lines: list[str] = []
    ours, full = results.get("adafocus_v2"), results.get("full_frame")
    if ours and full:
        share = ours.gmacs_per_video / full.gmacs_per_video
        met = ours.top1 >= full.top1 and share <= COMPUTE_SHARE
        lines.append(
            f"- **{'Met' if met else 'Not met'}**: AdaFocusV2 at least as accurate as the full-frame local network "
            f"at no more than a third of its GMACs: top-1 {ours.top1:.3f} vs {full.top1:.3f}, "
            f"{ours.gmacs_per_video:.4f} vs {full.gmacs_per_video:.4f} GMACs per video ({share:.0%})."
        )
    if ours:
        point = _cheapest_within(ours, EXIT_MAX_DROP)
        saving = 1 - point["gmacs_per_video"] / ours.gmacs_per_video if point else 0.0
        met = point is not None and saving >= EXIT_SAVING
        # Over seeds, the operating points are the first seed's run's: compare with its accuracy.
        reference = ours.top1 if ours.exit_top1 is None else ours.exit_top1
        whose = "" if ours.exit_top1 is None else " (the first seed's run)"
        figures = (
            f"the cheapest operating point within {EXIT_MAX_DROP:.0%} of the all-frames accuracy "
            f"({_point_label(point)}) spends {point['gmacs_per_video']:.4f} GMACs per video "
            f"at top-1 {point['top1']:.3f} "
            f"vs {ours.gmacs_per_video:.4f} at {reference:.3f}{whose}: {saving:.0%} fewer"
            if point
            else "no operating point stays within the accuracy margin"
        )
        lines.append(
            f"- **{'Met' if met else 'Not met'}**: conditional exit saves at least {EXIT_SAVING:.0%} of the GMACs "
            f"for at most {EXIT_MAX_DROP * 100:.0f} point of accuracy: {figures}."
        )
        for name in (e.name for e in EXPERIMENTS if e.group == "ablation"):
            ablation = results.get(name)
            if ablation is None:
                continue
            # Two standard errors of the difference of two accuracies on the same number of videos.
            errors = (_standard_error(ours.top1, test_videos), _standard_error(ablation.top1, test_videos))
            margin = 2 * (errors[0] ** 2 + errors[1] ** 2) ** 0.5
            drop = ours.top1 - ablation.top1
            met = drop > margin
            lines.append(
                f"- **{'Met' if met else 'Not met'}**: {ablation.experiment.label.removeprefix('ablation: ')} "
                f"measurably worse than the full scheme: top-1 {ablation.top1:.3f} vs {ours.top1:.3f} "
                f"(drop {drop * 100:+.1f} points; measurable means more than two standard errors, {margin * 100:.1f})."
            )
    return lines


def results_table(results: list[Result]) -> list[str]:
    lines = [
        "| run | patch | GMACs/frame | GMACs/video (all frames) | top-1 (all frames) | seeds "
        "| balanced exit: GMACs/video | top-1 | fast exit: GMACs/video | top-1 | hit rate | IoU "
        "| training time | CPU time |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in results:
        cells = [r.label, str(r.patch_size) if r.experiment.name != "full_frame" else "full frame"]
        top1 = f"{r.top1:.3f}" if r.top1_sd != r.top1_sd else f"{r.top1:.3f} ± {r.top1_sd:.3f}"
        cells += [f"{r.gmacs_per_frame:.4f}", f"{r.gmacs_per_video:.4f}", top1, ", ".join(map(str, r.seeds)) or "-"]
        for name in ("balanced", "fast"):
            point = r.named_point(name)
            cells += [f"{point['gmacs_per_video']:.4f}", f"{point['top1']:.3f}"] if point else ["-", "-"]
        # Where the patches looked (benchmark clips with target boxes; '-': no boxes, or no patch).
        cells += ["-" if r.hit_rate != r.hit_rate else f"{r.hit_rate:.3f}", "-" if r.iou != r.iou else f"{r.iou:.3f}"]
        cells.append(f"{r.train_seconds / 60:.1f} min")
        cpu = r.train_cpu_seconds
        cells.append("-" if cpu != cpu else f"{cpu / 60:.1f} min")  # NaN: not recorded
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def plot(results: list[Result], path: Path, title: str) -> None:
    """Accuracy vs GMACs per video: exit curves for AdaFocusV2, markers for everything else."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt
    from matplotlib import ticker

    figure, axes = plt.subplots(figsize=(7.5, 5), dpi=120)
    markers = {"baseline": "s", "ablation": "^"}
    for r in results:
        if r.experiment.group == "adafocus_v2":
            curve = sorted(r.exit_points, key=lambda p: p["gmacs_per_video"])
            (line,) = axes.plot(
                [p["gmacs_per_video"] for p in curve],
                [100 * p["top1"] for p in curve],
                "-o",
                markersize=3,
                label=f"{r.label} (exit curve)",
            )
            axes.plot([r.gmacs_per_video], [100 * r.top1], "*", markersize=12, color=line.get_color())
        else:
            axes.plot([r.gmacs_per_video], [100 * r.top1], markers[r.experiment.group], markersize=8, label=r.label)
    axes.set_xscale("log")
    axes.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    axes.xaxis.set_major_formatter(ticker.FormatStrFormatter("%g"))
    axes.xaxis.set_minor_formatter(ticker.NullFormatter())  # log minor labels overlap
    axes.set_xlabel("GMACs per video (log scale)")
    axes.set_ylabel("top-1 accuracy on the test split (%)")
    axes.set_title(title)
    axes.grid(True, which="both", alpha=0.3)
    axes.legend(fontsize=7, loc="lower right")
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)


def _cost_line(results: list[Result]) -> str:
    """What the recorded runs cost together (training only, every seed)."""
    runs = sum(max(len(r.seeds), 1) for r in results)
    wall = sum(r.train_seconds * max(len(r.seeds), 1) for r in results if r.train_seconds == r.train_seconds)
    cpu = sum(r.train_cpu_seconds * max(len(r.seeds), 1) for r in results if r.train_cpu_seconds == r.train_cpu_seconds)
    return (
        f"Cost: {runs} training runs, {wall / 3600:.1f} h of wall-clock and {cpu / 3600:.1f} h of CPU time "
        "together (training only: evaluation, data generation and pre-training not counted)."
    )


def write_report(runs: Path, report: Path, command: str) -> Path:
    records = records_folder(report)
    for name in update_records(runs, records, list(EXPERIMENTS)):
        log(f"{name}: record updated from {runs / name}")
    results = load_results(records, list(EXPERIMENTS))
    if not results:
        raise FileNotFoundError(f"no finished runs under {runs} or {records}; run without --report-only first")
    first = json.loads((records / results[0].experiment.name / "summary.json").read_text())
    config = json.loads((records / results[0].experiment.name / "config.json").read_text())
    test_videos = first["test"]["videos"]
    image = report.with_suffix(".png")
    plot(results, image, f"{report.stem}: accuracy vs compute ({test_videos} test videos)")
    missing = [e.name for e in EXPERIMENTS if e.name not in {r.experiment.name for r in results}]
    lines = [
        f"# Results: {report.stem}",
        "",
        f"Written by `{command}` from the runs under `{runs}`, recorded in `{records}/`: every figure comes",
        "from their `summary.json` files (test split; GMACs computed from the models by `training/adafocus/costs.py`).",
        f"Data: {config['data'] or 'the synthetic benchmark (docs/synthetic.md)'}; {test_videos} test videos; "
        f"T = {config['num_frames']} frames, frame {config['frame_size']}, glance {config['glance_size']}, "
        f"global `{config['global_model']}` {json.dumps(config['global_kwargs'])}, "
        f"local `{config['local_model']}` {json.dumps(config['local_kwargs'])}, {config['epochs']} epochs"
        + (f", local network started from `{config['local_weights']}`" if config.get("local_weights") else "")
        + ".",
        "",
        f"![accuracy vs GMACs per video]({image.name})",
        "",
        "Stars: AdaFocusV2 with every frame processed; lines: its conditional-exit operating points",
        "(calibrated on the calibration split, applied to the test split).",
        "",
        *results_table(results),
        "",
        "Over several seeds: top-1 is the mean ± the sample standard deviation; hit rate, IoU, GMACs and",
        "times are means; the exit columns and curves are the first seed's run (each run calibrates its",
        "own operating points). The aims below compare means.",
        "",
        _cost_line(results),
        "",
        "Training time: the run's wall-clock time on the machine that trained it, including any time that",
        "machine spent on other work meanwhile; compare it only between runs made in the same conditions.",
        "CPU time (the training process and its data-loading workers) does not count that other work;",
        "'-': not recorded by the run.",
        "",
        "## Aims",
        "",
        *check_aims({r.experiment.name: r for r in results}, test_videos),
    ]
    gate = check_gate({r.experiment.name: r for r in results})
    if gate:
        lines += ["", "## The gate: does the patch's location matter here?", "", *gate]
        policy = check_policy_aims({r.experiment.name: r for r in results})
        if policy:
            lines += ["", "## The learned policy against fixed patches and the oracle", "", *policy]
    baselines = compare_with_baselines({r.experiment.name: r for r in results}, test_videos)
    if baselines:
        lines += ["", "## The policy against fixed patches", "", *baselines]
    if missing:
        lines += ["", f"Not run (yet): {', '.join(missing)}."]
    report.parent.mkdir(parents=True, exist_ok=True)
    report.write_text("\n".join(lines) + "\n")
    return report


# Issue 24's summary file: the methods under these names, with these figures.
FOCUS_METHODS = {
    "adafocus_v2": "adafocus_v2",
    "oracle_patch": "oracle",
    "centre_patch": "centre",
    "random_patch": "random",
    "glance_only": "glance_only",
    "adafocus_v1": "adafocus_v1",
}


def focus_summary(results: dict[str, Result]) -> dict[str, dict[str, Any]]:
    """Per method present: ``top1_mean``, ``top1_sd`` (null for one seed), ``seeds``, ``hit_rate`` and
    ``iou`` (null where no patch was placed or no boxes were there), ``gmacs_per_video`` (every frame)."""

    def number(value: float) -> float | None:
        return None if value != value else round(value, 6)

    return {
        key: {
            "top1_mean": round(r.top1, 6),
            "top1_sd": number(r.top1_sd),
            "seeds": r.seeds,
            "hit_rate": number(r.hit_rate),
            "iou": number(r.iou),
            "gmacs_per_video": round(r.gmacs_per_video, 6),
        }
        for name, key in FOCUS_METHODS.items()
        if (r := results.get(name)) is not None
    }


def write_focus_json(report: Path, path: Path) -> Path:
    """``focus_summary`` of the report's records, written to ``path``."""
    results = {r.experiment.name: r for r in load_results(records_folder(report), list(EXPERIMENTS))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(focus_summary(results), indent=2) + "\n")
    return path


# -- command line ----------------------------------------------------------------------------
def parse_setting(text: str) -> tuple[str, Any]:
    key, sep, value = text.partition("=")
    if not sep:
        raise argparse.ArgumentTypeError(f"--set expects key=value, got {text!r}")
    try:
        return key.replace("-", "_"), json.loads(value)
    except json.JSONDecodeError:
        return key.replace("-", "_"), value  # a plain string


def comparison_command(
    argv: list[str] | None,
    prog: str,
    description: str,
    experiments: tuple[Experiment, ...],
    default_report: Path,
    report_writer: Callable[[Path, Path, str], Path],
    summary_writer: Callable[[Path, Path], Path] | None = None,
) -> int:
    """The command line shared by the comparisons: run (or reuse) ``experiments``, write the report
    (and, with ``summary_writer``, a ``--summary`` JSON file from its records)."""
    by_name = {experiment.name: experiment for experiment in experiments}
    parser = argparse.ArgumentParser(prog=prog, description=description)
    parser.add_argument("--runs", type=Path, default=Path("runs/compare"), help="folder of the runs")
    parser.add_argument("--report", type=Path, default=default_report, help="Markdown report")
    parser.add_argument("--config", type=Path, help="base training configuration (JSON or TOML)")
    parser.add_argument("--set", type=parse_setting, action="append", default=[], metavar="KEY=VALUE")
    parser.add_argument("--only", nargs="+", choices=sorted(by_name), help="run only these experiments")
    parser.add_argument("--report-only", action="store_true", help="write the report from the finished runs")
    parser.add_argument(
        "--seeds",
        type=int,
        nargs="+",
        help="train each experiment with these seeds (folders NAME-seedK beside the base seed's NAME); "
        "default: the base configuration's seed. The report combines every seed recorded",
    )
    if summary_writer is not None:
        parser.add_argument("--summary", type=Path, help="also write the methods' figures as JSON here")
    args = parser.parse_args(argv)

    def work(stop: StopRequest) -> Path:
        base = load_config_file(args.config) if args.config else {}
        base.update(dict(args.set))
        base.setdefault("progress", sys.stderr.isatty())
        from_mapping(TrainConfig, base)  # refuse unknown options before hours of training
        if not args.report_only:
            chosen = [by_name[name] for name in args.only] if args.only else list(experiments)
            run_experiments(base, chosen, args.runs, stop, args.seeds)
        report = report_writer(args.runs, args.report, f"{prog} " + " ".join(argv or sys.argv[1:]))
        if summary_writer is not None and args.summary:
            log(f"wrote {summary_writer(report, args.summary)}")
        return report

    status, report = run_command(work)
    if status == 0:
        print(f"wrote {report}", file=sys.stderr)
    return status


def main(argv: list[str] | None = None) -> int:
    return comparison_command(
        argv,
        "python training/compare.py",
        __doc__.split("\n")[0],
        EXPERIMENTS,
        Path("docs/results/synthetic.md"),
        write_report,
        write_focus_json,
    )


if __name__ == "__main__":
    raise SystemExit(main())
