"""What skipping FFmpeg's deblocking filter (``skip_loop_filter``) saves and what it costs.

    python -m bench.bench_loop_filter     # writes docs/benchmarks/loop-filter.{json,md}

H.264 and HEVC decoders spend a large share of their time in the in-loop deblocking filter,
whose effect (smoothing block edges) mostly vanishes when a 1080p frame is scaled down to the
model's input. FFmpeg can skip it on B-frames (``bidir``) or on every frame (``all``); skipped
on reference frames, the unfiltered pixels also propagate to the frames predicted from them.
The service offers it as ``ADAFOCUS_DECODE_SKIP_LOOP_FILTER`` (off by default: with it, the
served pixels are no longer the training decoder's).

1. Cost at real sizes: on the real-size bench's uploads (bench/bench_realsize.py, 720p and
   1080p H.264 at GOP 30 and 250, 1080p HEVC), the decode floor (``decode_only``, one thread:
   the frames the 16 samples need, and those that exit after step 4 needs) and every frame
   decoded, per mode; and how far the model's 224 px uint8 crops of the 16 samples move from
   the bit-exact decode (mean, 99th percentile and largest absolute difference, grey levels).
2. Accuracy: the shipped model on the synthetic test split, every frame processed, with each
   mode, on the clips as generated (crf 16) and re-encoded at crf 28 with the encoder's
   default B-frames and keyframes (closer to a web upload, where deblocking does more).
"""

from __future__ import annotations

import argparse
import functools
import json
import sys
import time
from pathlib import Path
from typing import get_args

import numpy as np

from bench import bench_realsize, realsize_models
from bench.bench_decode import decode_all
from bench.bench_keyframes import reencode
from pipeline.frames.decode import ClipReader, LoopFilterSkip, decode_only
from pipeline.frames.transform import FrameGeometry
from pipeline.onnx_steps import OnnxPipeline, create_sessions, normalisation_of
from pipeline.repository import load_pipeline
from training.data.splits import load_splits
from training.engine.machine import cpu_name, cpu_ticks, stolen_share

OUT_DIR = Path("docs/benchmarks")
MODES: tuple[LoopFilterSkip, ...] = get_args(LoopFilterSkip)
SAMPLES = bench_realsize.SAMPLES
GEOMETRY = bench_realsize.GEOMETRY
EARLY_EXIT_STEPS = 4
REENCODED_CRF = 28


def crops(path: Path, samples, geometry: FrameGeometry, mode: LoopFilterSkip) -> np.ndarray:
    """The uint8 crops the service's decoders send for every sample of ``path``."""
    with ClipReader(path, samples, geometry, threads=1, skip_loop_filter=mode) as reader:
        return reader.read(range(reader.indices.size), normalised=False).frames


def cpu_ms(function, repeats: int) -> float:
    """Median CPU ms of ``function()`` after one warm-up call (the real-size bench's timing)."""
    cpu, _ = bench_realsize.cpu_and_wall(function, repeats)
    return 1000 * cpu


def pixel_difference(skipped: np.ndarray, exact: np.ndarray) -> dict[str, float]:
    difference = np.abs(skipped.astype(np.int16) - exact.astype(np.int16))
    return {"mean": float(difference.mean()), "p99": float(np.percentile(difference, 99)), "max": int(difference.max())}


def real_size_costs(path: Path, early_positions: list[int], repeats: int) -> dict[str, dict]:
    """Per mode: decode CPU ms (16 samples, exit after step 4, every frame) and the crops' difference."""
    exact = crops(path, SAMPLES, GEOMETRY, "none")
    rows = {}
    for mode in MODES:
        decode = functools.partial(decode_only, path, SAMPLES, threads=1, skip_loop_filter=mode)
        rows[mode] = {
            "samples_cpu_ms": cpu_ms(decode, repeats),
            "after_4_cpu_ms": cpu_ms(functools.partial(decode, positions=early_positions), repeats),
            "every_frame_cpu_ms": cpu_ms(lambda m=mode: decode_all(path, 1, m), repeats),
            "crop_difference": pixel_difference(crops(path, SAMPLES, GEOMETRY, mode), exact),
        }
    return rows


def accuracy(runner: OnnxPipeline, clips: list[tuple[Path, int]]) -> dict[str, dict]:
    """Per mode: top-1 (every frame processed) and the crops' difference from the exact decode."""
    frames = runner.manifest.frames
    geometry = FrameGeometry(frames.resize, frames.crop)
    normalise = normalisation_of(runner.manifest)
    exact = {path: crops(path, frames.samples, geometry, "none") for path, _ in clips}
    rows = {}
    for mode in MODES:
        correct, differences = 0, []
        for path, label in clips:
            uint8 = crops(path, frames.samples, geometry, mode)
            correct += int(runner.run_clip(normalise(uint8)).logits.argmax() == label)
            differences.append(np.abs(uint8.astype(np.int16) - exact[path].astype(np.int16)))
        stacked = np.stack(differences)
        rows[mode] = {"top1": correct / len(clips), "mean_difference": float(stacked.mean()), "max": int(stacked.max())}
    return rows


