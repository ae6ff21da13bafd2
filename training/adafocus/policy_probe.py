"""Why a policy does or does not learn: what the local network reads, and what the crop's
gradient tells the location (issue 24, item 3).

    python -m training.adafocus.policy_probe runs/focus_v2/adafocus_v2 runs/focus_v2/oracle_patch \\
        --data data/synthetic-v2 --out docs/results/focus-v2/probe.json

For each trained run folder, on test clips that carry ground-truth target boxes (benchmark v2):

* **reads**: top-1 of the local network's auxiliary head on patches centred on the target (the
  oracle's), at the centre, and where the run itself looks. A local network that cannot read
  the target even when it is shown makes the loss flat in the location: nothing to follow.
* **gradient**: the gradient of the policy branch's training loss (the classifier after every
  step plus the local auxiliary head) with respect to each frame's patch origin, in loss per
  pixel, at the run's own locations: its size, and its cosine with the direction from the patch
  to the target, for frames whose patch overlaps the target and for frames whose patch does not
  (bilinear interpolation only sees the pixels under the patch, so there it says nothing about
  where the target is); and the same at uniformly random locations (what the local network would
  tell a policy that looked elsewhere), plain and through a frame blurred by 8 pixels
  (``--crop-gradient-blur``).
* **landscape**: the local head's loss with the patch moved from the target's centre by
  ``offset`` pixels along x (and along y), the basin a gradient step can descend.
* **subpixel**: the same loss 8 px off the target plus 0, 1/4, 1/2, 3/4 and 1 pixel.
* **spread**: the standard deviation of the run's patch origins, in pixels; **follows_target**:
  the correlation of the run's locations with the target's (x, y).
* **glance_knows_where**: R^2 of the target's location read linearly off the glance's feature map
  (ridge regression, fitted and tested on different clips): whether the policy's input holds it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from training.adafocus.calibration import CalibrationError, _dataset, load_run_model
from training.adafocus.evaluation import loader_for
from training.adafocus.focus_quality import coverage_and_iou, patch_boxes
from training.adafocus.model import AdaFocusV2, oracle_locations
from training.data.splits import load_splits

OFFSETS = tuple(range(-40, 41, 4))  # pixels from the oracle's origin, for the landscape
BLUR_PX = 8.0  # the straight-through crop gradient's blur probed beside the plain one


def run_splits(record: Any, data: str | None) -> Any:
    """The splits of ``data`` as the run split it (``data`` None: the synthetic benchmark)."""
    trained = record.train_config
    return load_splits(data, trained.get("calibration_fraction", 0.1), int(trained.get("seed", 0)))


def test_batches(record: Any, data: str | None, clips: int) -> list[tuple]:
    """The first ``clips`` test clips of ``data`` as the run's loader gives them (one batch), split
    as the run split it (``data`` None: the synthetic benchmark)."""
    return list(loader_for(_dataset(run_splits(record, data).test[:clips], record, False), clips, 0))


def print_figures(probe: Callable[[], list[dict[str, Any]]], out: Path | None) -> int:
    """Run ``probe``, print its figures as JSON (and write them to ``out``); 2 with a message on a
    run it cannot probe."""
    try:
        results = probe()
    except (CalibrationError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    text = json.dumps(results, indent=2)
    if out:
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(text + "\n")
    print(text)
    return 0


def _batch(model: AdaFocusV2, record: Any, data: str, clips: int) -> tuple[Tensor, Tensor, Tensor]:
    """``clips`` test clips in processing order, their labels and their target boxes ``(B, T, 4)``."""
    videos, labels, boxes = [], [], []
    for batch, target, _, valid, target_boxes in test_batches(record, data, clips):
        videos.append(batch[valid])
        labels.append(target[valid])
        boxes.append(target_boxes[valid])
    order = model.order.cpu()
    boxes_in_order = torch.cat(boxes)[:, order]
    if bool(torch.isnan(boxes_in_order).all()):
        raise CalibrationError(f"--data {data}: the clips have no target boxes (<clip>.boxes.json; benchmark v2)")
    return torch.cat(videos)[:, order], torch.cat(labels), boxes_in_order


def _own_locations(model: AdaFocusV2, features: Tensor, boxes: Tensor, steps: int) -> Tensor:
    batch = features.shape[0]
    focus = model.focus_mode
    if focus == "oracle":
        return oracle_locations(boxes, model.config.frame_size, model.config.patch_size)
    generator = torch.Generator().manual_seed(0)
    return model._clip_locations(features, batch, steps, focus, True, generator)


def _local_logits(model: AdaFocusV2, frames: Tensor, locations: Tensor) -> tuple[Tensor, Tensor]:
    """Pooled local features and the local head's logits for frames ``(N, ...)`` at ``(N, 2)``."""
    pooled = model.focus(frames, locations)
    return pooled, model.local_aux(pooled)


