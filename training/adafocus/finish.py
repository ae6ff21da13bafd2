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

from training.engine.commands import log

from .calibration import apply_point, calibrated_points, video_step_gmacs
from .costs import step_costs
from .evaluation import StepPredictions, collect, compare_exit, step_metrics
from .focus_quality import focus_quality
from .record import ModelRecord, save_model
from .trainer import AdaFocusTrainerBase


def finish(trainer: AdaFocusTrainerBase) -> dict[str, Any]:
    """Calibrate, test, save ``model.pt`` and write ``summary.json`` / ``report.md`` (rank 0)."""
    config, model = trainer.config, trainer.model
    model.eval()
    costs = step_costs(model)
    calibration = collect(model, trainer.calibration_set, config.eval_batch_size, 0, trainer.device, config.seed)
    trainer.note_skipped(calibration.skipped, trainer.calibration_set)
    points = calibrated_points(calibration, costs, config.confidence, trainer.multi_label)
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
        quality = _focus_quality(test, model)
        if quality is not None:
            summary["test"]["focus"] = quality
        # Random patches differ between the two runs by design; the oracle's need whole clips.
        if model.focus_mode not in ("random", "oracle"):
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


def _focus_quality(predictions: StepPredictions, model) -> dict[str, float | int] | None:
    """Hit rate and IoU of the patches against the target boxes over every processed frame (a
    frame-skipping policy's skipped frames do not count), where the data has boxes."""
    if predictions.locations is None or predictions.target_boxes is None or model.crop is None:
        return None
    processed = None if predictions.focus_skipped is None else ~predictions.focus_skipped
    config = model.config
    return focus_quality(
        predictions.locations, predictions.target_boxes, config.frame_size, config.patch_size, processed
    ).as_dict()
