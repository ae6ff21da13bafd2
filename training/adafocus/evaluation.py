"""Evaluate an AdaFocus model: per-step predictions, metrics, and early exit run for real.

``collect`` runs whole clips and keeps every step's logits (what calibration and the
offline exit simulation need). ``run_with_exit`` processes one frame at a time and stops
each video at its exit step: nothing after the exit is computed. ``compare_exit`` checks
that both give the same exit steps and predictions.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipeline.early_exit import confidence, simulate_exit
from training.data.videos import VideoDataset

from .model import AdaFocusV2, StepState


@dataclass
class StepPredictions:
    """Every step's logits for a split, in processing order."""

    logits: np.ndarray  # float32 (N, T, K)
    targets: np.ndarray  # (N,) class indices or (N, K) multi-hot
    locations: np.ndarray | None  # float32 (N, T, 2) or None
    indices: np.ndarray  # dataset index of each row
    skipped: list[int]  # dataset indices of unreadable videos (not in the rows)
    focus_skipped: np.ndarray | None = None  # bool (N, T): frames a frame-skipping policy did not focus on
    target_boxes: np.ndarray | None = None  # float32 (N, T, 4) in processing order, where the data has them


def loader_for(dataset: VideoDataset, batch_size: int, workers: int) -> DataLoader:
    return DataLoader(
        dataset,
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        multiprocessing_context="forkserver" if workers > 0 else None,
    )


@torch.no_grad()
def collect(
    model: AdaFocusV2,
    dataset: VideoDataset,
    batch_size: int = 32,
    workers: int = 0,
    device: torch.device | str = "cpu",
    seed: int = 0,
) -> StepPredictions:
    """Per-step logits of every readable video of ``dataset`` (random-patch models draw from ``seed``)."""
    model.eval()
    generator = torch.Generator(device=device).manual_seed(seed)
    logits, targets, locations, indices, skipped, focus_skipped, boxes = [], [], [], [], [], [], []
    for clips, target, index, valid, target_boxes in loader_for(dataset, batch_size, workers):
        skipped += index[~valid].tolist()
        if not bool(valid.any()):
            continue
        target_boxes = target_boxes[valid]
        oracle = target_boxes.to(device) if model.focus_mode == "oracle" else None
        output = model(clips[valid].to(device), generator=generator, target_boxes=oracle)
        if not bool(torch.isnan(target_boxes).all()):
            boxes.append(target_boxes[:, model.order.cpu()].numpy())
        logits.append(output.step_logits.float().cpu().numpy())
        targets.append(target[valid].numpy())
        indices.append(index[valid].numpy())
        if output.locations is not None:
            locations.append(output.locations.float().cpu().numpy())
        if output.skipped is not None:
            focus_skipped.append(output.skipped.cpu().numpy())
    if not logits:
        raise ValueError("no readable video in the split")
    return StepPredictions(
        np.concatenate(logits),
        np.concatenate(targets),
        np.concatenate(locations) if locations else None,
        np.concatenate(indices),
        skipped,
        np.concatenate(focus_skipped) if focus_skipped else None,
        np.concatenate(boxes) if len(boxes) == len(logits) else None,  # every batch had them, or none counts
    )


