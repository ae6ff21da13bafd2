"""``adafocus-batch INPUT --out OUTPUT``: classify a folder, a list or a glob of videos on Ray Data.

Rerunning the same command skips the inputs already written. See docs/batch.md.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import get_args

from pipeline.answers import ExitError
from pipeline.frames.decode import LoopFilterSkip
from pipeline.repository import ModelRepositoryError

from .inputs import VIDEO_EXTENSIONS
from .job import DEFAULT_PROVIDERS, JobConfig, run_job
from .limits import Limits, SettingError, setting, skip_loop_filter_setting
from .output import FORMATS


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="adafocus-batch",
        description="Classify every video of INPUT with an exported AdaFocus pipeline on Ray Data; one row per "
        "video in OUTPUT. Rerunning the same command skips the videos already written.",
    )
    p.add_argument(
        "input",
        metavar="INPUT",
        help="a folder (recursively), a .txt/.csv list of paths, or a glob; "
        "local, or a pyarrow filesystem URI (s3://bucket/prefix)",
    )
    p.add_argument("--out", required=True, metavar="OUTPUT", help="output folder of Parquet (or JSONL) parts")
    p.add_argument(
        "--model",
        default="adafocus_v2",
        metavar="NAME[:VERSION]",
        help="pipeline (newest version unless given; default adafocus_v2)",
    )
    p.add_argument("--repo", default="model_repo", metavar="DIR", help="model repository (default model_repo)")
    p.add_argument(
        "--exit",
        metavar="POINT",
        help="off, an operating point's name, or a GMACs-per-video budget "
        "(default: ADAFOCUS_DEFAULT_EXIT or balanced where the model has it, else every frame)",
    )
    p.add_argument("--format", choices=FORMATS, default="parquet")
    p.add_argument("--top-k", type=int, default=5, help="labels per row (default 5)")
    p.add_argument(
        "--ray-address",
        metavar="ADDR",
        help="a running cluster (ray start --head; 'auto'); default: Ray on this machine",
    )
    p.add_argument("--decode-workers", type=int, metavar="N", help="decode tasks at once (default: one per CPU)")
    p.add_argument(
        "--inference-workers", type=int, metavar="N", help="inference actors per round (default: one per GPU, else one)"
    )
    p.add_argument(
        "--gpus-per-actor", type=float, help="GPUs per inference actor (default 1 where the cluster has GPUs, else 0)"
    )
    p.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs Ray reserves per inference actor")
    p.add_argument(
        "--providers",
        default=",".join(DEFAULT_PROVIDERS),
        help="ONNX Runtime providers in order of preference, comma-separated (unavailable ones are skipped)",
    )
    p.add_argument("--threads", type=int, default=0, help="ONNX Runtime threads per session (0: its default)")
    p.add_argument("--trt-cache-dir", help="TensorRT engine cache (on every node)")
    p.add_argument("--trt-fp16", action="store_true", help="TensorRT engines in FP16 (the service's ADAFOCUS_TRT_FP16)")
    p.add_argument(
        "--decode-batch",
        type=int,
        default=32,
        help="most videos per decode task call (fewer of large files: about 8 MB of video per call)",
    )
    p.add_argument("--inference-batch", type=int, default=32, help="videos per actor call and rows per step batch")
    p.add_argument(
        "--extensions",
        default=",".join(VIDEO_EXTENSIONS),
        help="file endings a folder or glob yields, comma-separated ('' for every file)",
    )
    limits = p.add_argument_group("limits (the service's, and its ADAFOCUS_* variables)")
    limits.add_argument("--max-mb", type=float, default=setting("max_upload_mb"), help="largest file")
    limits.add_argument("--max-duration-s", type=float, default=setting("max_duration_s"))
    limits.add_argument("--max-pixels", type=int, default=int(setting("max_pixels")), help="largest frame")
    limits.add_argument("--decode-timeout-s", type=float, default=setting("decode_timeout_s"))
    limits.add_argument(
        "--decode-budget-mpx",
        type=float,
        default=setting("decode_budget_mpx"),
        help="most megapixels one video may decode, sampled or not",
    )
    p.add_argument(
        "--skip-loop-filter",
        choices=get_args(LoopFilterSkip),
        default=None,
        help="skip FFmpeg's deblocking filter (faster decoding, pixels slightly off the training decoder's; "
        "default: ADAFOCUS_DECODE_SKIP_LOOP_FILTER, else none, as the service)",
    )
    p.add_argument("--flush-rows", type=int, default=256, help="rows per output part")
    p.add_argument("--flush-s", type=float, default=10.0, help="longest wait before buffered rows are written")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--summary-json", metavar="FILE", help="also write the summary as JSON")
    return p


def config_of(args: argparse.Namespace) -> JobConfig:
    """The job the parsed command line asks for."""
    return JobConfig(
        input=args.input,
        out=args.out,
        model=args.model,
        repo=args.repo,
        exit=args.exit,
        format=args.format,
        top_k=args.top_k,
        ray_address=args.ray_address,
        decode_workers=args.decode_workers,
        inference_workers=args.inference_workers,
        gpus_per_actor=args.gpus_per_actor,
        cpus_per_actor=args.cpus_per_actor,
        providers=tuple(p.strip() for p in args.providers.split(",") if p.strip()),
        threads=args.threads,
        trt_cache_dir=args.trt_cache_dir,
        trt_fp16=args.trt_fp16,
        decode_batch=args.decode_batch,
        inference_batch=args.inference_batch,
        limits=Limits(
            max_upload_mb=args.max_mb,
            max_duration_s=args.max_duration_s,
            max_pixels=args.max_pixels,
            decode_timeout_s=args.decode_timeout_s,
            decode_budget_mpx=args.decode_budget_mpx,
        ),
        skip_loop_filter=args.skip_loop_filter or skip_loop_filter_setting(),
        extensions=tuple(e.strip() for e in args.extensions.split(",") if e.strip()),
        flush_rows=args.flush_rows,
        flush_s=args.flush_s,
        progress=not args.no_progress,
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Run the job; 0 when every input has a row (bad files included), 2 for a bad command line."""
    args = parser().parse_args(argv)
    try:
        summary = run_job(config_of(args))
    except (ModelRepositoryError, ExitError, FileNotFoundError, SettingError) as error:
        print(f"adafocus-batch: error: {error}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("adafocus-batch: interrupted; the rows written are kept, rerun to go on", file=sys.stderr)
        return 130
    print("\n".join(summary.lines()), file=sys.stderr)
    if args.summary_json:
        with open(args.summary_json, "w") as handle:
            json.dump(summary.as_dict(), handle, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
