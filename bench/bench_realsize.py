"""The service at real sizes: paper-size models on 720p and 1080p uploads (issue 25).

    python -m bench.bench_realsize                    # writes docs/benchmarks/realsize.{json,md}
    python -m bench.bench_realsize --clips 1080p_h264_gop250 --scenarios p128_full full_frame_full
    python -m bench.bench_realsize --provider CUDAExecutionProvider      # on an NVIDIA GPU
    python -m bench.bench_realsize --provider TensorrtExecutionProvider --trt-fp16 --hwaccel cuda

Uploads: 10 s at 30 fps, camera-like content (``bench_decode.render_scene``), H.264 (libx264
``veryfast``, crf 23, B-frames on) at 720p and 1080p with a keyframe every second (GOP 30) and
every 8.3 s (GOP 250, the encoder default), and 1080p HEVC (libx265, GOP 250). Models
(``bench/realsize_models.py``): AdaFocusV2's ActivityNet configuration at patch 96/128/160 and
the full-frame ResNet-50 baseline, random weights of the published shapes, exported to ONNX; as
random weights have no meaningful confidence, exits are forced after step 1, 4 or 8 (``after_k``)
or never (``full``). Clips and models are kept in ``--work`` between runs.

For every (clip, scenario, concurrency) cell, ``python -m service`` serving that one model
(a fresh process per model) gets requests from N concurrent loops (``bench_service.load``):
videos/s, latency p50/p95/p99, frames decoded per video, peak resident memory of the process
tree during the cell, and CPU ms per video split four ways:

* decode: the decoder processes' CPU less the resize's;
* resize: conversion from the decoder's format, resize and crop, measured per sample on the same
  clip outside the service (the frame pipeline's ``resize_upright`` and ``crop_clip`` timed on the
  clip's 16 decoded sample frames), times the samples decoded;
* inference: the server process's CPU less its event loop's thread (batcher and ONNX Runtime threads);
* HTTP: the server's event-loop thread (upload, talking to the decoders, the answer).

The floors, in the same run: ``decode_only`` (FFmpeg decoding exactly the frames needed to reach
the samples the exit needs, the same PyAV build, nothing converted) and ONNX Runtime on
pre-decoded tensors (``OnnxPipeline.run_clip`` with the same forced exit). Also: decoding the 16
samples against decoding every frame with the same threads, and the eager PyTorch time per clip
of the AdaFocusV2 patch-128 model (frame by frame) against ONNX Runtime's.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import json
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

import av
import numpy as np
from av.video.frame import PictureType

from bench import realsize_models
from bench.bench_decode import decode_all, render_scene
from bench.bench_service import (
    CPU,
    _descendants,
    eager_vs_onnx,
    free_port,
    gpu_name,
    load,
    peak_rss_mb,
    start_server,
    stolen_line,
)
from pipeline.early_exit import OperatingPoint
from pipeline.frames.decode import LoopFilterSkip, crop_clip, decode_only, hardware_device, read_clip, resize_upright
from pipeline.frames.sampling import sample_indices
from training.engine.machine import cpu_name, cpu_ticks, stolen_share

OUT_DIR = Path("docs/benchmarks")
CONCURRENCY = (1, 4, 16)
SAMPLES = 16
FPS, SECONDS = 30, 10
THREADS = 2  # ONNX Runtime intra-op threads, the eager reference's torch threads
GEOMETRY = realsize_models.GEOMETRY


@dataclass(frozen=True)
class ClipSpec:
    name: str
    width: int
    height: int
    codec: str  # libx264 or libx265
    gop: int


CLIPS = {
    spec.name: spec
    for spec in (
        ClipSpec("720p_h264_gop30", 1280, 720, "libx264", 30),
        ClipSpec("720p_h264_gop250", 1280, 720, "libx264", 250),
        ClipSpec("1080p_h264_gop30", 1920, 1080, "libx264", 30),
        ClipSpec("1080p_h264_gop250", 1920, 1080, "libx264", 250),
        ClipSpec("1080p_hevc_gop250", 1920, 1080, "libx265", 250),
    )
}


@dataclass(frozen=True)
class Scenario:
    name: str
    model: str
    exit: str  # an operating point of realsize_models: full, after_1, after_4, after_8


SCENARIOS = {
    s.name: s
    for s in (
        Scenario("p128_full", "adafocus_v2_p128", "full"),
        Scenario("p128_after_1", "adafocus_v2_p128", "after_1"),
        Scenario("p128_after_4", "adafocus_v2_p128", "after_4"),
        Scenario("p128_after_8", "adafocus_v2_p128", "after_8"),
        Scenario("p96_full", "adafocus_v2_p96", "full"),
        Scenario("p160_full", "adafocus_v2_p160", "full"),
        Scenario("p128_int8_full", "adafocus_v2_p128_int8", "full"),
        Scenario("p128_int8_after_4", "adafocus_v2_p128_int8", "after_4"),
        Scenario("full_frame_full", "full_frame", "full"),
        Scenario("full_frame_after_4", "full_frame", "after_4"),
    )
}


# -- uploads ------------------------------------------------------------------------------
def encode_clips(work: Path, specs: list[ClipSpec]) -> dict[str, Path]:
    """The clips under ``work/clips`` (encoded once; each resolution's frames rendered once for
    all its encoders)."""
    folder = work / "clips"
    folder.mkdir(parents=True, exist_ok=True)
    paths = {spec.name: folder / f"{spec.name}.mp4" for spec in specs}
    missing = [spec for spec in specs if not paths[spec.name].is_file()]
    for size in sorted({(s.width, s.height) for s in missing}):
        group = [s for s in missing if (s.width, s.height) == size]
        print(f"encoding {', '.join(s.name for s in group)}", file=sys.stderr)
        _encode_together(group, [paths[s.name] for s in group])
    return paths


def _encode_together(specs: list[ClipSpec], paths: list[Path]) -> None:
    rng = np.random.default_rng(0)
    width, height = specs[0].width, specs[0].height
    partial = [path.with_suffix(".partial.mp4") for path in paths]
    outputs = [av.open(str(path), "w") for path in partial]
    streams = [_video_stream(output, spec) for output, spec in zip(outputs, specs)]
    for i in range(SECONDS * FPS):
        image = render_scene(i, width, height, rng)
        for output, stream in zip(outputs, streams):
            for packet in stream.encode(av.VideoFrame.from_ndarray(image)):
                output.mux(packet)
    for output, stream in zip(outputs, streams):
        for packet in stream.encode():
            output.mux(packet)
        output.close()
    for done, path in zip(partial, paths):
        done.rename(path)  # a clip is there complete or not at all


def _video_stream(output, spec: ClipSpec):
    options = {"preset": "veryfast", "crf": "23"}
    if spec.codec == "libx264":
        options.update(keyint_min=str(spec.gop), sc_threshold="0")
    else:  # x265 takes its GOP and scene-cut options in one string
        options["x265-params"] = f"keyint={spec.gop}:min-keyint={spec.gop}:scenecut=0:log-level=error"
    stream = output.add_stream(spec.codec, rate=FPS, options=options)
    stream.width, stream.height, stream.pix_fmt = spec.width, spec.height, "yuv420p"
    stream.codec_context.gop_size = spec.gop
    return stream


def clip_facts(path: Path) -> dict[str, Any]:
    """Size, frames, keyframes and B-frames of an upload (decoding every frame once)."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        codec = stream.codec_context.name
        keyframes = sum(1 for packet in container.demux(stream) if packet.is_keyframe and packet.size)
    with av.open(str(path)) as container:
        kinds = [PictureType(frame.pict_type).name for frame in container.decode(video=0)]
    return {
        "codec": codec,
        "bytes": path.stat().st_size,
        "frames": len(kinds),
        "keyframes": keyframes,
        "b_frames": kinds.count("B"),
    }