def average_precision(scores: np.ndarray, relevant: np.ndarray) -> float:
    """AP of one class: mean precision at each relevant item, ranked by score."""
    order = np.argsort(-scores, kind="stable")
    hits = relevant[order] > 0
    if not hits.any():
        return float("nan")
    precision = np.cumsum(hits) / np.arange(1, len(hits) + 1)
    return float(precision[hits].mean())


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (float64, shifted by the maximum for stability)."""
    shifted = np.asarray(logits, dtype=np.float64)
    shifted = shifted - shifted.max(axis=-1, keepdims=True)
    exp = np.exp(shifted)
    return exp / exp.sum(axis=-1, keepdims=True)


def mean_average_precision(logits: np.ndarray, multi_hot: np.ndarray) -> float:
    """mAP of ``(N, K)`` logits against ``(N, K)`` multi-hot targets, as the AdaFocusV2 authors
    compute it for ActivityNet / FCVID (``cal_map`` in their ``ops/utils.py``): each class ranks
    the videos by its softmax probability over all ``K`` classes, not by its raw logit. The two
    rankings differ because a video's softmax also depends on its other classes' logits.

    The mean is over the classes with at least one positive; the authors' code also averages in
    the classes without one, as AP 0, which makes no difference on a split where every class
    has a video (their benchmarks' validation splits) and only lowers the figure otherwise.
    """
    probabilities = softmax(logits)
    values = [average_precision(probabilities[:, k], multi_hot[:, k]) for k in range(logits.shape[1])]
    values = [v for v in values if not np.isnan(v)]
    return float(np.mean(values)) if values else float("nan")


def top1_correct(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Per video: is the top-1 class right (one of the labels, for multi-label targets)."""
    top1 = logits.argmax(axis=-1)
    if targets.ndim == 1:
        return top1 == targets
    return targets[np.arange(len(top1)), top1] > 0


def step_metrics(predictions: StepPredictions, multi_label: bool) -> list[dict[str, float]]:
    """Top-1 accuracy (and mAP for multi-label data) after each step."""
    metrics = []
    for t in range(predictions.logits.shape[1]):
        logits = predictions.logits[:, t]
        entry = {"top1": float(top1_correct(logits, predictions.targets).mean())}
        if multi_label:
            entry["mAP"] = mean_average_precision(logits, predictions.targets)
        metrics.append(entry)
    return metrics


def _select(state: StepState, keep: torch.Tensor) -> StepState:
    return StepState(*(part[keep] if part is not None else None for part in state))


@dataclass
class ExitRun:
    exit_steps: np.ndarray  # (N,) step at which each video exited
    logits: np.ndarray  # (N, K) the logits it exited with
    frames_processed: int  # frames that went through the model, in total


@torch.no_grad()
def run_with_exit(
    model: AdaFocusV2,
    clips: torch.Tensor,
    thresholds: list[float],
    kind: str = "max_prob",
    multi_label: bool = False,
) -> ExitRun:
    """Process ``(B, T, 3, S, S)`` clips frame by frame; a video stops at its exit step."""
    model.eval()
    batch, steps = clips.shape[:2]
    active = torch.arange(batch, device=clips.device)
    state = model.initial_state(batch)
    exit_steps = np.full(batch, steps - 1)
    final = np.zeros((batch, model.config.num_classes), dtype=np.float32)
    processed = 0
    for t in range(steps):
        frames = clips[active, model.order[t]]
        logits, _, state = model.step(frames, state, t)
        processed += len(active)
        values = logits.float().cpu().numpy()
        leaving = confidence(values, kind, multi_label) >= thresholds[t]
        if t == steps - 1:
            leaving[:] = True
        rows = active.cpu().numpy()[leaving]
        exit_steps[rows] = t
        final[rows] = values[leaving]
        keep = torch.from_numpy(~leaving).to(clips.device)
        active, state = active[keep], _select(state, keep)
        if len(active) == 0:
            break
    return ExitRun(exit_steps, final, processed)


def compare_exit(
    model: AdaFocusV2,
    dataset: VideoDataset,
    offline: StepPredictions,
    thresholds: list[float],
    kind: str,
    multi_label: bool,
    batch_size: int = 32,
    device: torch.device | str = "cpu",
) -> dict[str, float | int]:
    """Run ``dataset`` with real early exit and compare with the offline simulation on ``offline``."""
    conf = confidence(offline.logits, kind, multi_label)
    expected_steps = simulate_exit(conf, thresholds)
    expected_top1 = offline.logits[np.arange(len(expected_steps)), expected_steps].argmax(-1)
    row_of = {int(index): row for row, index in enumerate(offline.indices)}
    same_step = same_top1 = total = frames = 0
    max_diff = 0.0
    for clips, _, index, valid, _ in loader_for(dataset, batch_size, 0):
        if not bool(valid.any()):
            continue
        run = run_with_exit(model, clips[valid].to(device), thresholds, kind, multi_label)
        rows = [row_of[int(i)] for i in index[valid]]
        same_step += int((run.exit_steps == expected_steps[rows]).sum())
        same_top1 += int((run.logits.argmax(-1) == expected_top1[rows]).sum())
        offline_logits = offline.logits[rows, run.exit_steps]
        max_diff = max(max_diff, float(np.abs(offline_logits - run.logits).max()))
        total += len(rows)
        frames += run.frames_processed
    return {
        "videos": total,
        "same_exit_step": same_step,
        "same_top1": same_top1,
        "max_abs_logit_diff": max_diff,
        "frames_processed": frames,
        "frames_without_exit": total * offline.logits.shape[1],
    }
