"""Calibrate the exit thresholds of a run folder on your videos (an imported model, say).

    python training/calibrate.py runs/actnet --data /data/my_videos
    python training/calibrate.py runs/actnet --data /data/actnet --split train --confidence max_logit
    python training/export.py runs/actnet --out model_repo --name actnet   # then export as usual

An imported checkpoint's run folder (``training/import_checkpoint.py``) has only the ``full``
operating point, its accuracy unmeasured. This command runs the folder's model over the
videos of ``--data`` (the layouts of ``python training/train.py --data``: a folder per class,
a list file, or train/calibration/test splits; classes named as the model's labels, or
numbered 0..N-1) and writes the calibrated operating points (``full``, ``accurate``,
``balanced``, ``fast``, each with its accuracy) into ``model.pt`` and ``summary.json``. The
files as they were before the first calibration stay in ``model.uncalibrated.pt`` and
``summary.uncalibrated.json``. It works as well for a run folder of ``training/train.py``
(calibrating it again, on other videos or with another confidence).

``--split``: ``calibration`` (default: the data's calibration or val split; without one, the
seeded share of the training videos that train.py holds out), ``train`` (the authors set
their thresholds from training-set logits), ``test``, or ``all`` (every video of ``--data``:
for videos the model never trained on). Exit status 2 for bad input, with a message.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.early_exit import CONFIDENCE_KINDS
from training.adafocus.calibration import SPLITS, CalibrationError, calibrate_run_folder, points_table


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python training/calibrate.py", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, help="run folder with model.pt (imported or trained)")
    parser.add_argument("--data", required=True, help="your videos (a dataset folder or list, as train.py's --data)")
    parser.add_argument("--split", choices=SPLITS, default="calibration", help="which videos (default: calibration)")
    parser.add_argument(
        "--confidence",
        choices=CONFIDENCE_KINDS,
        help="exit confidence (default: the model's; max_logit is the authors' criterion)",
    )
    parser.add_argument("--batch-size", type=int, default=16, help="videos per batch (default: 16)")
    parser.add_argument("--workers", type=int, default=0, help="data-loading processes (default: 0)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default: cpu)")
    parser.add_argument(
        "--calibration-fraction",
        type=float,
        help="share of the videos held out for calibration without such a split (default: the run's, or 0.1)",
    )
    parser.add_argument("--seed", type=int, help="seed of that hold-out (default: the run's, or 0)")
    parser.add_argument(
        "--no-test", dest="evaluate_test", action="store_false", help="do not apply the points to the test split"
    )
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.batch_size < 1 or args.workers < 0:
        parser.error("--batch-size must be at least 1 and --workers at least 0")
    try:
        result = calibrate_run_folder(
            args.run_dir,
            args.data,
            split=args.split,
            confidence_kind=args.confidence,
            batch_size=args.batch_size,
            workers=args.workers,
            device=args.device,
            calibration_fraction=args.calibration_fraction,
            seed=args.seed,
            evaluate_test=args.evaluate_test,
        )
    except (CalibrationError, FileNotFoundError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    for note in result.notes:
        print(f"note: {note}", file=sys.stderr)
    if result.unreadable:
        print(f"note: {len(result.unreadable)} unreadable video(s) skipped (listed in summary.json)", file=sys.stderr)
    print(f"{result.videos} videos ({args.split}), confidence {result.confidence}")
    print(points_table(result))
    kept = f"; the uncalibrated model is kept in {result.backup}" if result.backup else ""
    print(f"wrote the operating points into {args.run_dir / 'model.pt'} and summary.json{kept}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
