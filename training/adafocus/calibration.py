"""Exit thresholds from per-step logits, and recalibrating a run folder on the user's videos.

:func:`calibrated_points` is the one calibration: the end of a training run (``finish``) and
``python training/calibrate.py`` both call it. :func:`calibrate_run_folder` evaluates a run
folder's model (one written by ``training/train.py`` or by ``training/import_checkpoint.py``,
whose only point is ``full`` with its accuracy unmeasured) on the videos of ``--data``, and
writes the calibrated operating points, with their accuracies, back into ``model.pt`` and
``summary.json``. The files before the first calibration are kept as
``model.uncalibrated.pt`` and ``summary.uncalibrated.json``; every write is atomic.
"""

from __future__ import annotations

import dataclasses
import json
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import torch

from pipeline.early_exit import (
    CONFIDENCE_KINDS,
    OperatingPoint,
    calibrate,
    confidence,
    name_operating_points,
    simulate_exit,
)
from training.data.splits import VideoSplits, load_splits
from training.data.videos import VideoDataset, VideoSample
from training.engine.checkpoint import atomic_write_text, load_checkpoint

from .costs import StepCosts, step_costs
from .evaluation import StepPredictions, collect, mean_average_precision, step_metrics, top1_correct
from .record import ModelRecord, model_from_payload, save_model

Split = Literal["calibration", "train", "test", "all"]
SPLITS: tuple[str, ...] = ("calibration", "train", "test", "all")
MODEL_FILE, SUMMARY_FILE = "model.pt", "summary.json"
MODEL_BACKUP, SUMMARY_BACKUP = "model.uncalibrated.pt", "summary.uncalibrated.json"
_WHOLE_CLIP_FORMAT = "adafocus_tsm_model/"  # training/adafocus/sthsth_record.py's model.pt


class CalibrationError(ValueError):
    """A run folder or dataset that cannot be calibrated; the message says why."""


# -- the calibration itself (shared with the end of a training run) ------------------------
def video_step_gmacs(predictions: StepPredictions, costs: StepCosts) -> np.ndarray:
    """GMACs of every step of every video ``(N, T)``: the full step, less the focus where a
    frame-skipping policy skipped it."""
    shape = predictions.logits.shape[:2]
    if predictions.focus_skipped is None:
        return np.full(shape, costs.total / 1e9)
    return (costs.total - costs.focus * predictions.focus_skipped) / 1e9


def apply_point(
    predictions: StepPredictions, point: OperatingPoint, step_gmacs: np.ndarray, kind: str, multi_label: bool
) -> dict[str, Any]:
    """Accuracy and average GMACs of ``point`` on a split (offline simulation); ``step_gmacs``
    is ``(N, T)``, each video's cost of each step."""
    steps = simulate_exit(confidence(predictions.logits, kind, multi_label), point.thresholds)
    chosen = predictions.logits[np.arange(len(steps)), steps]
    cost = np.cumsum(step_gmacs, axis=1)[np.arange(len(steps)), steps]
    result = {
        "top1": float(top1_correct(chosen, predictions.targets).mean()),
        "gmacs_per_video": float(cost.mean()),
        "mean_frames": float(steps.mean() + 1),
    }
    if multi_label:
        result["mAP"] = mean_average_precision(chosen, predictions.targets)
    return result


def calibrated_points(
    predictions: StepPredictions, costs: StepCosts, kind: str, multi_label: bool
) -> list[OperatingPoint]:
    """The named operating points (``full``, ``accurate``, ``balanced``, ``fast``) of the
    per-step logits of a calibration split, with their accuracies on it."""
    # The sweep's cost of each step (with frame skipping: its mean over the videos).
    step_gmacs = (
        [costs.total / 1e9] * predictions.logits.shape[1]
        if predictions.focus_skipped is None
        else video_step_gmacs(predictions, costs).mean(axis=0).tolist()
    )
    return name_operating_points(calibrate(predictions.logits, predictions.targets, step_gmacs, kind, multi_label))


# -- recalibrating a run folder ------------------------------------------------------------
@dataclass
class RunCalibration:
    """What :func:`calibrate_run_folder` measured and wrote."""

    points: list[OperatingPoint]
    confidence: str
    videos: int  # calibration videos read
    unreadable: list[str]  # calibration videos that could not be read (skipped)
    per_step: list[dict[str, float]]  # accuracy after each step on them
    test: dict[str, Any] | None  # the points applied to the data's test split, if evaluated
    notes: list[str]
    backup: Path | None  # the uncalibrated model.pt (None: it was kept by an earlier calibration)


