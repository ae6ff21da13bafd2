"""Export a trained run to the model repository the service (and Triton) loads.

    python training/export.py runs/adafocus --out model_repo
    python training/export.py runs/compare/full_frame --out model_repo --name full_frame --version 1
    python training/export.py --add-reference adafocus_v2:2 --out model_repo
    python training/export.py --int8 adafocus_v2:2 --data data/synthetic --out model_repo

Writes the run's graphs (``training/exporter/graphs.py``) as ONNX (opset 17, batch axis dynamic,
``onnx.checker`` full check), a Triton ``config.pbtxt`` per graph, ``labels.txt``, and the
pipeline manifest ``<name>.v<version>.json`` with the sha256 of every file
(``pipeline/manifest.py``). Every graph is compared with PyTorch through ONNX Runtime
before the manifest is written; a graph that disagrees by more than ``--tolerance`` stops
the export. The manifest is written last, so an interrupted export leaves no loadable version.
It carries reference outputs (a fixed clip through the whole pipeline), which the service
checks when it warms the model up; ``--add-reference`` adds them to an export made before
manifests had them, leaving its graphs and checksums as they are. ``--int8`` adds an INT8
version of an exported pipeline (``training/exporter/quantize.py``): ONNX Runtime static
quantization calibrated on ``--data``'s calibration split, exit thresholds calibrated again on
the INT8 logits, and the test top-1 of both precisions printed.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from pipeline.manifest import Manifest
from pipeline.repository import ModelRepositoryError
from training.exporter.quantize import quantization_table, quantize_pipeline
from training.exporter.repository import add_reference, export_run
from training.exporter.tensorrt_engines import TensorRTUnavailable, build_pipeline_engines, require_tensorrt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python training/export.py", description=__doc__.split("\n")[0])
    parser.add_argument("run_dir", type=Path, nargs="?", help="a finished training run (with model.pt)")
    parser.add_argument("--out", type=Path, default=Path("model_repo"), help="model repository")
    parser.add_argument("--name", help="pipeline name (default: the run's variant, e.g. adafocus_v2)")
    parser.add_argument("--version", type=int, help="version number (default: the next free one)")
    parser.add_argument(
        "--tolerance",
        type=float,
        default=1e-4,
        help="max abs diff ONNX Runtime vs PyTorch, over max(1, the output's largest magnitude)",
    )
    parser.add_argument(
        "--tensorrt",
        action="store_true",
        help="also build TensorRT engines for this machine's GPU (FP16 with the crop in FP32; needs tensorrt)",
    )
    parser.add_argument("--fp32", action="store_true", help="with --tensorrt: FP32 engines instead of mixed FP16")
    parser.add_argument(
        "--add-reference",
        metavar="NAME:VERSION",
        help="instead of exporting a run: record the reference outputs in --out's existing NAME vVERSION",
    )
    parser.add_argument(
        "--int8",
        metavar="NAME:VERSION",
        help="instead of exporting a run: add an INT8 version of --out's NAME vVERSION (see --data)",
    )
    parser.add_argument(
        "--data",
        help="with --int8: the dataset whose calibration split calibrates it (default: the synthetic benchmark)",
    )
    parser.add_argument(
        "--calibration-clips", type=int, default=64, help="with --int8: calibration videos used (default: 64)"
    )
    parser.add_argument("--report", type=Path, help="with --int8: also write the accuracy table there (Markdown)")
    args = parser.parse_args(argv)
    if sum(x is not None for x in (args.run_dir, args.add_reference, args.int8)) != 1:
        parser.error("give one of: a run directory to export, --add-reference NAME:VERSION, --int8 NAME:VERSION")
    if args.calibration_clips < 1:
        parser.error("--calibration-clips must be at least 1")

    def log(text: str) -> None:
        print(text, file=sys.stderr)

    try:
        if args.add_reference is not None:
            name, version = _name_and_version(args.add_reference)
            add_reference(args.out, name, version, log=log)
            return 0
        if args.int8 is not None:
            name, version = _name_and_version(args.int8)
            result = quantize_pipeline(
                args.out, name, version, args.data, args.version, args.calibration_clips, log=log
            )
            table = quantization_table(result)
            print(table)
            if args.report is not None:
                command = " ".join(["python training/export.py", *(sys.argv[1:] if argv is None else argv)])
                args.report.write_text(f"# INT8 export: its accuracy cost\n\n`{command}`\n\n{table}\n")
            return 0
        if args.tensorrt:
            require_tensorrt()  # before the export: say at once that it cannot be done here
        manifest_path = export_run(args.run_dir, args.out, args.name, args.version, args.tolerance, log=log)
        if args.tensorrt:
            manifest = Manifest.model_validate_json(manifest_path.read_text())
            build_pipeline_engines(args.out, manifest.name, manifest.version, fp16=not args.fp32, log=log)
    except (FileNotFoundError, ValueError, TensorRTUnavailable, ModelRepositoryError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    return 0


def _name_and_version(text: str) -> tuple[str, int]:
    name, _, version = text.rpartition(":")
    if not name or not version.isdigit():
        raise ValueError(f"--add-reference and --int8 want NAME:VERSION (e.g. adafocus_v2:2), got {text!r}")
    return name, int(version)


if __name__ == "__main__":
    raise SystemExit(main())
