"""The batch job against the HTTP service on the same machine and clips (issue 26).

    python -m bench.bench_batch                          # writes docs/benchmarks/batch.{json,md}
    python -m bench.bench_batch --workloads synthetic --videos 240

Workloads:

* ``synthetic``: the shipped ``adafocus_v2`` (128 px) on synthetic test clips (128x128, 32
  frames), with the balanced exit (the batch job's two rounds) and on every frame;
* ``realsize_720p``: AdaFocusV2 at paper size (``bench/realsize_models.py``, patch 128, random
  weights) on copies of bench_realsize's 10 s 720p H.264 upload (GOP 30), every frame.

For each (workload, exit): the service (``python -m service``, serving that model alone) gets
every clip once from N concurrent request loops (``bench_service.load``) at concurrency 1, 4
and 16, and its best cell is kept; then ``adafocus-batch`` classifies the same clips as files
(a fresh output folder, Ray started by the command, its defaults otherwise). Reported for the
batch job: videos/s from its first row to its last (its summary's, Ray's start-up excluded) and
for the whole command, CPU ms per video of the whole process tree (the driver, Ray's processes,
its workers and their decoder children, polled every 0.2 s; Ray's start-up included), and the
tree's peak resident memory. For the service: videos/s, CPU ms per video of the server and its
decoders (the load generator excluded), and its peak resident memory.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.bench_service import (
    CPU,
    Poller,
    _descendants,
    _peak_kb,
    cpu_seconds,
    free_port,
    load,
    peak_rss_mb,
    start_server,
    stolen_line,
    test_videos,
)
from training.engine.machine import cpu_name, cpu_ticks, stolen_share

OUT_DIR = Path("docs/benchmarks")
CONCURRENCY = (1, 4, 16)
SHIPPED_REPO = Path("model_repo")


@dataclass(frozen=True)
class Case:
    """One comparison: a model of a repository, an exit, and the clips (files)."""

    workload: str
    repo: Path
    model: str
    exit: str
    clips: list[Path]


# -- clips -----------------------------------------------------------------------------------
def synthetic_clips(folder: Path, count: int) -> list[Path]:
    """``count`` synthetic test clips as files (``bench_service``'s, seed 31)."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index, (data, label) in enumerate(test_videos(count)):
        path = folder / f"{index:05d}_{label}.mp4"
        path.write_bytes(data)
        paths.append(path)
    return paths


def realsize_case(work: Path, copies: int) -> Case:
    """The paper-size p128 model and ``copies`` copies of the 720p GOP-30 upload."""
    from bench import realsize_models
    from bench.bench_realsize import CLIPS, encode_clips

    repo = realsize_models.export_models(work, ["adafocus_v2_p128"], log=lambda m: print(m, file=sys.stderr))
    source = encode_clips(work, [CLIPS["720p_h264_gop30"]])["720p_h264_gop30"]
    folder = work / "batch_clips_720p"
    folder.mkdir(parents=True, exist_ok=True)
    paths = []
    for index in range(copies):  # distinct names: the job keys its rows by path
        path = folder / f"{index:03d}.mp4"
        if not path.exists():
            shutil.copy(source, path)
        paths.append(path)
    return Case("realsize_720p", repo, "adafocus_v2_p128", "off", paths)


# -- the service -----------------------------------------------------------------------------
def service_cells(case: Case) -> list[dict]:
    """The service on every clip once, at each concurrency; CPU per video without the client."""
    settings = {"ADAFOCUS_MODELS": json.dumps([case.model]), "ADAFOCUS_DEFAULT_MODEL": case.model}
    server = start_server(case.repo, port := free_port(), 0, CPU, settings)
    videos = [(path.read_bytes(), None) for path in case.clips]
    cells = []
    try:
        for concurrency in CONCURRENCY:
            cell = asyncio.run(
                load(port, videos, {"model": case.model, "exit": case.exit}, concurrency, len(videos), server.pid)
            )
            cpu = cell["cpu_ms_per_video"]
            cells.append(
                {
                    "concurrency": concurrency,
                    "videos_per_s": cell["videos_per_s"],
                    "p50_ms": cell["p50_ms"],
                    "p99_ms": cell["p99_ms"],
                    "cpu_ms_per_video": cpu["server"] + cpu["decoders"],
                    "frames_decoded_per_video": cell["frames_decoded_per_video"],
                    "mean_exit_step": cell["mean_exit_step"],
                }
            )
            print(f"service {case.workload} {case.exit} c={concurrency}: {cell['videos_per_s']:.1f}/s", file=sys.stderr)
        peak = peak_rss_mb(server.pid)
    finally:
        server.terminate()
        server.wait(30)
    for cell in cells:
        cell["peak_rss_mb"] = peak  # the server's peak over its cells (VmHWM is not reset between them)
    return cells


# -- the batch job ---------------------------------------------------------------------------
class TreeSampler(Poller):
    """Polls a process tree: the CPU seconds of each process last seen, and each one's peak RSS."""

    def __init__(self, pid: int, interval_s: float = 0.2) -> None:
        super().__init__(interval_s)
        self.pid = pid
        self.cpu: dict[int, float] = {}
        self.peak_kb: dict[int, int] = {}

    def sample(self) -> None:
        for pid in [self.pid, *_descendants(self.pid)]:
            try:
                cpu, peak = cpu_seconds(pid), _peak_kb(pid)
            except OSError:
                continue  # ended between the listing and the read
            if cpu:
                self.cpu[pid] = max(cpu, self.cpu.get(pid, 0.0))
            if peak:
                self.peak_kb[pid] = max(peak, self.peak_kb.get(pid, 0))

    @property
    def cpu_s(self) -> float:
        return sum(self.cpu.values())

    @property
    def peak_rss_mb(self) -> float:
        """The sum of each process's peak (an upper bound on the tree's peak at any one time)."""
        return sum(self.peak_kb.values()) / 1024


def batch_runs(case: Case, scratch: Path, extra: list[str]) -> dict:
    """The job on one clip (its fixed cost: Ray's start, the workers', the actors' sessions),
    then on every clip; the figures of the second, and the marginal ones: what each video
    beyond the first adds, the figures an archive of millions of files sees."""
    one = batch_run(case.clips[:1], case, scratch, extra)
    every = batch_run(case.clips, case, scratch, extra)
    extra_videos = every["videos"] - one["videos"]
    return {
        **every,
        "fixed": {"command_s": one["command_s"], "cpu_s": one["cpu_s"]},
        "marginal_videos_per_s": extra_videos / max(every["command_s"] - one["command_s"], 1e-9),
        "marginal_cpu_ms_per_video": 1000 * (every["cpu_s"] - one["cpu_s"]) / extra_videos,
    }


def batch_run(clips: list[Path], case: Case, scratch: Path, extra: list[str]) -> dict:
    """``adafocus-batch`` on ``clips`` (a list file), into a fresh output folder."""
    listing = scratch / f"{case.workload}_{case.exit}.txt"
    listing.write_text("".join(f"{path}\n" for path in clips))
    out, summary_path = scratch / f"out_{case.workload}_{case.exit}", scratch / f"summary_{case.workload}.json"
    shutil.rmtree(out, ignore_errors=True)
    command = [
        sys.executable,
        "-m",
        "batch.cli",
        str(listing),
        "--out",
        str(out),
        "--repo",
        str(case.repo),
        "--model",
        case.model,
        "--exit",
        case.exit,
        "--no-progress",
        "--summary-json",
        str(summary_path),
        *extra,
    ]
    started = time.perf_counter()
    job = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    with TreeSampler(job.pid) as tree:
        _, stderr = job.communicate()
    wall = time.perf_counter() - started
    if job.returncode != 0:
        raise RuntimeError(f"adafocus-batch failed ({job.returncode}): {stderr[-2000:]}")
    summary = json.loads(summary_path.read_text())
    videos = summary["written"]
    print(f"batch {case.workload} {case.exit}: {summary['videos_per_s']:.1f}/s", file=sys.stderr)
    return {
        "videos": videos,
        "videos_per_s": summary["videos_per_s"],
        "command_videos_per_s": videos / wall,
        "command_s": wall,
        "cpu_s": tree.cpu_s,
        "cpu_ms_per_video": 1000 * tree.cpu_s / videos,
        "peak_rss_mb": tree.peak_rss_mb,
        "frames_decoded_per_video": summary["frames_decoded"] / videos,
        "statuses": summary["statuses"],
        "exit_steps": summary["exit_steps"],
    }


# -- results ---------------------------------------------------------------------------------
def best_cell(cells: list[dict]) -> dict:
    return max(cells, key=lambda cell: cell["videos_per_s"])


def aims(results: dict) -> list[str]:
    """Per case: the batch job, per video past its fixed start-up cost, at least the service's
    best videos/s, with lower CPU per video."""
    lines = []
    for name, case in results["cases"].items():
        service, batch = best_cell(case["service"]), case["batch"]
        rate, cpu = batch["marginal_videos_per_s"], batch["marginal_cpu_ms_per_video"]
        met = rate >= service["videos_per_s"] and cpu < service["cpu_ms_per_video"]
        lines.append(
            f"- **{'Met' if met else 'Not met'}** ({name}): the batch job {rate:.1f} videos/s at {cpu:.1f} CPU ms per "
            f"video past its start-up ({batch['fixed']['command_s']:.0f} s and {batch['fixed']['cpu_s']:.0f} CPU s "
            f"for a one-clip job), the service at its best (concurrency {service['concurrency']}) "
            f"{service['videos_per_s']:.1f} videos/s at {service['cpu_ms_per_video']:.1f} CPU ms per video "
            f"({rate / service['videos_per_s']:.2f}x the rate, {cpu / service['cpu_ms_per_video']:.2f}x the CPU)."
        )
    return lines


def markdown(results: dict) -> str:
    lines = [
        "# Batch job against the service",
        "",
        f"`{results['command']}` on {results['machine']}, {results['date']}; CPUExecutionProvider, ONNX Runtime's "
        "default threads on both sides, the service's and the batch job's default workers. Each clip is sent or "
        "read once per cell (bench/bench_batch.py's docstring: how each figure is measured).",
        "",
        *stolen_line(results),
        "| case | clips | front end | videos/s | CPU ms per video | frames decoded per video | peak RSS MB |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, case in results["cases"].items():
        for cell in case["service"]:
            lines.append(
                f"| {name} | {case['clips']} | service, concurrency {cell['concurrency']} | "
                f"{cell['videos_per_s']:.1f} | {cell['cpu_ms_per_video']:.1f} | {cell['frames_decoded_per_video']:.1f} "
                f"| {cell['peak_rss_mb']:.0f} |"
            )
        batch = case["batch"]
        lines += [
            f"| {name} | {case['clips']} | adafocus-batch, the whole command | {batch['command_videos_per_s']:.1f} | "
            f"{batch['cpu_ms_per_video']:.1f} | {batch['frames_decoded_per_video']:.1f} | {batch['peak_rss_mb']:.0f} |",
            f"| {name} | {case['clips']} | adafocus-batch, each video past the first | "
            f"{batch['marginal_videos_per_s']:.1f} | {batch['marginal_cpu_ms_per_video']:.1f} | | |",
        ]
    lines += [
        "",
        "The service's CPU: the server and its decoder processes (the load generator shares the cores but is not "
        "counted); its peak RSS is the server tree's over its three cells. The batch job's CPU: every process of "
        "the command (Ray's start-up and idle daemons included); its peak RSS sums each process's peak. Each video "
        "past the first: the whole command less a one-clip job of the same case (Ray's start, the workers' and the "
        "actors' sessions), over the videos past the first; what an archive of many files sees.",
        "",
        "## Aims",
        "",
        *results["aims"],
        "",
    ]
    return "\n".join(lines)


def cases_for(args: argparse.Namespace, scratch: Path) -> list[Case]:
    cases = []
    if "synthetic" in args.workloads:
        clips = synthetic_clips(scratch / "synthetic", args.videos)
        for exit in ("balanced", "off"):
            cases.append(Case("synthetic", SHIPPED_REPO, "adafocus_v2", exit, clips))
    if "realsize_720p" in args.workloads:
        cases.append(realsize_case(args.work, args.realsize_videos))
    return cases


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--workloads", nargs="+", choices=("synthetic", "realsize_720p"), default=["synthetic", "realsize_720p"]
    )
    parser.add_argument("--videos", type=int, default=480, help="synthetic clips")
    parser.add_argument("--realsize-videos", type=int, default=24, help="copies of the 720p upload")
    parser.add_argument(
        "--work", type=Path, default=Path("/tmp/bench_realsize"), help="bench_realsize's models and clips"
    )
    parser.add_argument("--batch-args", default="", help="more adafocus-batch options, one string")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    ticks = cpu_ticks()
    scratch = Path(tempfile.mkdtemp(prefix="bench-batch-"))
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench.bench_batch", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores",
        "date": time.strftime("%Y-%m-%d"),
        "cases": {},
    }
    try:
        for case in cases_for(args, scratch):
            name = f"{case.workload} ({case.model}, exit {case.exit})"
            results["cases"][name] = {
                "clips": len(case.clips),
                "service": service_cells(case),
                "batch": batch_runs(case, scratch, args.batch_args.split()),
            }
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    results["stolen_cpu_share"] = stolen_share(ticks, cpu_ticks())
    results["aims"] = aims(results)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "batch.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "batch.md").write_text(markdown(results))
    print("\n".join(results["aims"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
