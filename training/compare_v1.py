"""AdaFocus V1 against AdaFocusV2 on one dataset: training time, accuracy, GMACs; one report.

The command line of :mod:`training.experiments.compare_v1` (``adafocus-compare-v1``), which documents it.
"""

from training.experiments.compare_v1 import main

if __name__ == "__main__":
    raise SystemExit(main())