def markdown(results: dict) -> str:
    lines = [
        "# Skipping the deblocking filter (`skip_loop_filter`)",
        "",
        f"`{results['command']}` on {results['machine']}, {results['date']}. Module docstring of "
        "bench/bench_loop_filter.py: what is measured. CPU ms: one decoding thread, median of "
        f"{results['repeats']} runs; difference: the 224 px uint8 crops of the 16 samples against the exact decode.",
        "",
        f"CPU time stolen by the virtual machine's host during the run: {100 * results['stolen_cpu_share']:.1f}%.",
        "",
        "## Real-size uploads",
        "",
        "| clip | mode | 16 samples CPU ms | exit after 4 CPU ms | every frame CPU ms | crops: mean / p99 / max |",
        "|---|---|---|---|---|---|",
    ]
    for clip, rows in results["real_size"].items():
        base = rows["none"]
        for mode, r in rows.items():
            ratio = "" if mode == "none" else f" ({r['samples_cpu_ms'] / base['samples_cpu_ms']:.2f}x)"
            d = r["crop_difference"]
            lines.append(
                f"| {clip} | {mode} | {r['samples_cpu_ms']:.0f}{ratio} | {r['after_4_cpu_ms']:.0f} | "
                f"{r['every_frame_cpu_ms']:.0f} | {d['mean']:.2f} / {d['p99']:.0f} / {d['max']} |"
            )
    lines += [
        "",
        f"## Accuracy on the synthetic benchmark ({results['model']}, {results['clips']} test clips)",
        "",
        "| clips | mode | top-1 | crops: mean / max difference |",
        "|---|---|---|---|",
    ]
    for case, rows in results["accuracy"].items():
        for mode, r in rows.items():
            lines.append(f"| {case} | {mode} | {r['top1']:.3f} | {r['mean_difference']:.3f} / {r['max']} |")
    return "\n".join([*lines, "", *summary(results)]) + "\n"


def summary(results: dict) -> list[str]:
    """Per shortcut: the range of its decode saving, of its crops' mean difference, and its top-1 change."""
    lines = ["## Reading", ""]
    for mode in MODES[1:]:
        saving = [r[mode]["samples_cpu_ms"] / r["none"]["samples_cpu_ms"] for r in results["real_size"].values()]
        moved = [r[mode]["crop_difference"]["mean"] for r in results["real_size"].values()]
        change = [100 * (r[mode]["top1"] - r["none"]["top1"]) for r in results["accuracy"].values()]
        lines.append(
            f"- `{mode}`: decoding the 16 samples takes {min(saving):.2f}x-{max(saving):.2f}x the CPU of the exact "
            f"decode; the crops move by {min(moved):.2f}-{max(moved):.2f} grey levels on average; top-1 changes by "
            f"{', '.join(f'{c:+.1f}' for c in change)} points on the synthetic cases."
        )
    lines += [
        "",
        "The synthetic benchmark is easy (its class is a pattern visible in every frame): an unchanged top-1 "
        "there shows the shortcut breaks nothing, not that a harder dataset loses nothing. Measure it on your "
        "videos with `--data` before turning it on; it is off unless `ADAFOCUS_DECODE_SKIP_LOOP_FILTER` is set.",
    ]
    return lines


def synthetic_cases(data: str | None, count: int, work: Path) -> dict[str, list[tuple[Path, int]]]:
    """The test clips as generated, and re-encoded at crf 28 (the encoder's B-frames and keyframes)."""
    test = load_splits(data).test[:count]
    if not test:
        raise SystemExit("the data has no test split")
    generated = [(Path(sample.path), sample.labels[0]) for sample in test]
    folder = work / f"synthetic_crf{REENCODED_CRF}"
    reencoded = [(reencode(path, folder / path.name, None, REENCODED_CRF), label) for path, label in generated]
    return {"as generated (crf 16)": generated, f"re-encoded at crf {REENCODED_CRF}": reencoded}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_realsize"), help="clips and models, kept")
    parser.add_argument("--clips", nargs="+", choices=list(bench_realsize.CLIPS), default=list(bench_realsize.CLIPS))
    parser.add_argument("--repo", type=Path, default=Path("model_repo"), help="the model whose top-1 is measured")
    parser.add_argument("--model", default="adafocus_v2")
    parser.add_argument("--data", default=None, help="dataset with a test split (default: the synthetic benchmark)")
    parser.add_argument("--test-clips", type=int, default=500, help="test clips used (default: 500, the whole split)")
    parser.add_argument("--repeats", type=int, default=3, help="runs of each CPU measurement (median)")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    ticks = cpu_ticks()
    clips = bench_realsize.encode_clips(args.work, [bench_realsize.CLIPS[name] for name in args.clips])
    # The positions an exit after step 4 needs, in the paper-size models' step order.
    realsize_repo = realsize_models.export_models(args.work, ["adafocus_v2_p128"])
    early = bench_realsize.exit_positions(realsize_repo, [bench_realsize.SCENARIOS["p128_after_4"]])["after_4"]
    pipeline = load_pipeline(args.repo, args.model)
    runner = OnnxPipeline(pipeline, create_sessions(pipeline, threads=1))
    results = {
        "command": " ".join(["python -m bench.bench_loop_filter", *(sys.argv[1:] if argv is None else argv)]),
        "machine": cpu_name(),
        "date": time.strftime("%Y-%m-%d"),
        "repeats": args.repeats,
        "model": f"{args.model} v{pipeline.manifest.version}",
        "clips": args.test_clips,
        "real_size": {},
        "accuracy": {},
    }
    for name, path in clips.items():
        results["real_size"][name] = real_size_costs(path, early, args.repeats)
        print(f"{name}: done", file=sys.stderr)
    for case, test in synthetic_cases(args.data, args.test_clips, args.work).items():
        results["accuracy"][case] = accuracy(runner, test)
        print(f"{case}: {results['accuracy'][case]}", file=sys.stderr)
    results["stolen_cpu_share"] = stolen_share(ticks, cpu_ticks())
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "loop-filter.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / "loop-filter.md").write_text(markdown(results))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