def load_run_model(run_dir: Path) -> tuple[Any, ModelRecord]:
    """The model and record of ``run_dir/model.pt``; a clear error otherwise."""
    path = run_dir / MODEL_FILE
    if not run_dir.is_dir():
        raise CalibrationError(f"run folder {run_dir} does not exist")
    if not path.is_file():
        raise CalibrationError(f"{path} does not exist: give a finished training run or an imported run folder")
    try:
        payload = load_checkpoint(path)
    except Exception as error:  # a truncated or foreign file: say which file, not a traceback
        raise CalibrationError(f"cannot read {path}: {error}") from None
    if isinstance(payload, dict) and str(payload.get("format", "")).startswith(_WHOLE_CLIP_FORMAT):
        raise CalibrationError(
            f"{path} is a whole-clip TSM model (Something-Something / Jester): it answers once per clip, "
            "with no early exit, so it has no exit thresholds to calibrate"
        )
    try:
        model, record = model_from_payload(payload, path)
    except (ValueError, KeyError, RuntimeError) as error:
        raise CalibrationError(str(error)) from None
    return model, record


def class_mapping(data_classes: Sequence[str], model_classes: Sequence[str]) -> list[int]:
    """For each class of the data, the model's class index: by name, or, where the data's
    classes are numbers (a list with numeric labels), by number (an import without --labels
    names its classes class_0..N-1)."""
    lookup = {name: i for i, name in enumerate(model_classes)}
    if all(name in lookup for name in data_classes):
        return [lookup[name] for name in data_classes]
    if all(name.isdigit() and int(name) < len(model_classes) for name in data_classes):
        return [int(name) for name in data_classes]
    unknown = [name for name in data_classes if name not in lookup]
    shown = ", ".join(unknown[:5]) + (", ..." if len(unknown) > 5 else "")
    raise CalibrationError(
        f"the data has classes the model does not know: {shown} (the model's: "
        f"{', '.join(model_classes[:5])}{', ...' if len(model_classes) > 5 else ''}); name the data's classes "
        "as the model's labels, or use numeric labels 0..N-1"
    )


def split_samples(splits: VideoSplits, split: str) -> list[VideoSample]:
    """The videos ``--split`` names (``all``: every split's)."""
    if split not in SPLITS:
        raise CalibrationError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    if split == "all":
        return [*splits.train, *splits.calibration, *splits.test]
    samples = getattr(splits, split)
    if not samples:
        raise CalibrationError(f"the data has no {split} split")
    return samples


def _remap(samples: Sequence[VideoSample], mapping: list[int]) -> list[VideoSample]:
    return [VideoSample(s.path, tuple(sorted(mapping[label] for label in s.labels))) for s in samples]


def _dataset(samples: list[VideoSample], record: ModelRecord, multi_label: bool) -> VideoDataset:
    # The frames as the model was trained on (or imported with): its geometry and normalisation.
    return VideoDataset(
        samples,
        len(record.classes),
        record.config.num_frames,
        record.geometry,
        train=False,
        multi_label=multi_label,
        normalisation=record.normalisation,
    )


@dataclass
class _Evaluation:
    """How to run the model over a list of videos."""

    model: Any
    record: ModelRecord
    multi_label: bool  # the targets: multi-hot when the model or the data is multi-label
    batch_size: int
    workers: int
    device: str | torch.device
    seed: int

    def collect(self, samples: list[VideoSample], what: str) -> StepPredictions:
        dataset = _dataset(samples, self.record, self.multi_label)
        try:
            return collect(self.model, dataset, self.batch_size, self.workers, self.device, self.seed)
        except ValueError as error:  # no readable video
            raise CalibrationError(f"{what}: {error}") from None


