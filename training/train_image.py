"""Train an image classifier (CondenseNetV2 by default) on an image folder.

    python training/train_image.py                 # generated dataset, CIFAR-size CondenseNetV2
    python training/train_image.py --data /data/imagenet --model condensenetv2_a \\
        --input-size 224 --epochs 350 --batch-size 256 --lr 0.4 --warmup-epochs 5

The recipe and the run folder: :mod:`training.image.trainer`. Rerunning the same command resumes.
"""

from __future__ import annotations

from pathlib import Path

from training.engine.commands import run_command
from training.engine.options import parse_config
from training.image.trainer import ImageTrainConfig, train


def main(argv: list[str] | None = None) -> int:
    config = parse_config(
        ImageTrainConfig, argv, prog="python training/train_image.py", description=__doc__.split("\n")[0]
    )
    status, summary = run_command(lambda stop: train(config, stop))
    if status != 0 or summary is None:  # stopped (signal or --max-steps) at a checkpoint, or bad input
        return status
    best = summary["val"][summary["weights"]]["top1"]
    print(
        f"done: {summary['model']} val top-1 {best:.3f} ({summary['weights']} weights), converted "
        f"{summary['val_converted']['top1']:.3f}; model in {Path(config.out) / 'model_converted.pt'}"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
