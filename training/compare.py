"""Train AdaFocusV2, its baselines and its ablations on one dataset; write the accuracy-vs-GMACs report.

The command line of :mod:`training.experiments.compare` (``adafocus-compare``), which documents it.
"""

from training.experiments.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