def hwaccel_problem(device: str, clip: Path) -> str | None:
    """Why ``device`` cannot decode ``clip`` on this machine (None: it can)."""
    from av.codec.hwaccel import hwdevices_available

    if device not in hwdevices_available():
        return f"not a hardware device of this FFmpeg build (it has: {', '.join(hwdevices_available())})"
    try:
        with av.open(str(clip), hwaccel=hardware_device(device)):
            return None
    except (av.error.FFmpegError, OSError, ValueError) as error:
        return f"this machine cannot create the device ({error})"


# -- floors -------------------------------------------------------------------------------
def cpu_and_wall(function, repeats: int) -> tuple[float, float]:
    """Median CPU seconds (this process, every thread) and wall seconds of ``function()``."""
    function()  # warm: page cache, libraries
    cpu, wall = [], []
    for _ in range(repeats):
        c, w = time.process_time(), time.perf_counter()
        function()
        cpu.append(time.process_time() - c)
        wall.append(time.perf_counter() - w)
    return statistics.median(cpu), statistics.median(wall)


def decode_floors(
    path: Path,
    orders: dict[str, list[int]],
    repeats: int,
    skip_loop_filter: LoopFilterSkip = "none",
    hwaccel: str | None = None,
) -> dict[str, Any]:
    """Per clip: the decode floor of each exit (``decode_only`` of the samples it needs, one
    thread as in the service's decoders), the resize cost per sample, and 16 samples against
    every frame with 1 and 2 threads; every decode with the service's ``skip_loop_filter`` and
    ``hwaccel`` (its ADAFOCUS_DECODE_HWACCEL)."""
    floors: dict[str, Any] = {}
    decode = functools.partial(decode_only, path, SAMPLES, skip_loop_filter=skip_loop_filter, hwaccel=hwaccel)
    for exit_name, positions in orders.items():
        decoded, seeks = decode(threads=1, positions=positions)
        cpu, wall = cpu_and_wall(lambda p=positions: decode(threads=1, positions=p), repeats)
        floors[exit_name] = {"cpu_ms": 1000 * cpu, "wall_ms": 1000 * wall, "frames_decoded": decoded, "seeks": seeks}
    # sampling=keyframes (every sample): each sample at its nearest keyframe, keyframes only decoded
    decoded, seeks = decode(threads=1, sampling="keyframes")
    cpu, wall = cpu_and_wall(lambda: decode(threads=1, sampling="keyframes"), repeats)
    floors["keyframes sampling"] = {
        "cpu_ms": 1000 * cpu,
        "wall_ms": 1000 * wall,
        "frames_decoded": decoded,
        "seeks": seeks,
    }
    resize_ms = resize_ms_per_sample(path, repeats)
    versus_all = {}
    for threads in (1, 2):
        _, samples = cpu_and_wall(lambda t=threads: decode(threads=t), repeats)
        _, every = cpu_and_wall(lambda t=threads: decode_all(path, t, skip_loop_filter, hwaccel), repeats)
        versus_all[str(threads)] = {
            "samples_ms": 1000 * samples,
            "every_frame_ms": 1000 * every,
            "ratio": samples / every,
        }
    return {"exits": floors, "resize_ms_per_sample": resize_ms, "samples_vs_every_frame": versus_all}


