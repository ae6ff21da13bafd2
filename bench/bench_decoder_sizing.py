"""How many decoder processes the service should run: the real-size service cells for each count.

    python -m bench.bench_decoder_sizing     # writes docs/benchmarks/decoder-sizing.{json,md}

For each ``--decode-workers`` count, ``python -m service`` serves the paper-size p128 model
(bench/realsize_models.py) and the 1080p uploads of bench/bench_realsize.py at concurrency 16,
every frame and with exit after step 4: videos/s, p95 latency and peak resident memory of the
process tree. Each decoder process reads with one thread (slice threading off a seek costs
nothing to refill): the parallelism of decoding comes from the processes, so the worker count
is the one knob. The default of ``ADAFOCUS_DECODE_WORKERS`` is the count this bench picks: among
the counts whose every-frame cells stay within the memory budget (issue 25's 1 GB for the process
tree at 16 concurrent 1080p uploads; early-exit cells, which keep each video's decoder open
between stages, pass it at no count), the fewest within 3% of the best videos/s of every cell.
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
MEMORY_BUDGET_MB = 1024.0
BUDGET_SCENARIO = "p128_full"  # the cells the memory budget applies to


def within_budget(results: dict[int, dict], budget_mb: float = MEMORY_BUDGET_MB) -> dict[int, dict]:
    """The counts whose :data:`BUDGET_SCENARIO` cells all peak within ``budget_mb`` (all of them
    when none does: the budget cannot decide)."""
    fitting = {
        count: by_clip
        for count, by_clip in results.items()
        if all(by[BUDGET_SCENARIO][0]["peak_rss_mb"] <= budget_mb for by in by_clip.values() if BUDGET_SCENARIO in by)
    }
    return fitting or results


def pick(results: dict[int, dict], budget_mb: float = MEMORY_BUDGET_MB) -> int:
    """Among the counts :func:`within_budget`, the fewest whose videos/s is within :data:`WITHIN`
    of the best of those in every cell."""
    results = within_budget(results, budget_mb)
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
        f"Picked: **{summary['picked']}** decoder processes, the default of `ADAFOCUS_DECODE_WORKERS`: among "
        f"the counts whose {BUDGET_SCENARIO} cells peak within {MEMORY_BUDGET_MB:.0f} MB, the fewest within "
        f"{WITHIN:.0%} of their best videos/s in every cell. Without the memory budget: "
        f"**{summary['picked_without_budget']}**.",
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
        "picked_without_budget": pick(cells, budget_mb=float("inf")),
    }
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "decoder-sizing.json").write_text(json.dumps(summary, indent=2) + "\n")
    (args.out / "decoder-sizing.md").write_text(markdown(summary))
    print(f"picked {summary['picked']} decoder processes", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
