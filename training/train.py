"""Train an AdaFocusV2 model (or a baseline in the same harness) on videos.

    python training/train.py                        # synthetic benchmark, CPU, about 15 minutes
    python training/train.py --data /data/mydataset --out runs/mine --epochs 30
    python training/train.py --config my_run.toml --patch-size 96
    python training/train.py --preset paper_activitynet --data /data/actnet --patch-size 96  # the authors' recipe
    python training/train.py --method adafocus_v1    # AdaFocus V1: four stages, PPO policy
    torchrun --nproc_per_node=4 training/train.py --data ... --device cuda

With no arguments it generates the synthetic benchmark if absent, trains the default model,
calibrates the exit thresholds on the calibration split, evaluates on the test split, and
writes the run folder (``runs/adafocus``: checkpoint, config, metrics, model, summary,
report). Rerunning the same command resumes an interrupted run; ``--restart`` starts over.
"""

from __future__ import annotations

from training.adafocus.presets import parse_train_config
from training.adafocus.run import train
from training.engine.commands import run_command


def main(argv: list[str] | None = None) -> int:
    config = parse_train_config(argv, prog="python training/train.py", description=__doc__.split("\n")[0])
    status, summary = run_command(lambda stop: train(config, stop))
    if status == 0 and summary is not None:
        metric = "mAP" if summary["multi_label"] else "top1"
        where = "test" if "test" in summary else "calibration"
        final = summary[where]["per_step"][-1][metric]
        print(
            f"done: {summary['variant']} {where} {metric} {final:.3f} at {summary['gmacs_per_video_full']:.3f} "
            f"GMACs per video; model and report in {config.out}"
        )
    return status


if __name__ == "__main__":
    raise SystemExit(main())