def resize_ms_per_sample(path: Path, repeats: int) -> float:
    """CPU ms to turn one decoded sample into the model's uint8 crop, as the service's decoders do
    (``resize_upright``: one swscale call from the decoder's format; then ``crop_clip``), timed on
    the clip's own sample frames. Measured directly: a difference of two decode timings is
    noisier than the resize itself."""
    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        wanted = set(sample_indices(stream.frames, SAMPLES, None).tolist())
        frames = [frame for number, frame in enumerate(container.decode(stream)) if number in wanted]

    def resize_all() -> None:
        resized = [resize_upright(frame, GEOMETRY) for frame in frames]
        crop_clip(resized, GEOMETRY, GEOMETRY.centre_box(frames[0].width, frames[0].height))

    cpu, _ = cpu_and_wall(resize_all, max(repeats, 5))
    return 1000 * cpu / len(frames)


def inference_floors(
    repo: Path, scenarios: list[Scenario], provider: str, repeats: int, trt_fp16: bool = False
) -> dict[str, Any]:
    """ONNX Runtime alone on pre-decoded tensors, with each scenario's forced exit: CPU and wall ms per clip
    (``trt_fp16``: TensorRT engines in FP16, as the service's ADAFOCUS_TRT_FP16)."""
    from pipeline.onnx_steps import OnnxPipeline, create_sessions
    from pipeline.repository import load_pipeline

    frames = np.random.default_rng(0).integers(0, 256, (SAMPLES, GEOMETRY.crop, GEOMETRY.crop, 3), dtype=np.uint8)
    floors, runners = {}, {}
    for scenario in scenarios:
        if scenario.model not in runners:
            pipeline = load_pipeline(repo, scenario.model)
            providers = list(dict.fromkeys([provider, CPU]))
            sessions = create_sessions(pipeline, providers, THREADS, fp16=trt_fp16)
            runners[scenario.model] = OnnxPipeline(pipeline, sessions)
        runner = runners[scenario.model]
        spec = next(p for p in runner.manifest.operating_points if scenario.exit in p.names)
        thresholds = OperatingPoint.from_dict(spec.model_dump()).thresholds  # ("inf" in JSON -> float)
        cpu, wall = cpu_and_wall(lambda r=runner, t=thresholds: r.run_clip(frames, t), repeats)
        floors[scenario.name] = {"cpu_ms": 1000 * cpu, "wall_ms": 1000 * wall}
    return floors


