"""CPU latency (batch 1) and throughput (batch 32) of the backbones, PyTorch eager vs ONNX Runtime.

    python bench/bench_backbones.py                  # writes docs/benchmarks/backbones.{json,md}
    python bench/bench_backbones.py --quick          # fewer repeats, for a smoke run

CondenseNetV2 is measured in its converted (inference) form. MobileNetV2 is measured at
several widths so CondenseNetV2 can be compared with it at matching MACs: the MobileNetV2
latency at a CondenseNetV2's MACs is interpolated linearly between the two nearest widths.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch

from training.engine.machine import machine_facts
from training.exporter.onnx_export import export_onnx
from training.models import create_model
from training.models.macs import count_macs, count_params
from training.models.profile import inference_form

MODELS = [
    "mobilenetv2_035",
    "mobilenetv2_050",
    "mobilenetv2_075",
    "mobilenetv2",
    "resnet50",
    "condensenetv2_a",
    "condensenetv2_b",
    "condensenetv2_c",
]
OUT_DIR = Path("docs/benchmarks")


def time_calls(fn, repeats: int, warmup: int) -> list[float]:
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return times


def measure(name: str, size: int, batch: int, repeats: int, workdir: Path) -> dict:
    torch.manual_seed(0)
    model = inference_form(create_model(name)).eval()
    single = torch.randn(1, 3, size, size)
    many = torch.randn(batch, 3, size, size)
    result = {
        "model": name,
        "macs": count_macs(model, single).total,
        "params": count_params(model),
    }
    with torch.inference_mode():
        lat = time_calls(lambda: model(single), repeats, warmup=3)
        thr = time_calls(lambda: model(many), max(3, repeats // 4), warmup=1)
    result["eager_latency_ms"] = 1000 * statistics.median(lat)
    result["eager_images_per_s"] = batch / statistics.median(thr)

    path = export_onnx(model, (single,), workdir / f"{name}.onnx", ["image"], ["features", "pooled", "logits"])
    options = ort.SessionOptions()
    options.intra_op_num_threads = torch.get_num_threads()
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feeds_1 = {"image": single.numpy()}
    feeds_b = {"image": many.numpy()}
    lat = time_calls(lambda: session.run(["logits"], feeds_1), repeats, warmup=3)
    thr = time_calls(lambda: session.run(["logits"], feeds_b), max(3, repeats // 4), warmup=1)
    result["ort_latency_ms"] = 1000 * statistics.median(lat)
    result["ort_images_per_s"] = batch / statistics.median(thr)
    with torch.inference_mode():
        expected = model(single).logits.numpy()
    result["ort_max_abs_diff"] = float(np.abs(session.run(["logits"], feeds_1)[0] - expected).max())
    result["ort_op_shares_batch1"] = op_time_shares(path, feeds_1["image"])
    return result


def op_time_shares(path: Path, image: np.ndarray, runs: int = 5) -> dict[str, float]:
    """Share of ONNX Runtime kernel time per op type (convs split by kernel size and grouping)."""
    import onnx

    conv_kind = {}
    for node in onnx.load(str(path)).graph.node:
        if node.op_type == "Conv":
            attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
            k = attrs.get("kernel_shape", [1])[0]
            conv_kind[node.name] = f"Conv {k}x{k} {'grouped' if attrs.get('group', 1) > 1 else 'dense'}"
    with tempfile.TemporaryDirectory() as profile_dir:
        options = ort.SessionOptions()
        options.intra_op_num_threads = torch.get_num_threads()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(profile_dir) / "ort")
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        for _ in range(runs):
            session.run(["logits"], {"image": image})
        events = json.loads(Path(session.end_profiling()).read_text())
    totals: dict[str, float] = {}
    for event in events:
        if event.get("cat") != "Node" or not event["name"].endswith("_kernel_time"):
            continue
        op = event["args"]["op_name"]
        if op == "Conv":
            op = conv_kind.get(event["name"].removesuffix("_kernel_time"), "Conv")
        totals[op] = totals.get(op, 0.0) + event["dur"]
    grand = sum(totals.values())
    return {op: t / grand for op, t in sorted(totals.items(), key=lambda item: -item[1])}


def interpolate(points: list[tuple[float, float]], x: float) -> float:
    """Piecewise-linear y(x) through ``points`` (sorted by x), extrapolating at the ends."""
    points = sorted(points)
    for (x0, y0), (x1, y1) in zip(points, points[1:]):
        if x <= x1 or (x1, y1) == points[-1]:
            return y0 + (y1 - y0) * (x - x0) / (x1 - x0)
    return points[-1][1]


def compare_with_mobilenet(rows: list[dict]) -> list[dict]:
    """Per CondenseNetV2: MobileNetV2's interpolated cost at the same MACs, and the ratio."""
    mobilenets = [r for r in rows if r["model"].startswith("mobilenetv2")]
    if len(mobilenets) < 2:
        return []
    comparisons = []
    for row in (r for r in rows if r["model"].startswith("condensenetv2")):
        entry = {"model": row["model"], "macs": row["macs"]}
        for runtime in ("eager", "ort"):
            lat_key, thr_key = f"{runtime}_latency_ms", f"{runtime}_images_per_s"
            mn_latency = interpolate([(m["macs"], m[lat_key]) for m in mobilenets], row["macs"])
            mn_per_image = interpolate([(m["macs"], 1000 / m[thr_key]) for m in mobilenets], row["macs"])
            entry[f"{runtime}_latency_vs_mobilenet"] = row[lat_key] / mn_latency
            entry[f"{runtime}_per_image_vs_mobilenet"] = (1000 / row[thr_key]) / mn_per_image
        comparisons.append(entry)
    return comparisons


