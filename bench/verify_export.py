"""ONNX Runtime pipeline vs the PyTorch model it was exported from, on a whole test split.

    python bench/verify_export.py runs/compare/adafocus_v2 --repo model_repo --name adafocus_v2
    # writes docs/benchmarks/export_parity_<name>.{json,md}
    python bench/verify_export.py runs/compare/adafocus_v2 --provider TensorrtExecutionProvider
    # on an NVIDIA GPU: writes export_parity_<name>_tensorrt.{json,md} (also CUDAExecutionProvider)

Every test video is decoded once by the shared frame pipeline; the PyTorch model (all steps
at once) and the exported graphs (step by step, ``OnnxPipeline``) then run on the same
frames. Reported: the largest logit difference over every step of every video, how many
videos get the same top-1 after every step, and, for each named operating point, how many
exit at the same step with the same label. For scale, the same differences against PyTorch
run frame by frame (``model.step``, the order of computation the graphs follow) and between
PyTorch's two paths, and the largest logit.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from pipeline.early_exit import confidence, simulate_exit
from pipeline.frames.decode import read_clip
from pipeline.frames.transform import FrameGeometry
from pipeline.onnx_steps import OnnxPipeline, create_sessions
from pipeline.repository import load_pipeline
from training.adafocus.record import load_model
from training.exporter.verify import step_by_step

OUT_DIR = Path("docs/benchmarks")


def _check_same_run(run: Path, source) -> None:
    """Stop if ``run`` is not (any more) the run the pipeline was exported from (``source``:
    the manifest's): runs are not committed, and one retrained in the same folder (or on
    another processor) is another model, whose differences would read as export errors."""
    summary = run / "summary.json"
    if source.test_top1 is None or not summary.is_file():
        return
    test = json.loads(summary.read_text()).get("test") or {"per_step": [{}]}
    top1 = test["per_step"][-1].get("top1")
    if top1 != source.test_top1:
        raise SystemExit(
            f"{run} is not the run this pipeline was exported from: its test top-1 is {top1}, the manifest "
            f"records {source.test_top1} (exported from {source.run_dir}). Export this run first."
        )


LOGIT_AIM = 1e-4  # the service issue's parity aim on CPU


def verify(run: Path, repo: Path, name: str, data: Path, limit: int | None, provider: str) -> dict:
    model, record = load_model(run / "model.pt")
    pipeline = load_pipeline(repo, name)
    _check_same_run(run, pipeline.manifest.source)
    sessions = create_sessions(pipeline, providers=[provider, "CPUExecutionProvider"])
    used = {graph: session.get_providers()[0] for graph, session in sessions.items()}
    if any(first != provider for first in used.values()):  # ONNX Runtime falls back silently
        raise SystemExit(f"{provider} is not available here (sessions run on {used})")
    runner = OnnxPipeline(pipeline, sessions)
    manifest = runner.manifest
    geometry = FrameGeometry(manifest.frames.resize, manifest.frames.crop)
    rows = [line.split(",") for line in (data / "test.csv").read_text().splitlines()][:limit]
    points = {p.names[0]: [float(t) for t in p.thresholds] for p in manifest.operating_points if p.names}
    worst, same_top1 = 0.0, 0
    worst_stepwise = torch_paths = largest = 0.0
    same_exit = dict.fromkeys(points, 0)
    for path, _ in tqdm(rows, desc="videos", unit="video"):
        frames = read_clip(data / path, manifest.frames.num_frames, geometry, normalisation=record.normalisation).frames
        with torch.no_grad():
            reference = model(torch.from_numpy(frames)[None]).step_logits[0].numpy()
            stepwise = step_by_step(model, frames)
        ours = np.stack(runner.run_clip(frames).step_logits)
        worst = max(worst, float(np.abs(ours - reference).max()))
        worst_stepwise = max(worst_stepwise, float(np.abs(ours - stepwise).max()))
        torch_paths = max(torch_paths, float(np.abs(stepwise - reference).max()))
        largest = max(largest, float(np.abs(reference).max()))
        same_top1 += bool((ours.argmax(-1) == reference.argmax(-1)).all())
        for point, thresholds in points.items():
            ref_step = simulate_exit(confidence(reference[None], manifest.confidence), thresholds)[0]
            result = runner.run_clip(frames, thresholds)
            same_exit[point] += bool(
                result.exit_step == ref_step and result.logits.argmax() == reference[ref_step].argmax()
            )
    return {
        "run": str(run),
        "pipeline": f"{name} v{manifest.version}",
        "provider": provider,
        "videos": len(rows),
        "max_abs_logit_diff": worst,
        "max_abs_logit_diff_vs_pytorch_step_by_step": worst_stepwise,
        "max_abs_logit_diff_pytorch_whole_clip_vs_step_by_step": torch_paths,
        "max_abs_logit": largest,
        "same_top1_every_step": same_top1,
        "same_exit_step_and_label": same_exit,
    }


def write(result: dict, name: str) -> None:
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    provider, pipeline = result["provider"], result["pipeline"].split()[0]
    if provider != "CPUExecutionProvider":
        name = f"{name}_{provider.removesuffix('ExecutionProvider').lower()}"
    (OUT_DIR / f"export_parity_{name}.json").write_text(json.dumps(result, indent=2) + "\n")
    exits = ", ".join(f"{p} {n}/{result['videos']}" for p, n in result["same_exit_step_and_label"].items())
    aim = "met" if result["max_abs_logit_diff"] <= LOGIT_AIM else "not met"
    if aim == "not met" and result["max_abs_logit_diff_pytorch_whole_clip_vs_step_by_step"] > LOGIT_AIM / 10:
        aim += " (PyTorch's own two paths through the model already differ by a comparable amount)"
    (OUT_DIR / f"export_parity_{name}.md").write_text(
        f"# Export parity: {result['pipeline']}\n\n"
        f"`python bench/verify_export.py {result['run']} --name {pipeline} --provider {provider}`, "
        f"{result['videos']} test videos "
        "of the synthetic benchmark, the same decoded frames for both:\n\n"
        f"- largest logit difference, ONNX Runtime vs PyTorch, over every step: {result['max_abs_logit_diff']:.2e}\n"
        "- the same against PyTorch frame by frame (`model.step`, as the graphs compute): "
        f"{result['max_abs_logit_diff_vs_pytorch_step_by_step']:.2e}; PyTorch's two paths against each other: "
        f"{result['max_abs_logit_diff_pytorch_whole_clip_vs_step_by_step']:.2e}; largest logit "
        f"{result['max_abs_logit']:.1f}\n"
        f"- same top-1 after every step: {result['same_top1_every_step']}/{result['videos']}\n"
        f"- same exit step and label per operating point: {exits or 'no named points'}\n"
        f"\nAim, logits within {LOGIT_AIM:g} of PyTorch: {aim}.\n"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--repo", type=Path, default=Path("model_repo"))
    parser.add_argument("--name", default="adafocus_v2")
    parser.add_argument("--data", type=Path, default=Path("data/synthetic"))
    parser.add_argument("--limit", type=int, default=None, help="only the first N test videos")
    parser.add_argument(
        "--provider", default="CPUExecutionProvider", help="ONNX Runtime execution provider to check (it must load)"
    )
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = verify(args.run, args.repo, args.name, args.data, args.limit, args.provider)
    write(result, args.name)
    print(json.dumps(result, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
