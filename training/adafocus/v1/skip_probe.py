"""What a frame-skipping V1 model's skip head learnt: per step, its skip probability, and how much
of it comes from the classifier's confidence.

    python -m training.adafocus.v1.skip_probe runs/compare/adafocus_v1_skip_0.1 [--clips 24] [--out F.json]

For ``clips`` test clips of the run's own data, step by step as the model runs them (greedy
decisions, the classifier's confidence carried over): the mean skip probability with the
model's own confidence, and with the confidence replaced by 0 and by 1 (the spread between the
two is all the confidence can change), the share of clips skipped and the mean confidence before
the step; and the weight of the confidence in the head. With ``--batchnorm-clips N``, also the
test top-1 as trained and with the batch-norm statistics re-estimated on ``N`` training clips run
the way the model runs them (its own decisions): how much of a skipping model's accuracy its
statistics cost. Figures of docs/adafocus.md ("V1 against V2, measured").

    python -m training.adafocus.v1.skip_probe runs/compare/adafocus_v1_skip --clips 24 --batchnorm-clips 500
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import torch

from training.adafocus.calibration import CalibrationError, _dataset, load_run_model
from training.adafocus.evaluation import loader_for
from training.adafocus.policy_probe import print_figures, run_splits, test_batches


def _test_clips(record: Any, clips: int) -> torch.Tensor:
    """``clips`` test clips of the run's data, ``(B, T, 3, S, S)`` in frame order."""
    batches = test_batches(record, record.train_config.get("data"), clips)
    return torch.cat([batch[valid] for batch, _, _, valid, _ in batches])


@torch.no_grad()
def probe_skipping(run_dir: str | Path, clips: int = 24) -> dict[str, Any]:
    """The skip head's figures for one run folder (see the module's docstring)."""
    model, record = load_run_model(Path(run_dir))
    model.eval()
    if not model.can_skip:
        raise CalibrationError(f"{run_dir}: the model does not skip frames (trained without --v1-skip-cost)")
    videos = _test_clips(record, clips)
    batch, steps = videos.shape[:2]
    state = model.initial_state(batch)
    per_step = []
    for t in range(steps):
        frames = videos[:, model.order[t]]
        features, _ = model.glance(frames)
        hidden = model.policy._hidden(features, state.policy)
        own, at_0, at_1 = (
            torch.sigmoid(model.policy.skip_logit(hidden, confidence))
            for confidence in (state.confidence, torch.zeros(batch), torch.ones(batch))
        )
        per_step.append(
            {
                "step": t,
                "confidence_before": round(float(state.confidence.mean()), 4),
                "skip_probability": round(float(own.mean()), 4),
                "skip_probability_at_confidence_0": round(float(at_0.mean()), 4),
                "skip_probability_at_confidence_1": round(float(at_1.mean()), 4),
                "skipped": round(float((own > 0.5).float().mean()), 4),
            }
        )
        _, _, state = model.step(frames, state, t)
    weight = model.policy.skip_head.weight[0, -1]
    return {"run": str(run_dir), "clips": batch, "confidence_weight": round(float(weight), 4), "per_step": per_step}


@torch.no_grad()
def batchnorm_effect(run_dir: str | Path, train_clips: int) -> dict[str, float]:
    """Test top-1 (last step, the model's own decisions) as trained, and after re-estimating every
    batch-norm layer's statistics (a cumulative average) on ``train_clips`` training clips."""
    model, record = load_run_model(Path(run_dir))
    splits = run_splits(record, record.train_config.get("data"))

    def clips(samples) -> list[tuple[torch.Tensor, torch.Tensor]]:
        loader = loader_for(_dataset(samples, record, record.multi_label), 50, 0)
        return [(batch[valid], target[valid]) for batch, target, _, valid, _ in loader]

    def top1() -> float:
        model.eval()
        right = total = 0
        for videos, target in test:
            right += int((model(videos).step_logits[:, -1].argmax(-1) == target).sum())
            total += len(target)
        return right / total

    test = clips(splits.test)
    as_trained = top1()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None  # a cumulative average over the clips
    model.train()  # (no gradient: only the statistics move)
    for videos, _ in clips(splits.train[:train_clips]):
        model(videos)
    return {"test_top1": round(as_trained, 4), "test_top1_batchnorm_reestimated": round(top1(), 4)}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.adafocus.v1.skip_probe", description=__doc__.split("\n")[0]
    )
    parser.add_argument("runs", nargs="+", help="run folders of frame-skipping V1 models (model.pt)")
    parser.add_argument("--clips", type=int, default=24, help="test clips to probe (default: 24)")
    parser.add_argument("--out", type=Path, help="write the figures as JSON here")
    parser.add_argument(
        "--batchnorm-clips", type=int, default=0, help="also re-estimate batch norm on this many training clips"
    )
    args = parser.parse_args(argv)

    def probe(run: str) -> dict[str, Any]:
        figures = probe_skipping(run, args.clips)
        if args.batchnorm_clips:
            figures["batchnorm"] = {"train_clips": args.batchnorm_clips, **batchnorm_effect(run, args.batchnorm_clips)}
        return figures

    return print_figures(lambda: [probe(run) for run in args.runs], args.out)


if __name__ == "__main__":
    sys.exit(main())
