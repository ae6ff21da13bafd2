"""How many decoder processes the service should run: the real-size service cells for each count.

    python -m bench.bench_decoder_sizing     # writes docs/benchmarks/decoder-sizing.{json,md}

For each ``--decode-workers`` count, ``python -m service`` serves the paper-size p128 model
(bench/realsize_models.py) and the 1080p uploads of bench/bench_realsize.py at concurrency 16,
every frame and with exit after step 4: videos/s, p95 latency and peak resident memory of the
process tree. Each decoder process reads with one thread (slice threading off a seek costs
nothing to refill): the parallelism of decoding comes from the processes, so the worker count
is the one knob. The default of ``ADAFOCUS_DECODE_WORKERS`` is the count this bench picks: the
fewest workers within 3% of the best videos/s of every cell (fewer processes hold less memory).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from pathlib import Path

from bench import bench_realsize, realsize_models
from bench.bench_service import CPU
from training.engine.machine import cpu_name

OUT_DIR = Path("docs/benchmarks")
WORKER_COUNTS = (1, 2, 3, 4)
CLIPS = ("1080p_h264_gop30", "1080p_h264_gop250")
SCENARIOS = ("p128_full", "p128_after_4")
WITHIN = 0.03  # a count within 3% of the best videos/s is as good


def pick(results: dict[int, dict]) -> int:
    """The fewest workers whose videos/s is within :data:`WITHIN` of the best in every cell."""
    cells = {(clip, scenario) for by in results.values() for clip in by for scenario in by[clip]}
    best = {cell: max(results[n][cell[0]][cell[1]][0]["videos_per_s"] for n in results) for cell in cells}
    for count in sorted(results):
        if all(results[count][c][s][0]["videos_per_s"] >= (1 - WITHIN) * best[(c, s)] for c, s in cells):
            return count
    return max(results)


def markdown(summary: dict) -> str:
    lines = [
        "# Decoder processes for 2 cores",
        "",
        f"`{summary['command']}` on {summary['machine']}, {summary['date']}; concurrency {summary['concurrency']}, "
        f"{summary['requests']} requests per cell. Each decoder process reads with one thread.",
        "",
        "| decoder processes | clip | scenario | videos/s | p95 ms | peak RSS MB |",
        "|---|---|---|---|---|---|",
    ]
    for count, by_clip in summary["cells"].items():
        for clip, by_scenario in by_clip.items():
            for scenario, (row,) in by_scenario.items():
                lines.append(
                    f"| {count} | {clip} | {scenario} | {row['videos_per_s']:.2f} | {row['p95_ms']:.0f} "
                    f"| {row['peak_rss_mb']:.0f} |"
                )
    lines += [
        "",
        f"Picked: **{summary['picked']}** decoder processes (the fewest within {WITHIN:.0%} of the best videos/s "
        "in every cell), the default of `ADAFOCUS_DECODE_WORKERS`.",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_realsize"), help="clips and models, kept")
    parser.add_argument("--workers", nargs="+", type=int, default=list(WORKER_COUNTS))
    parser.add_argument("--clips", nargs="+", choices=list(bench_realsize.CLIPS), default=list(CLIPS))
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--requests", type=int, default=32)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    scenarios = [bench_realsize.SCENARIOS[name] for name in SCENARIOS]
    repo = realsize_models.export_models(args.work, ["adafocus_v2_p128"])
    clips = bench_realsize.encode_clips(args.work, [bench_realsize.CLIPS[name] for name in args.clips])
    cells = {}
    for count in args.workers:
        options = argparse.Namespace(
            provider=CPU, decode_workers=count, concurrency=[args.concurrency], min_requests=args.requests
        )
        cells[count] = bench_realsize.service_cells(repo, clips, scenarios, options)
    summary = {
        "command": " ".join(["python -m bench.bench_decoder_sizing", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "concurrency": args.concurrency,
        "requests": args.requests,
        "cells": cells,
        "picked": pick(cells),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoder-sizing.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "decoder-sizing.md").write_text(markdown(summary))
    print(f"picked {summary['picked']} decoder processes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