EXIT_STEPS = {"full": SAMPLES, **{f"after_{k}": k for k in realsize_models.FORCED_EXITS}}


def step_order(repo: Path, model: str) -> list[int]:
    """The sample positions in the order the model's steps take them (coarse to fine here)."""
    return realsize_models.latest_manifest(repo, model)["frames"]["order"]


def exit_positions(repo: Path, scenarios: list[Scenario]) -> dict[str, list[int]]:
    """The sample positions each exit needs (every model of the bench has the same order)."""
    order = step_order(repo, scenarios[0].model)
    exits = dict.fromkeys(s.exit for s in scenarios)
    return {name: sorted(order[: EXIT_STEPS[name]]) for name in ("full", *exits)}


# -- the service --------------------------------------------------------------------------
def reset_peak_rss(pid: int) -> None:
    """Reset the peak resident memory (VmHWM) of ``pid`` and its children, so that a cell
    reads its own peak (Linux: writing 5 to ``clear_refs``)."""
    for process in [pid, *_descendants(pid)]:
        try:
            Path(f"/proc/{process}/clear_refs").write_text("5")
        except OSError:
            pass  # ended meanwhile


def serve(
    repo: Path,
    model: str,
    provider: str,
    decode_workers: int,
    skip_loop_filter: LoopFilterSkip = "none",
    trt_fp16: bool = False,
    hwaccel: str | None = None,
):
    """``python -m service`` serving ``model`` alone, every frame unless a request names an exit."""
    settings = {
        "ADAFOCUS_DECODE_HWACCEL": hwaccel or "",
        "ADAFOCUS_TRT_FP16": str(trt_fp16).lower(),
        "ADAFOCUS_MODELS": json.dumps([model]),
        "ADAFOCUS_DEFAULT_MODEL": model,
        "ADAFOCUS_DEFAULT_EXIT": "full",
        "ADAFOCUS_DECODE_WORKERS": str(decode_workers),
        "ADAFOCUS_DECODE_SKIP_LOOP_FILTER": skip_loop_filter,
    }
    port = free_port()
    return start_server(repo, port, THREADS, provider, settings), port


def cpu_split(cell: dict, resize_ms_per_sample: float) -> dict[str, float]:
    """The cell's CPU ms per video as decode / resize / inference / HTTP (module docstring)."""
    cpu = cell["cpu_ms_per_video"]
    resize = resize_ms_per_sample * cell["samples_decoded_per_video"]
    return {
        "decode": max(0.0, cpu["decoders"] - resize),
        "resize": resize,
        "inference": cpu["server"] - cpu["server_event_loop"],
        "http": cpu["server_event_loop"],
        "client": cpu["client"],
    }


def samples_decoded(order: list[int], steps: int) -> int:
    """Samples the service asks for when a video exits after ``steps`` steps: every decode call
    (``decode_schedule``'s stages) that holds one of the steps' positions. (A reader also resizes
    the later samples it passes on the way, so on a clip with few keyframes this undercounts the
    resizes of an early exit.)"""
    from service.decoding import decode_schedule

    needed = set(order[:steps])
    return sum(len(stage) for stage in decode_schedule(order) if needed & set(stage))


def run_cell(
    port: int, pid: int, video: bytes, scenario: Scenario, order: list[int], concurrency: int, requests: int
) -> dict:
    reset_peak_rss(pid)
    params = {"model": scenario.model, "exit": scenario.exit}
    cell = asyncio.run(load(port, [(video, None)], params, concurrency, requests, pid))
    cell["peak_rss_mb"] = peak_rss_mb(pid)
    cell["samples_decoded_per_video"] = samples_decoded(order, EXIT_STEPS[scenario.exit])
    for unused in ("top1", "decode_share"):
        cell.pop(unused, None)
    return cell