def _reads(model: AdaFocusV2, frames: Tensor, locations: Tensor, labels: Tensor) -> float:
    with torch.no_grad():
        _, logits = _local_logits(model, frames, locations)
    return float((logits.argmax(-1) == labels).float().mean())


def _gradient(
    model: AdaFocusV2,
    frames: Tensor,
    global_pooled: Tensor,
    locations: Tensor,
    labels: Tensor,
    targets: Tensor,
    shape: tuple[int, int],
    gradient_blur: float = 0.0,
) -> dict[str, Any]:
    """The training loss's gradient with respect to the patch origins, split by overlap
    (``gradient_blur``: through the crop of blurred frames, ``PatchCrop``'s straight-through option)."""
    span = model.config.frame_size - model.config.patch_size
    origin = (locations.flatten(0, 1) * span).detach().requires_grad_(True)
    local_pooled = model.focus(frames, origin / span, gradient_blur)
    local_logits = model.local_aux(local_pooled)
    fused = model.fuse(global_pooled, local_pooled).unflatten(0, shape)
    state = model.classifier.initial_state(shape[0], frames.device)
    loss = F.cross_entropy(local_logits, labels)
    for t in range(shape[1]):
        logits, state = model.classifier(fused[:, t], state, t)
        loss = loss + F.cross_entropy(logits, labels[:: shape[1]]) / shape[1]
    (grad,) = torch.autograd.grad(loss, origin)
    patch = model.config.patch_size
    towards = oracle_locations(targets, model.config.frame_size, patch) * span - origin.detach()
    descent = -grad
    norm = descent.norm(dim=-1)
    cosine = (descent * towards).sum(-1) / (norm * towards.norm(dim=-1)).clamp_min(1e-12)
    coverage, _ = coverage_and_iou(
        patch_boxes(origin.detach().numpy() / span, model.config.frame_size, patch), targets.numpy()
    )
    overlaps = torch.from_numpy(np.nan_to_num(coverage) > 0)
    far = towards.norm(dim=-1) > 2.0  # already on the target: no direction to compare with

    def summary(mask: Tensor) -> dict[str, float | int]:
        mask = mask & far
        if not bool(mask.any()):
            return {"frames": 0}
        return {
            "frames": int(mask.sum()),
            "median_norm_per_px": float(norm[mask].median()),
            "mean_cosine_to_target": float(cosine[mask].mean()),
            "share_pointing_to_target": float((cosine[mask] > 0).float().mean()),
        }

    return {"overlapping": summary(overlaps), "not_overlapping": summary(~overlaps)}


def _landscape(model: AdaFocusV2, frames: Tensor, targets: Tensor, labels: Tensor) -> dict[str, list[float]]:
    """The local head's mean loss with the patch moved ``offset`` px from the oracle's origin."""
    size, patch = model.config.frame_size, model.config.patch_size
    span = size - patch
    oracle = oracle_locations(targets, size, patch) * span
    curves: dict[str, list[float]] = {"offset_px": [float(o) for o in OFFSETS], "x": [], "y": []}
    for axis, name in ((0, "x"), (1, "y")):
        for offset in OFFSETS:
            moved = oracle.clone()
            moved[:, axis] = (moved[:, axis] + offset).clamp(0, span)
            with torch.no_grad():
                _, logits = _local_logits(model, frames, moved / span)
            curves[name].append(float(F.cross_entropy(logits, labels)))
    return curves


def _subpixel(model: AdaFocusV2, frames: Tensor, targets: Tensor, labels: Tensor) -> dict[str, list[float]]:
    """The local head's mean loss with the patch 8 px right of the target's centre plus a fraction of a
    pixel: bilinear interpolation blurs pixel-fine detail at half-pixel shifts, a ripple of one pixel's
    period in the loss that the crop's gradient follows."""
    size, patch = model.config.frame_size, model.config.patch_size
    span = size - patch
    base = oracle_locations(targets, size, patch) * span
    shifts = [0.0, 0.25, 0.5, 0.75, 1.0]
    losses = []
    for shift in shifts:
        moved = base.clone()
        moved[:, 0] = (moved[:, 0] + 8 + shift).clamp(0, span)
        with torch.no_grad():
            _, logits = _local_logits(model, frames, moved / span)
        losses.append(float(F.cross_entropy(logits, labels)))
    return {"shift_px": shifts, "loss": losses}


RIDGE_PENALTIES = (1.0, 30.0, 300.0, 3000.0, 30000.0)


def _r2(predicted: Tensor, truth: Tensor) -> list[float]:
    residual = ((predicted - truth) ** 2).sum(0)
    spread = ((truth - truth.mean(0)) ** 2).sum(0)
    return [float(v) for v in 1 - residual / spread]


