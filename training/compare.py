"""Train AdaFocusV2, its baselines and its ablations on one dataset; write the accuracy-vs-GMACs report.

    python training/compare.py                                # synthetic benchmark: runs/compare -> docs/results/
    python training/compare.py --report-only                  # rewrite the report from the finished runs
    python training/compare.py --only adafocus_v2 full_frame  # a subset
    python training/compare.py --config base.toml --set epochs=4 --runs runs/mine --report docs/results/mine.md

Every experiment is one ``python training/train.py`` run in ``RUNS/<name>`` that shares the base
configuration (``--config`` file and ``--set key=value`` entries, on top of the defaults) and
changes only what the experiment is about (:data:`EXPERIMENTS`). A finished run with the same
configuration is reused and an interrupted one resumes, so rerunning the command after a kill
loses at most one checkpoint interval. The report (Markdown table + PNG plot, test split) is
computed from the runs' ``summary.json`` files, nothing typed in; it states each aim of the
method as met or not met with the figures.

Run folders are large and not versioned, so the report keeps a record of what it was built from:
each finished run's ``summary.json`` and ``config.json`` are copied next to the report
(``docs/results/synthetic/<name>/``) and the report is written from those records. A record is
replaced whenever its run folder holds a newer finished run.
"""

from training.experiments.compare import main

if __name__ == "__main__":
    raise SystemExit(main())