def service_cells(
    repo: Path, clips: dict[str, Path], scenarios: list[Scenario], args: argparse.Namespace
) -> dict[str, dict[str, list[dict]]]:
    """Every (clip, scenario, concurrency) cell, one service process per model."""
    cells: dict[str, dict[str, list[dict]]] = {name: {} for name in clips}
    order = step_order(repo, scenarios[0].model)
    for model in dict.fromkeys(s.model for s in scenarios):
        server, port = serve(
            repo, model, args.provider, args.decode_workers, args.skip_loop_filter, args.trt_fp16, args.hwaccel
        )
        try:
            for clip_name, path in clips.items():
                video = path.read_bytes()
                for scenario in (s for s in scenarios if s.model == model):
                    rows = []
                    for c in args.concurrency:
                        requests = max(args.min_requests, 2 * c)
                        rows.append(run_cell(port, server.pid, video, scenario, order, c, requests))
                        print(f"{clip_name} {scenario.name} c={c}: {rows[-1]['videos_per_s']:.2f}/s", file=sys.stderr)
                    cells[clip_name][scenario.name] = rows
        finally:
            server.terminate()
            server.wait(30)
    return cells


# -- results ------------------------------------------------------------------------------
def with_floors(results: dict) -> None:
    """Each cell's CPU split and its service CPU per video as a multiple of the floors."""
    for clip_name, by_scenario in results["cells"].items():
        decode = results["floors"]["decode"][clip_name]
        for scenario_name, rows in by_scenario.items():
            scenario = SCENARIOS[scenario_name]
            floor = decode["exits"][scenario.exit]["cpu_ms"] + results["floors"]["inference"][scenario_name]["cpu_ms"]
            for row in rows:
                row["cpu_split_ms"] = cpu_split(row, decode["resize_ms_per_sample"])
                served = row["cpu_ms_per_video"]["server"] + row["cpu_ms_per_video"]["decoders"]
                row["floor_cpu_ms"] = floor
                row["times_floor"] = served / floor


def _at(results: dict, clip: str, scenario: str, concurrency: int) -> dict | None:
    rows = results["cells"].get(clip, {}).get(scenario, [])
    return next((r for r in rows if r["concurrency"] == concurrency), None)


def _verdict(met: bool) -> str:
    return "**Met**" if met else "**Not met**"


def aims(results: dict) -> list[str]:
    """The issue's aims, each stated met or not met with its figures (or why it was not measured)."""
    top = max(results["concurrency"])
    hd = [c for c in results["cells"] if c.startswith("1080p")]
    lines = []
    for scenario, aim in (("p128_full", 1.6), ("p128_after_4", 6.0)):
        ratios = {}
        for clip in hd:
            ours, base = _at(results, clip, scenario, top), _at(results, clip, "full_frame_full", top)
            if ours and base:
                ratios[clip] = ours["videos_per_s"] / base["videos_per_s"]
        if ratios:
            shown = ", ".join(f"{clip} {ratio:.2f}x" for clip, ratio in ratios.items())
            lines.append(
                f"- {_verdict(min(ratios.values()) >= aim)}: AdaFocusV2 p128 ({scenario}) at least {aim:g}x the "
                f"videos/s of the full-frame ResNet-50 (every frame) at concurrency {top} on 1080p: {shown}."
            )
    decode = results["floors"]["decode"].get("1080p_h264_gop250")
    if decode:
        pairs = decode["samples_vs_every_frame"]
        shown = "; ".join(
            f"{t} thread(s): {p['samples_ms']:.0f} vs {p['every_frame_ms']:.0f} ms ({p['ratio']:.2f}x)"
            for t, p in pairs.items()
        )
        met = all(p["ratio"] <= 0.6 for p in pairs.values())
        lines.append(
            f"- {_verdict(met)}: decoding the 16 samples of the 1080p GOP-250 clip at most 0.6x the time of "
            f"decoding every frame with the same threads: {shown}."
        )
    ratios = [
        r["times_floor"]
        for by in results["cells"].values()
        for rows in by.values()
        for r in rows
        if r["concurrency"] == top
    ]
    if ratios:
        lines.append(
            f"- {_verdict(max(ratios) <= 1.3)}: service CPU per video within 1.3x of decode floor + inference floor "
            f"(concurrency {top}, every cell): {min(ratios):.2f}x to {max(ratios):.2f}x, "
            f"median {statistics.median(ratios):.2f}x."
        )
    eager = results.get("eager_vs_onnx")
    if eager:
        lines.append(
            f"- {_verdict(eager['speedup'] >= 2)}: served ONNX Runtime at least 2x faster per clip than eager PyTorch "
            f"(AdaFocusV2 p128, every frame, {THREADS} threads): {eager['ms_per_clip']['onnxruntime']:.0f} vs "
            f"{eager['ms_per_clip']['pytorch_eager']:.0f} ms ({eager['speedup']:.2f}x)."
        )
    lines += _int8_aims(results, hd, top)
    peaks = [
        r["peak_rss_mb"]
        for clip in hd
        for rows in results["cells"][clip].values()
        for r in rows
        if r["concurrency"] == top
    ]
    if peaks:
        lines.append(
            f"- {_verdict(max(peaks) <= 1024)}: peak resident memory of the process tree at {top} concurrent 1080p "
            f"uploads at most 1 GB: at most {max(peaks):.0f} MB over the cells."
        )
    return lines