def _glance_knows_where(features: Tensor, targets: Tensor, clips: int, steps: int) -> dict[str, Any]:
    """How well the target's location can be read linearly off the glance's feature map (what the
    policy sees): ridge regression fitted on the first half of the clips, its penalty chosen on the
    next quarter, R^2 (x, y) on the last quarter. Near 0: the glance does not encode where the
    target is, and a policy that reads it cannot find it."""
    x = features.flatten(1).double()
    y = targets.double()
    fit, val = clips // 2 * steps, clips * 3 // 4 * steps
    if fit == 0 or val == fit or val == len(x):
        return {"r2": None}
    mean_x, scale, mean_y = x[:fit].mean(0), x[:fit].std(), y[:fit].mean(0)
    x, y = (x - mean_x) / scale, y - mean_y
    gram, moment = x[:fit].T @ x[:fit], x[:fit].T @ y[:fit]
    best = None
    for penalty in RIDGE_PENALTIES:
        weights = torch.linalg.solve(gram + penalty * torch.eye(len(gram), dtype=gram.dtype), moment)
        score = sum(_r2(x[fit:val] @ weights, y[fit:val]))
        if best is None or score > best[0]:
            best = (score, penalty, weights)
    _, penalty, weights = best
    return {"r2": _r2(x[val:] @ weights, y[val:]), "penalty": penalty, "frames_fitted": fit}


def _follows(own: Tensor, targets: Tensor) -> list[float] | None:
    """Correlation (x, y) of the run's locations with the oracle's over the probed frames."""
    if float(own.std()) == 0:
        return None
    pairs = torch.stack([own.double(), targets.double()])  # (2, frames, 2)
    return [float(torch.corrcoef(pairs[:, :, axis])[0, 1]) for axis in range(2)]


def probe_run(run_dir: str | Path, data: str, clips: int = 64) -> dict[str, Any]:
    """The probe's figures for one run folder (see the module's docstring)."""
    model, record = load_run_model(Path(run_dir))
    model.eval()
    if model.crop is None:
        raise CalibrationError(f"{run_dir}: the {model.config.variant} model places no patch")
    videos, labels, boxes = _batch(model, record, data, clips)
    batch, steps = videos.shape[:2]
    frames = videos.flatten(0, 1)
    frame_labels = labels.repeat_interleave(steps)
    targets = boxes.flatten(0, 1)
    with torch.no_grad():
        features, global_pooled = model.glance(frames)
        own = _own_locations(model, features.unflatten(0, (batch, steps)), boxes, steps)
    size, patch = model.config.frame_size, model.config.patch_size
    oracle = oracle_locations(targets, size, patch)
    centre = torch.full_like(oracle, 0.5)
    uniform = torch.rand(own.shape, generator=torch.Generator().manual_seed(1))
    coverage, iou = coverage_and_iou(patch_boxes(own.flatten(0, 1).numpy(), size, patch), targets.numpy())
    return {
        "run": str(run_dir),
        "variant": model.config.variant,
        "clips": batch,
        "frames": batch * steps,
        "reads": {
            "at_target": _reads(model, frames, oracle, frame_labels),
            "at_centre": _reads(model, frames, centre, frame_labels),
            "where_it_looks": _reads(model, frames, own.flatten(0, 1), frame_labels),
        },
        "hit_rate": float(np.nanmean(coverage >= 0.5)),
        "iou": float(np.nanmean(iou)),
        "origin_sd_px": [float(v) for v in (own.flatten(0, 1) * (size - patch)).std(0)],
        "follows_target": _follows(own.flatten(0, 1), oracle),
        "glance_knows_where": _glance_knows_where(features, oracle, batch, steps),
        "gradient": {
            "where_it_looks": _gradient(model, frames, global_pooled, own, frame_labels, targets, (batch, steps)),
            "at_random": _gradient(model, frames, global_pooled, uniform, frame_labels, targets, (batch, steps)),
            f"at_random_blur_{BLUR_PX:g}px": _gradient(
                model, frames, global_pooled, uniform, frame_labels, targets, (batch, steps), BLUR_PX
            ),
        },
        "landscape": _landscape(model, frames, targets, frame_labels),
        "subpixel": _subpixel(model, frames, targets, frame_labels),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.adafocus.policy_probe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("runs", nargs="+", type=Path, help="trained run folders (model.pt)")
    parser.add_argument("--data", required=True, help="the benchmark the runs trained on (with target boxes)")
    parser.add_argument("--clips", type=int, default=64, help="test clips to probe (default: 64)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    args = parser.parse_args(argv)
    torch.set_grad_enabled(True)
    return print_figures(lambda: [probe_run(run, args.data, args.clips) for run in args.runs], args.out)


if __name__ == "__main__":
    sys.exit(main())
