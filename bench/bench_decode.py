"""Decode + sample + resize time per video for T=16, seek vs sequential, at 360p and 720p.

    python bench/bench_decode.py          # writes docs/benchmarks/decode.{json,md}

Clips are generated (10 s, 30 fps, H.264, camera-like moving content) with a keyframe every
second and every 250 frames. For each clip it times, median of several runs:

* ``decode all``: every frame decoded with frame threads, nothing converted (the reference);
* ``naive seek``: a seek per sample to its timestamp, then decode to it (no index);
* ``read_clip`` with ``strategy`` auto (the default planner), seek and sequential: the full
  pipeline (index pass, decode, reformat to 256, centre crop 224, normalise).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import av
import numpy as np

from pipeline.frames.decode import hardware_device, read_clip
from pipeline.frames.sampling import segment_indices
from pipeline.frames.transform import FrameGeometry

OUT_DIR = Path("docs/benchmarks")
SAMPLES = 16
GEOMETRY = FrameGeometry(256, 224)


def render_scene(i: int, width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """A camera-like frame: a drifting smooth background, moving discs, mild sensor noise."""
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    phase = i / 30.0
    red = 128 + 90 * np.sin(xs / width * 3 + phase)
    green = 128 + 90 * np.sin(ys / height * 2 - phase * 0.7)
    blue = 128 + 60 * np.sin((xs + ys) / (width + height) * 5 + phase * 0.3)
    image = np.stack([red, green, blue], axis=-1)
    for k in range(6):
        cx = (0.5 + 0.4 * np.sin(phase * (0.5 + 0.2 * k) + k)) * width
        cy = (0.5 + 0.4 * np.cos(phase * (0.4 + 0.15 * k) + 2 * k)) * height
        radius = height * (0.05 + 0.02 * k)
        inside = (xs - cx) ** 2 + (ys - cy) ** 2 < radius**2
        image[inside] = (40 * k % 256, 255 - 30 * k, 90 + 25 * k)
    image += rng.normal(0, 3, image.shape)
    return np.clip(image, 0, 255).astype(np.uint8)


def make_clip(path: Path, width: int, height: int, gop: int, seconds: int = 10, fps: int = 30) -> Path:
    """A camera-like H.264 clip (x264 defaults but 'veryfast', B-frames on) with fixed keyframes."""
    rng = np.random.default_rng(0)
    with av.open(str(path), "w") as output:
        stream = output.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "23"})
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.codec_context.gop_size = gop
        stream.codec_context.options = {"keyint_min": str(gop), "sc_threshold": "0"}
        for i in range(seconds * fps):
            frame = av.VideoFrame.from_ndarray(render_scene(i, width, height, rng))
            for packet in stream.encode(frame):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    return path


def decode_all(path: Path, threads: int = 0, skip_loop_filter: str = "none", hwaccel: str | None = None) -> int:
    """Every frame decoded (frame threads, ``threads`` of them; 0: FFmpeg's choice), nothing
    converted; ``skip_loop_filter`` as ``pipeline.frames.decode`` takes it, ``hwaccel`` as
    ``ClipReader`` does (a hardware device type; one that cannot be created is an error here)."""
    device = {} if hwaccel is None else {"hwaccel": hardware_device(hwaccel)}
    with av.open(str(path), **device) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        if threads:
            stream.codec_context.thread_count = threads
        if skip_loop_filter != "none":
            stream.codec_context.options = {"skip_loop_filter": skip_loop_filter}
        return sum(1 for _ in container.decode(stream))


def naive_seek(path: Path) -> int:
    """Seek to each sample's timestamp and decode forward to it; no keyframe index."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        stream.thread_type = "AUTO"
        total = stream.frames
        rate = float(stream.average_rate)
        decoded = 0
        for index in segment_indices(total, SAMPLES):
            target = int(index / rate / float(stream.time_base))
            container.seek(target, stream=stream)
            for frame in container.decode(stream):
                decoded += 1
                if frame.pts >= target:
                    frame.reformat(398, 224, format="rgb24")
                    break
        return decoded


def timed(fn, runs: int) -> float:
    fn()  # warm the page cache and the libraries
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def measure(path: Path, runs: int) -> dict:
    row = {"decode_all_s": timed(lambda: decode_all(path), runs), "naive_seek_s": timed(lambda: naive_seek(path), runs)}
    for strategy in ("auto", "seek", "sequential"):
        row[f"{strategy}_s"] = timed(lambda s=strategy: read_clip(path, SAMPLES, GEOMETRY, strategy=s), runs)
        clip = read_clip(path, SAMPLES, GEOMETRY, strategy=strategy)
        row[f"{strategy}_decoded_frames"] = clip.decoded_frames
        row[f"{strategy}_seeks"] = clip.seeks
    row["auto_speedup_vs_decode_all"] = row["decode_all_s"] / row["auto_s"]
    return row


def write_report(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "decode.json").write_text(json.dumps(report, indent=2))
    lines = [
        "# Decode benchmark",
        "",
        f"Produced by `python bench/bench_decode.py` on {report['date']} ({report['cores']} cores, PyAV "
        f"{report['pyav']}). 10 s clips, 30 fps, H.264; T={SAMPLES} samples, resize 256 + centre crop 224; "
        f"median of {report['runs']} runs. `decode all` decodes every frame with threads and converts nothing.",
        "",
        "| clip | keyframe every | decode all (s) | naive seek (s) | auto (s) | seek (s) | sequential (s) "
        "| auto: frames decoded / seeks | auto vs decode all |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['clip']} | {r['gop']} frames | {r['decode_all_s']:.3f} | {r['naive_seek_s']:.3f} | "
            f"{r['auto_s']:.3f} | {r['seek_s']:.3f} | {r['sequential_s']:.3f} | "
            f"{r['auto_decoded_frames']} / {r['auto_seeks']} | {r['auto_speedup_vs_decode_all']:.2f}x |"
        )
    never_slower = all(r["auto_s"] <= r["decode_all_s"] for r in report["results"])
    dense_keyframes = [r for r in report["results"] if r["gop"] <= 30]
    twice = all(r["auto_speedup_vs_decode_all"] >= 2 for r in dense_keyframes)
    lines += [
        "",
        f"- Aim 1, sampling never slower than decoding every frame: {'met' if never_slower else 'NOT met'}.",
        f"- Aim 2, at least 2x faster with a keyframe every second: {'met' if twice else 'NOT met'}.",
        "",
    ]
    (out_dir / "decode.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name, (width, height) in (("360p", (640, 360)), ("720p", (1280, 720))):
            for gop in (30, 250):
                path = make_clip(Path(workdir) / f"{name}_{gop}.mp4", width, height, gop)
                print(f"measuring {name}, keyframe every {gop} frames ...", file=sys.stderr, flush=True)
                results.append({"clip": name, "gop": gop, **measure(path, args.runs)})
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "cores": os.cpu_count(),
        "pyav": av.__version__,
        "runs": args.runs,
        "results": results,
    }
    write_report(report, args.out)
    print((args.out / "decode.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