def _int8_aims(results: dict, hd: list[str], top: int) -> list[str]:
    """INT8 against FP32 (p128, every frame): ONNX Runtime alone per clip (batch 1), and the
    service's inference CPU per video at the top concurrency on 1080p (batched across videos)."""
    floors = results["floors"]["inference"]
    if "p128_int8_full" not in floors or "p128_full" not in floors:
        return ["- **Not measured**: INT8 (the p128_int8_full and p128_full scenarios were not run)."]
    alone = floors["p128_full"]["wall_ms"] / floors["p128_int8_full"]["wall_ms"]
    served = {}
    for clip in hd:
        fp32, int8 = _at(results, clip, "p128_full", top), _at(results, clip, "p128_int8_full", top)
        if fp32 and int8:
            served[clip] = fp32["cpu_split_ms"]["inference"] / int8["cpu_split_ms"]["inference"]
    shown = ", ".join(f"{clip} {ratio:.2f}x" for clip, ratio in served.items())
    met = alone >= 1.8 and all(ratio >= 1.8 for ratio in served.values())
    return [
        f"- {_verdict(met)}: the INT8 export at least 1.8x faster than FP32 on CPU (p128, every frame): "
        f"ONNX Runtime alone, batch 1, {floors['p128_full']['wall_ms']:.0f} vs "
        f"{floors['p128_int8_full']['wall_ms']:.0f} ms per clip ({alone:.2f}x); the service's inference CPU per "
        f"video at concurrency {top}, batched: {shown or 'not run'}. Its accuracy cost on the synthetic benchmark "
        "is stated in docs/benchmarks/int8.md."
    ]


def _shortcut_note(results: dict) -> str:
    mode = results.get("skip_loop_filter", "none")
    if mode == "none":
        return ""
    return (
        f" Decoder shortcut: `skip_loop_filter={mode}` in the service and the decode floors (pixels differ "
        "from the training decoder's: docs/benchmarks/loop-filter.md)."
    )


