"""Full-size parity of the checkpoint importer with the authors' code (issue 23).

    .venv/bin/python -m bench.bench_import                # writes docs/benchmarks/import.{json,md}
    .venv/bin/python -m bench.bench_import --only served  # re-measures one part, keeps the others' results
    .venv/bin/python -m bench.bench_import --only sthsth_served

For each of CondenseNetV2 A, B and C it writes the converted file and the training-form file
(``module.``-prefixed, as the authors' training saves it) from the reference data's weight
formula (tests/training/checkpoints/condensenetv2_formula.py), imports each through
``training.checkpoints.import_file`` (what ``training/import_checkpoint.py`` runs), feeds the
2 x 3 x 224 x 224 reference input and compares the 1000 logits with the authors' (from
tests/data/condensenetv2): the converted file as imported, our inference form of it
(``convert()``), the training-form file as imported, and our conversion of it against the
authors' conversion of the same model. Parameters and MACs are counted from the imported models
(training/models/macs.py). The torchvision formats are checked on the suite's small data
(tests/data/checkpoints, 64x64 input). The suite checks A only; this checks the full sizes.

The ``served`` part (bench/import_served.py) imports, exports and serves a paper-size AdaFocusV2
ActivityNet checkpoint and compares the service's answer on the reference video with the
authors' code; its results are the JSON's ``adafocusv2_actnet_served``. The ``sthsth_served``
part (bench/import_sthsth.py) does the same for a paper-size Sth-Sth V1 (TSM, whole clip)
checkpoint against the imported PyTorch model on a generated video, with the GMACs by patch
size against the authors' README; its results are the JSON's ``adafocusv2_sthv1_served``.
``--only PART`` re-measures that part and keeps the others' results from ``--out``'s JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from bench.import_served import markdown_section, measure_actnet_served
from bench.import_sthsth import markdown_section as sthsth_section
from bench.import_sthsth import measure_sthsth_served
from tests.training.checkpoints import condensenetv2_formula as cdnv2
from tests.training.checkpoints import torchvision_layout as tv
from training.checkpoints import import_file
from training.engine.machine import machine_facts
from training.models.macs import count_macs, count_params

OUT_DIR = Path("docs/benchmarks")
VARIANTS = ("a", "b", "c")
TOLERANCE = 1e-4  # the suite's
PARTS = ("parity", "served", "sthsth_served")
SERVED = "adafocusv2_actnet_served"  # the served part's key in the JSON
STHSTH = "adafocusv2_sthv1_served"  # the sthsth_served part's
TORCHVISION = Path(__file__).resolve().parents[1] / "tests" / "data" / "checkpoints" / "torchvision_parity.npz"
TORCHVISION_CASES = {
    "resnet18": ("torchvision-resnet", lambda: tv.resnet_shapes("basic", (2, 2, 2, 2))),
    "resnet50": ("torchvision-resnet", lambda: tv.resnet_shapes("bottleneck", (3, 4, 6, 3))),
    "mobilenet_v2": ("torchvision-mobilenetv2", tv.mobilenetv2_shapes),
}


def compare(ours: np.ndarray, theirs: np.ndarray) -> dict:
    """Max abs logit difference and whether every sample's top-1 agrees."""
    return {
        "max_abs_diff": float(np.abs(ours - theirs).max()),
        "same_top1": bool((ours.argmax(-1) == theirs.argmax(-1)).all()),
        "max_abs_logit": float(np.abs(theirs).max()),
    }


def logits(model: torch.nn.Module, inputs: torch.Tensor) -> np.ndarray:
    with torch.inference_mode():
        return model(inputs).logits.numpy()


def timed_import(path: Path, format_name: str):
    start = time.perf_counter()
    imported = import_file(path, format_name)
    return imported, time.perf_counter() - start


def size(model: torch.nn.Module, inputs: torch.Tensor) -> dict:
    return {"params": count_params(model), "macs": count_macs(model, inputs[:1]).total}


