"""Batch classification of a video archive on Ray Data: ``adafocus-batch INPUT --out OUTPUT``.

* :mod:`batch.inputs`: the videos of a folder, a list file or a glob (local or object storage).
* :mod:`batch.limits`: the service's decode limits, set the service's way.
* :mod:`batch.videos`: decoding in Ray tasks and the step loop in Ray actors, one video record
  carried between them.
* :mod:`batch.output`: the resumable output (Parquet or JSONL parts) and the paths already in it.
* :mod:`batch.job`: the Ray Data pipeline, the progress bar and the summary.
* :mod:`batch.cli`: the command line.

Like the service, nothing here imports torch or the training code (``lint-imports`` enforces it);
the frame pipeline, the manifest, the step loop and the answers are :mod:`pipeline`'s.
"""
