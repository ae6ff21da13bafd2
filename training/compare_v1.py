"""AdaFocus V1 against AdaFocusV2 on one dataset: training time, accuracy, GMACs; one report.

    python training/compare_v1.py                    # synthetic benchmark -> docs/results/v1-vs-v2.md
    python training/compare_v1.py --report-only      # rewrite the report from the finished runs
    python training/compare_v1.py --config base.toml --runs runs/mine --report docs/results/mine-v1-v2.md

The runs share the base configuration (same backbones, patch size, frames, data, seed) and
live beside ``training/compare.py``'s in ``RUNS`` (the AdaFocusV2 run is the same one, reused
when finished). Training time is each run's wall-clock training time (all four stages for
V1), so compare only runs made on the same machine: the report lists every run's machine and
says so when they differ. Like ``compare.py``, the report is written from records of the
runs' ``summary.json`` / ``config.json`` kept next to it.
"""

from training.experiments.compare_v1 import main

if __name__ == "__main__":
    raise SystemExit(main())