def measure_condensenetv2(variant: str, workdir: Path) -> dict:
    """The four comparisons, import times and sizes of ``cdnv2_<variant>``."""
    layout, reference = cdnv2.load_layout(variant), cdnv2.load_reference(variant)
    groups, inputs = cdnv2.GROUPS[variant], cdnv2.smooth_input()
    converted_path = workdir / f"converted_cdnv2_{variant}.pth.tar"
    torch.save({"state_dict": cdnv2.authors_state_dict(layout["converted"], seed=1, groups=groups)}, converted_path)
    training = cdnv2.authors_state_dict(layout["unconverted"], seed=0, groups=groups)
    training_path = workdir / f"cdnv2_{variant}.pth.tar"
    torch.save({"state_dict": {f"module.{k}": v for k, v in training.items()}}, training_path)

    converted, converted_s = timed_import(converted_path, "condensenetv2")
    inference = converted.model.convert()
    trained, training_s = timed_import(training_path, "condensenetv2")
    our_conversion = trained.model.convert()
    return {
        "variant": variant,
        "model": converted.model_name,
        "groups": groups,
        "parity": {
            "converted_file": compare(logits(converted.model, inputs), reference["converted"]),
            "inference_form": compare(logits(inference, inputs), reference["converted"]),
            "training_file": compare(logits(trained.model, inputs), reference["unconverted"]),
            "training_file_converted": compare(logits(our_conversion, inputs), reference["their_conversion"]),
        },
        "import_s": {"converted_file": converted_s, "training_file": training_s},
        "file_mb": {
            "converted_file": converted_path.stat().st_size / 1e6,
            "training_file": training_path.stat().st_size / 1e6,
        },
        "inference_form": size(inference, inputs),
        "training_form": size(trained.model, inputs),
    }


def measure_torchvision(workdir: Path) -> list[dict]:
    """The torchvision formats against torchvision's own logits (the suite's data)."""
    with np.load(TORCHVISION) as data:
        reference = dict(data)
    rows = []
    for name, (format_name, layout) in TORCHVISION_CASES.items():
        shapes = layout()
        listing_matches = [f"{k} {list(s)}" for k, s in shapes.items()] == list(reference[f"{name}_keys"])
        path = workdir / f"{name}.pth"
        torch.save(tv.seeded_state_dict(shapes), path)
        imported, seconds = timed_import(path, format_name)
        inputs = tv.smooth_input(64)
        row = {"model": name, "format": format_name, "input_size": 64, "listing_matches": listing_matches}
        row.update(compare(logits(imported.model, inputs)[0], reference[f"{name}_logits"]))
        row.update(import_s=seconds, **size(imported.model, inputs))
        rows.append(row)
    return rows


def _yes(flag: bool) -> str:
    return "yes" if flag else "**no**"