def calibrate_run_folder(
    run_dir: str | Path,
    data: str | Path,
    split: str = "calibration",
    confidence_kind: str | None = None,
    batch_size: int = 16,
    workers: int = 0,
    device: str | torch.device = "cpu",
    calibration_fraction: float | None = None,
    seed: int | None = None,
    evaluate_test: bool = True,
) -> RunCalibration:
    """Calibrate the exit thresholds of ``run_dir``'s model on ``data``'s ``split`` and write them.

    ``confidence_kind`` defaults to the model's (``max_prob``; the authors' ``max_logit`` for an
    imported AdaFocusV2 file). ``calibration_fraction`` and ``seed`` (the hold-out of a dataset
    without a calibration split) default to the training run's, so a run folder of train.py
    is calibrated on the very videos it held out. With ``evaluate_test`` and a test split in
    ``data`` (``split`` being ``calibration`` or ``train``) the points are applied to it too.
    """
    run_dir = Path(run_dir)
    model, record = load_run_model(run_dir)
    kind = confidence_kind or record.confidence
    if kind not in CONFIDENCE_KINDS:
        raise CalibrationError(f"unknown confidence {kind!r}; use one of {', '.join(CONFIDENCE_KINDS)}")
    if split not in SPLITS:
        raise CalibrationError(f"unknown split {split!r}; use one of {', '.join(SPLITS)}")
    trained = record.train_config
    fraction = calibration_fraction if calibration_fraction is not None else trained.get("calibration_fraction", 0.1)
    seed = seed if seed is not None else int(trained.get("seed", 0))
    try:
        splits = load_splits(data, fraction, seed)
    except (OSError, ValueError) as error:
        raise CalibrationError(f"--data {data}: {error}") from None
    mapping = class_mapping(splits.classes, record.classes)
    samples = _remap(split_samples(splits, split), mapping)
    run = _Evaluation(
        model.to(device), record, record.multi_label or splits.multi_label, batch_size, workers, device, seed
    )
    costs = step_costs(run.model)
    predictions = run.collect(samples, f"--data {data} ({split})")
    # The exit rule reads the outputs as the model means them (softmax unless it was trained multi-label).
    points = calibrated_points(predictions, costs, kind, record.multi_label)
    test = None
    if evaluate_test and splits.test and split in ("calibration", "train"):
        test_predictions = run.collect(_remap(splits.test, mapping), f"--data {data} (test)")
        test = _test_results(test_predictions, points, kind, record, costs)
    result = RunCalibration(
        points=points,
        confidence=kind,
        videos=len(predictions.logits),
        unreadable=[str(samples[i].path) for i in predictions.skipped],
        per_step=step_metrics(predictions, run.multi_label),
        test=test,
        notes=[note for note in splits.notes if split == "calibration" or "held out" not in note],
        backup=_back_up(run_dir),
    )
    new_record = dataclasses.replace(record, confidence=kind, operating_points=[p.as_dict() for p in points])
    save_model(run_dir / MODEL_FILE, run.model.cpu(), new_record)  # atomic
    _write_summary(run_dir, result, str(data), split)
    return result


def _test_results(
    test: StepPredictions, points: list[OperatingPoint], kind: str, record: ModelRecord, costs: StepCosts
) -> dict[str, Any]:
    """Accuracy after each step on the test split, and each point applied to it."""
    gmacs = video_step_gmacs(test, costs)
    applied = [apply_point(test, point, gmacs, kind, record.multi_label) for point in points]
    return {
        "videos": len(test.logits),
        "per_step": step_metrics(test, test.targets.ndim == 2),
        "operating_points": [{"name": point.name, "p": point.p, **row} for point, row in zip(points, applied)],
    }


def _back_up(run_dir: Path) -> Path | None:
    """Keep the files as they were before the first calibration (a later one keeps that copy)."""
    backup = run_dir / MODEL_BACKUP
    if backup.exists():
        return None
    shutil.copy2(run_dir / MODEL_FILE, backup)
    if (run_dir / SUMMARY_FILE).is_file() and not (run_dir / SUMMARY_BACKUP).exists():
        shutil.copy2(run_dir / SUMMARY_FILE, run_dir / SUMMARY_BACKUP)
    return backup


def _write_summary(run_dir: Path, result: RunCalibration, data: str, split: str) -> None:
    path = run_dir / SUMMARY_FILE
    summary = json.loads(path.read_text()) if path.is_file() else {}
    summary["confidence"] = result.confidence
    summary["operating_points"] = [point.as_dict() for point in result.points]
    summary["calibration"] = {
        "videos": result.videos,
        "per_step": result.per_step,
        "data": data,
        "split": split,
        "confidence": result.confidence,
        "unreadable_videos": result.unreadable,
        "notes": result.notes,
        "by": "training/calibrate.py",
    }
    if result.test is not None:
        summary["test"] = {**result.test, "data": data}
    elif isinstance(summary.get("test"), dict):
        # What the run measured of its earlier points on its test split no longer applies.
        for stale in ("operating_points", "incremental_exit"):
            summary["test"].pop(stale, None)
    atomic_write_text(path, json.dumps(summary, indent=2))


def points_table(result: RunCalibration) -> str:
    """The calibrated points as a text table: accuracy on the calibration videos, and the
    test split's top-1 where it was evaluated."""
    test = result.test["operating_points"] if result.test else []
    header = f"{'point':<24} {'p':>6} {'GMACs/video':>12} {'mean frames':>12} {'accuracy':>9}"
    header += f" {'test top1':>10}" if test else ""
    lines = [header, "-" * len(header)]
    for index, point in enumerate(result.points):
        frames = float(np.dot(np.arange(1, len(point.exit_fractions) + 1), point.exit_fractions))
        name = ",".join(point.names) if point.names else "-"
        p = "-" if point.p is None else f"{point.p:.3f}"
        line = f"{name:<24} {p:>6} {point.expected_gmacs:>12.4g} {frames:>12.2f} {point.accuracy:>9.4f}"
        if test:
            line += f" {test[index]['top1']:>10.4f}"
        lines.append(line)
    return "\n".join(lines)