def write_report(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "backbones.json").write_text(json.dumps(report, indent=2))
    m = report["machine"]
    lines = [
        "# Backbone CPU benchmark",
        "",
        f"Produced by `python bench/bench_backbones.py` on {report['date']}. Machine: {m['cpu']}, "
        f"{m['threads']} threads; torch {m['torch']}, onnxruntime {m['onnxruntime']}. "
        f"Input {report['input_size']}x{report['input_size']}, latency at batch 1 (median of "
        f"{report['repeats']}), throughput at batch {report['batch']}. CondenseNetV2 in its converted form. "
        "MACs are conv + linear multiply-accumulates per image, counted from the model.",
        "",
        "| model | MMACs | params (M) | eager b1 (ms) | ORT b1 (ms) | eager b32 (img/s) | ORT b32 (img/s) |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in report["results"]:
        lines.append(
            f"| {r['model']} | {r['macs'] / 1e6:.1f} | {r['params'] / 1e6:.2f} | {r['eager_latency_ms']:.2f} | "
            f"{r['ort_latency_ms']:.2f} | {r['eager_images_per_s']:.1f} | {r['ort_images_per_s']:.1f} |"
        )
    lines += [
        "",
        "## CondenseNetV2 against MobileNetV2 at matching MACs",
        "",
        "Ratio of CondenseNetV2's time to MobileNetV2's (interpolated across widths 0.35-1.0 at the same "
        "MACs); below 1 means CondenseNetV2 is faster per image.",
        "",
        "| model | MMACs | eager b1 | ORT b1 | eager b32 per image | ORT b32 per image |",
        "|---|---:|---:|---:|---:|---:|",
    ]
    for c in report["vs_mobilenet"]:
        lines.append(
            f"| {c['model']} | {c['macs'] / 1e6:.1f} | {c['eager_latency_vs_mobilenet']:.2f} | "
            f"{c['ort_latency_vs_mobilenet']:.2f} | {c['eager_per_image_vs_mobilenet']:.2f} | "
            f"{c['ort_per_image_vs_mobilenet']:.2f} |"
        )
    slower = [
        c["model"]
        for c in report["vs_mobilenet"]
        if min(c["ort_latency_vs_mobilenet"], c["ort_per_image_vs_mobilenet"]) > 1
    ]
    lines += [
        "",
        "Aim (converted CondenseNetV2 at least as fast per image as MobileNetV2 at matching MACs, on CPU): "
        + (f"**not met** for {', '.join(slower)} under ONNX Runtime." if slower else "met."),
        "Why: CondenseNetV2's MACs sit in grouped convolutions with few channels per group (the 3x3 "
        "group conv maps 4k/G inputs to k/G outputs, often 4 to 1) and in 1x1 group convs, which "
        "ONNX Runtime's CPU kernels run as many tiny GEMMs; around them the dense connectivity adds "
        "memory-bound work that MACs do not count: channel shuffles (Transpose), the gather of LGC "
        "inputs, the SFR scatter-adds, unfusable pre-activation BatchNorms (BN -> act -> conv) and "
        "the growing concatenations. MobileNetV2's convs fuse with BN and ReLU6 into one kernel "
        "each. The table below shows the split. Eager PyTorch at batch 1 is dominated by per-op "
        "overhead for every model (its MobileNetV2 times barely change with width).",
    ]
    lines += [
        "",
        "## Where ONNX Runtime spends its time (batch 1, share of kernel time)",
        "",
        "| model | top op types |",
        "|---|---|",
    ]
    for r in report["results"]:
        top = ", ".join(f"{op} {share:.0%}" for op, share in list(r["ort_op_shares_batch1"].items())[:6])
        lines.append(f"| {r['model']} | {top} |")
    lines.append("")
    (out_dir / "backbones.md").write_text("\n".join(lines))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--models", nargs="+", default=MODELS)
    parser.add_argument("--input-size", type=int, default=224)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument("--quick", action="store_true", help="5 repeats")
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--report-only", action="store_true", help="rewrite the table from --out's JSON")
    args = parser.parse_args(argv)
    if args.report_only:
        write_report(json.loads((args.out / "backbones.json").read_text()), args.out)
        return 0
    repeats = 5 if args.quick else args.repeats
    results = []
    with tempfile.TemporaryDirectory() as workdir:
        for name in args.models:
            print(f"measuring {name} ...", file=sys.stderr, flush=True)
            results.append(measure(name, args.input_size, args.batch, repeats, Path(workdir)))
            print(json.dumps(results[-1]), file=sys.stderr, flush=True)
    report = {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_facts(onnxruntime=ort.__version__),
        "input_size": args.input_size,
        "batch": args.batch,
        "repeats": repeats,
        "results": results,
        "vs_mobilenet": compare_with_mobilenet(results),
    }
    write_report(report, args.out)
    print((args.out / "backbones.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