def write_report(report: dict, out_dir: Path) -> None:
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "import.json").write_text(json.dumps(report, indent=2) + "\n")
    m = report["machine"]
    lines = [
        "# Checkpoint import: full-size parity with the authors' code",
        "",
        f"Produced by `.venv/bin/python -m bench.bench_import` on {report['date']}. Machine: {m['cpu']}, "
        f"{m['threads']} threads; torch {m['torch']}, Python {m['python']}. Files written from the reference "
        "data's weight formula (tests/training/checkpoints/condensenetv2_formula.py), imported with "
        "`training.checkpoints.import_file` (what `training/import_checkpoint.py` runs), compared with the "
        "authors' logits (tests/data/condensenetv2, input 2x3x224x224). Max abs difference over the 1000 "
        f"logits; tolerance {report['tolerance']:g}. MACs (per image) and parameters counted from the models.",
        "",
        "## CondenseNetV2",
        "",
        "| model | converted file | our inference form | training-form file | our conversion vs theirs "
        "| same top-1 | import converted / training (s) | inference params (M) | MMACs |",
        "|---|---:|---:|---:|---:|---|---:|---:|---:|",
    ]
    for row in report["condensenetv2"]:
        p = row["parity"]
        same = all(c["same_top1"] for c in p.values())
        lines.append(
            f"| {row['model']} | {p['converted_file']['max_abs_diff']:.1e} | {p['inference_form']['max_abs_diff']:.1e} "
            f"| {p['training_file']['max_abs_diff']:.1e} | {p['training_file_converted']['max_abs_diff']:.1e} "
            f"| {_yes(same)} | {row['import_s']['converted_file']:.2f} / {row['import_s']['training_file']:.2f} "
            f"| {row['inference_form']['params'] / 1e6:.2f} | {row['inference_form']['macs'] / 1e6:.1f} |"
        )
    lines += [
        "",
        "## torchvision formats (the suite's data, input 1x3x64x64)",
        "",
        "| model | format | key listing = torchvision's | max abs diff | same top-1 | import (s) | params (M) "
        "| MMACs at 64 |",
        "|---|---|---|---:|---|---:|---:|---:|",
    ]
    for row in report["torchvision"]:
        lines.append(
            f"| {row['model']} | {row['format']} | {_yes(row['listing_matches'])} | {row['max_abs_diff']:.1e} "
            f"| {_yes(row['same_top1'])} | {row['import_s']:.2f} | {row['params'] / 1e6:.2f} "
            f"| {row['macs'] / 1e6:.1f} |"
        )
    verdict = all(
        c["max_abs_diff"] < report["tolerance"] and c["same_top1"]
        for row in report["condensenetv2"]
        for c in row["parity"].values()
    ) and all(r["max_abs_diff"] < report["tolerance"] and r["same_top1"] for r in report["torchvision"])
    lines += ["", f"All within tolerance with the same top-1: **{'yes' if verdict else 'no'}**.", ""]
    if SERVED in report:
        lines += [*markdown_section(report[SERVED]), ""]
    if STHSTH in report:
        lines += [*sthsth_section(report[STHSTH]), ""]
    (out_dir / "import.md").write_text("\n".join(lines))


def measure_parity(variants: list[str]) -> dict:
    """The parity part: CondenseNetV2 variants and the torchvision formats, with the machine."""
    rows = []
    with tempfile.TemporaryDirectory() as workdir:
        for variant in variants:
            print(f"condensenetv2_{variant} ...", file=sys.stderr, flush=True)
            rows.append(measure_condensenetv2(variant, Path(workdir)))
            print(json.dumps(rows[-1]), file=sys.stderr, flush=True)
        print("torchvision formats ...", file=sys.stderr, flush=True)
        torchvision = measure_torchvision(Path(workdir))
    return {
        "date": time.strftime("%Y-%m-%d"),
        "machine": machine_facts(),
        "tolerance": TOLERANCE,
        "condensenetv2": rows,
        "torchvision": torchvision,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=VARIANTS)
    parser.add_argument("--out", type=Path, default=OUT_DIR)
    parser.add_argument("--report-only", action="store_true", help="rewrite the table from --out's JSON")
    parser.add_argument(
        "--only", choices=PARTS, help="re-measure this part only, keeping the others' results from --out's JSON"
    )
    args = parser.parse_args(argv)
    if args.report_only:
        write_report(json.loads((args.out / "import.json").read_text()), args.out)
        return 0
    # --only: the other parts' results (and the machine block of the parity part) stay as they are
    report = json.loads((args.out / "import.json").read_text()) if args.only else {}
    parts = [args.only] if args.only else PARTS
    if "parity" in parts:
        report.update(measure_parity(args.variants))
    if "served" in parts:
        print("adafocusv2 actnet, paper size, served ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as workdir:
            report[SERVED] = measure_actnet_served(Path(workdir))
    if "sthsth_served" in parts:
        print("adafocusv2 sthv1, paper size, served ...", file=sys.stderr, flush=True)
        with tempfile.TemporaryDirectory() as workdir:
            report[STHSTH] = measure_sthsth_served(Path(workdir))
    write_report(report, args.out)
    print((args.out / "import.md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
