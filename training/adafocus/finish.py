"""The end of a run: calibrate exit thresholds, evaluate on the test split, write the results.

1. Per-step logits on the calibration split -> operating points (``pipeline.early_exit.calibrate``),
   named ``full`` / ``accurate`` / ``balanced`` / ``fast``.
2. Per-step logits on the test split -> accuracy after each step, and every operating
   point applied to the test split (accuracy and GMACs per video).
3. The named points run again with real early exit (frame by frame, stopping at the exit
   step) and are checked against the offline simulation.
4. ``model.pt``, ``summary.json`` and ``report.md`` in the run folder.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import numpy as np

from pipeline.early_exit import OperatingPoint, calibrate, confidence, name_operating_points, simulate_exit
from training.engine.commands import log

from .costs import StepCosts, step_costs
from .evaluation import StepPredictions, collect, compare_exit, mean_average_precision, step_metrics, top1_correct
from .record import ModelRecord, save_model
from .trainer import AdaFocusTrainerBase


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


def finish(trainer: AdaFocusTrainerBase) -> dict[str, Any]:
    """Calibrate, test, save ``model.pt`` and write ``summary.json`` / ``report.md`` (rank 0)."""
    config, model = trainer.config, trainer.model
    model.eval()
    costs = step_costs(model)
    calibration = collect(model, trainer.calibration_set, config.eval_batch_size, 0, trainer.device, config.seed)
    trainer.note_skipped(calibration.skipped, trainer.calibration_set)
    # The calibration sweep's cost of each step (with frame skipping: its mean over the videos).
    step_gmacs = (
        [costs.total / 1e9] * config.num_frames
        if calibration.focus_skipped is None
        else video_step_gmacs(calibration, costs).mean(axis=0).tolist()
    )
    points = name_operating_points(
        calibrate(calibration.logits, calibration.targets, step_gmacs, config.confidence, trainer.multi_label)
    )
    summary: dict[str, Any] = {
        "method": config.method,
        "variant": model.config.variant,
        "steps": trainer.state.step,
        "classes": trainer.classes,
        "multi_label": trainer.multi_label,
        "step_macs": costs.as_dict(),
        "gmacs_per_frame": costs.total / 1e9,
        "gmacs_per_video_full": costs.total * config.num_frames / 1e9,
        "calibration": {"videos": len(calibration.logits), "per_step": step_metrics(calibration, trainer.multi_label)},
        "operating_points": [point.as_dict() for point in points],
        "data_notes": trainer.splits.notes,
    }
    if trainer.test_set is not None:
        test = collect(model, trainer.test_set, config.eval_batch_size, 0, trainer.device, config.seed)
        trainer.note_skipped(test.skipped, trainer.test_set)
        test_gmacs = video_step_gmacs(test, costs)
        summary["test"] = {
            "videos": len(test.logits),
            "per_step": step_metrics(test, trainer.multi_label),
            "operating_points": [
                {
                    "name": point.name,
                    "p": point.p,
                    **apply_point(test, point, test_gmacs, config.confidence, trainer.multi_label),
                }
                for point in points
            ],
        }
        if test.focus_skipped is not None:
            summary["test"]["focus_rate"] = float(1 - test.focus_skipped.mean())
            summary["test"]["gmacs_per_video_all_frames"] = float(test_gmacs.sum(axis=1).mean())
        if model.focus_mode != "random":  # random patches differ between the two runs by design
            summary["test"]["incremental_exit"] = {
                name: compare_exit(
                    model,
                    trainer.test_set,
                    test,
                    point.thresholds,
                    config.confidence,
                    trainer.multi_label,
                    config.eval_batch_size,
                    trainer.device,
                )
                for point in points
                for name in point.names
                if name in ("balanced", "fast")
            }
    summary["unreadable_videos"] = sorted(trainer.state.bad_files)
    if summary["unreadable_videos"]:
        log(f"{len(summary['unreadable_videos'])} unreadable video(s) were skipped; listed in summary.json")
    record = ModelRecord(
        config=model.config,
        method=config.method,
        classes=list(trainer.classes),
        multi_label=trainer.multi_label,
        geometry=trainer.geometry,
        normalisation=config.normalisation,
        confidence=config.confidence,
        operating_points=summary["operating_points"],
        step_macs=costs.as_dict(),
        train_config=dataclasses.asdict(config),
    )
    save_model(trainer.run_dir / "model.pt", model, record)
    return summary