def markdown(results: dict) -> str:
    lines = [
        "# Real-size benchmark: paper-size models on 720p and 1080p uploads",
        "",
        f"`{results['command']}` on {results['machine']}, {results['date']}; {results['provider']}"
        f"{' (FP16 engines)' if results.get('trt_fp16') else ''}"
        f"{f', decoding on {hw}' if (hw := results.get('hwaccel')) else ''}, ONNX Runtime "
        f"{THREADS} intra-op threads, {results['decode_workers']} decoder processes (one thread each). Models: random "
        "weights of the published shapes (bench/realsize_models.py); exits forced after k steps (`after_k`) or "
        "never (`full`). Each figure is one run of the cell; requests per cell: max(8, 2 x concurrency) unless set."
        + _shortcut_note(results),
        "",
        *stolen_line(results),
        "## Uploads",
        "",
        "| clip | codec | MB | frames | keyframes | B-frames |",
        "|---|---|---|---|---|---|",
    ]
    for name, facts in results["clips"].items():
        lines.append(
            f"| {name} | {facts['codec']} | {facts['bytes'] / 1e6:.1f} | {facts['frames']} | {facts['keyframes']} "
            f"| {facts['b_frames']} |"
        )
    lines += ["", "## Models", "", "| model | GMACs per frame (from the model) |", "|---|---|"]
    lines += [f"| {name} | {gmacs:.4f} |" for name, gmacs in results["models"].items()]
    lines += ["", "## The service", ""]
    lines += [
        "CPU ms per video: decode, resize, inference, HTTP (module docstring: how each is measured); "
        "x floor: server + decoders CPU over decode floor + inference floor of the same exit.",
        "",
        "| clip | scenario | concurrency | videos/s | p50 / p95 / p99 ms | CPU ms: decode, resize, inference, HTTP "
        "| x floor | frames decoded | peak RSS MB |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for clip, by_scenario in results["cells"].items():
        for scenario, rows in by_scenario.items():
            for r in rows:
                split = r["cpu_split_ms"]
                lines.append(
                    f"| {clip} | {scenario} | {r['concurrency']} | {r['videos_per_s']:.2f} | {r['p50_ms']:.0f} / "
                    f"{r['p95_ms']:.0f} / {r['p99_ms']:.0f} | {split['decode']:.0f}, {split['resize']:.0f}, "
                    f"{split['inference']:.0f}, {split['http']:.0f} | {r['times_floor']:.2f} "
                    f"| {r['frames_decoded_per_video']:.0f} | {r['peak_rss_mb']:.0f} |"
                )
    lines += _floor_lines(results)
    lines += ["", "## Aims", "", *results["aims"], ""]
    return "\n".join(lines)


def _floor_lines(results: dict) -> list[str]:
    lines = [
        "",
        "## Floors",
        "",
        "Decode floor (`decode_only`, one thread: the frames needed to reach the exit's samples, nothing "
        "converted), CPU ms / frames decoded, and resize ms per sample:",
        "",
        "| clip | " + " | ".join(next(iter(results["floors"]["decode"].values()))["exits"]) + " | resize ms/sample "
        "| 16 samples vs every frame, 1 thread | 2 threads |",
    ]
    exits = next(iter(results["floors"]["decode"].values()))["exits"]
    lines.append("|---|" + "---|" * (len(exits) + 3))
    for clip, floor in results["floors"]["decode"].items():
        cells = [f"{e['cpu_ms']:.0f} / {e['frames_decoded']}" for e in floor["exits"].values()]
        pairs = [floor["samples_vs_every_frame"][t] for t in ("1", "2")]
        lines.append(
            f"| {clip} | {' | '.join(cells)} | {floor['resize_ms_per_sample']:.2f} | "
            + " | ".join(f"{p['samples_ms']:.0f} vs {p['every_frame_ms']:.0f} ms ({p['ratio']:.2f}x)" for p in pairs)
            + " |"
        )
    lines += ["", "Inference floor (ONNX Runtime on pre-decoded tensors, batch 1):", ""]
    lines += ["| scenario | CPU ms per clip | wall ms per clip |", "|---|---|---|"]
    lines += [f"| {n} | {f['cpu_ms']:.0f} | {f['wall_ms']:.0f} |" for n, f in results["floors"]["inference"].items()]
    eager = results.get("eager_vs_onnx")
    if eager:
        lines += [
            "",
            f"Eager PyTorch (frame by frame, {THREADS} threads) against ONNX Runtime, AdaFocusV2 p128, every frame: "
            f"{eager['ms_per_clip']['pytorch_eager']:.0f} vs {eager['ms_per_clip']['onnxruntime']:.0f} ms per clip.",
        ]
    return lines


def eager_reference(repo: Path, work: Path, clip: Path) -> dict:
    """Eager PyTorch vs ONNX Runtime on the p128 model, on the 16 samples of one upload."""
    frames = read_clip(clip, SAMPLES, GEOMETRY).frames
    return eager_vs_onnx(
        repo, work / "runs" / "adafocus_v2_p128", [frames], repeats=3, name="adafocus_v2_p128", threads=THREADS
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--work", type=Path, default=Path("/tmp/bench_realsize"), help="clips and models, kept")
    parser.add_argument("--clips", nargs="+", choices=list(CLIPS), default=list(CLIPS))
    parser.add_argument("--scenarios", nargs="+", choices=list(SCENARIOS), default=list(SCENARIOS))
    parser.add_argument("--concurrency", nargs="+", type=int, default=list(CONCURRENCY))
    parser.add_argument(
        "--min-requests", type=int, default=8, help="requests per cell: at least this, and 2 x concurrency"
    )
    parser.add_argument("--repeats", type=int, default=3, help="runs of each floor measurement (median)")
    parser.add_argument("--decode-workers", type=int, default=2, help="the service's decoder processes")
    parser.add_argument("--provider", default=CPU)
    parser.add_argument(
        "--skip-loop-filter",
        choices=get_args(LoopFilterSkip),
        default="none",
        help="the service's and the floors' decoder shortcut (ADAFOCUS_DECODE_SKIP_LOOP_FILTER); "
        "written as realsize_skip_loop_filter_<mode>.*",
    )
    parser.add_argument(
        "--trt-fp16",
        action="store_true",
        help="with --provider TensorrtExecutionProvider: FP16 engines in the service and the floors "
        "(ADAFOCUS_TRT_FP16); written as realsize_tensorrt_fp16.*",
    )
    parser.add_argument(
        "--hwaccel",
        help="decode on this FFmpeg hardware device (cuda: NVDEC) in the service and the decode floors "
        "(ADAFOCUS_DECODE_HWACCEL); written as realsize_<provider>_hwaccel_<device>.*",
    )
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    args = parser.parse_args(argv)
    ticks = cpu_ticks()
    scenarios = [SCENARIOS[name] for name in args.scenarios]
    models = list(dict.fromkeys(s.model for s in scenarios))
    eager = "p128_full" in args.scenarios and args.provider == CPU
    repo = realsize_models.export_models(args.work, models + (["adafocus_v2_p128"] if eager else []))
    clips = encode_clips(args.work, [CLIPS[name] for name in args.clips])
    if args.hwaccel and (problem := hwaccel_problem(args.hwaccel, next(iter(clips.values())))):
        parser.error(f"--hwaccel {args.hwaccel}: {problem}")  # the service would quietly decode in software
    positions = exit_positions(repo, scenarios)
    print("measuring the floors", file=sys.stderr)
    results: dict[str, Any] = {
        "command": " ".join(["python -m bench.bench_realsize", *(sys.argv[1:] if argv is None else argv)]),
        "machine": f"{cpu_name()}, {os.cpu_count()} cores" + (f", {gpu_name()}" if args.provider != CPU else ""),
        "date": time.strftime("%Y-%m-%d"),
        "provider": args.provider,
        "decode_workers": args.decode_workers,
        "skip_loop_filter": args.skip_loop_filter,
        "trt_fp16": args.trt_fp16,
        "hwaccel": args.hwaccel,
        "concurrency": args.concurrency,
        "clips": {name: clip_facts(path) for name, path in clips.items()},
        "models": {name: realsize_models.manifest_gmacs(repo, name) for name in models},
        "floors": {
            "decode": {
                name: decode_floors(path, positions, args.repeats, args.skip_loop_filter, args.hwaccel)
                for name, path in clips.items()
            },
            "inference": inference_floors(repo, scenarios, args.provider, args.repeats, args.trt_fp16),
        },
    }
    if eager:
        results["eager_vs_onnx"] = eager_reference(repo, args.work, next(iter(clips.values())))
    results["cells"] = service_cells(repo, clips, scenarios, args)
    with_floors(results)
    results["stolen_cpu_share"] = stolen_share(ticks, cpu_ticks())
    results["aims"] = aims(results)
    args.out.mkdir(parents=True, exist_ok=True)
    stem = "realsize" if args.provider == CPU else f"realsize_{args.provider.removesuffix('ExecutionProvider').lower()}"
    if args.trt_fp16:
        stem += "_fp16"
    if args.hwaccel:
        stem += f"_hwaccel_{args.hwaccel}"
    if args.skip_loop_filter != "none":
        stem += f"_skip_loop_filter_{args.skip_loop_filter}"
    (args.out / f"{stem}.json").write_text(json.dumps(results, indent=2) + "\n")
    (args.out / f"{stem}.md").write_text(markdown(results))
    print("\n".join(results["aims"]), file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
