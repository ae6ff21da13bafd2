"""Paper-size models with random weights, exported to ONNX for ``bench/bench_realsize.py`` (issue 25).

Random weights have the right shapes, so the graphs cost what the published models cost, but
their confidences mean nothing: calibrated exits would exit anywhere. Each model therefore
carries *forced* exit points instead, ``after_1``, ``after_4``, ``after_8`` (exit after that
many steps, whatever the confidence), next to ``full`` (every frame). They are ordinary
operating points of the manifest, so the service runs them through its usual exit loop.

* ``adafocus_v2_p{96,128,160}``: the AdaFocusV2 ActivityNet configuration
  (:func:`training.adafocus.presets.paper_activitynet`: MobileNetV2 glance at 224, ResNet-50
  focus on the patch, GRU-2048 policy, 4096-wide pooling classifier, T = 16, 200 classes);
* ``full_frame``: the baseline, ResNet-50 on the whole 224 frame with the same pooling
  classifier and T.

Frames: resize 256, centre crop 224, ImageNet statistics (the published models' preprocessing).
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path

from pipeline.early_exit import OperatingPoint
from pipeline.frames.transform import IMAGENET, FrameGeometry

PATCH_SIZES = (96, 128, 160)
FORCED_EXITS = (1, 4, 8)  # steps after which the forced points exit
NUM_CLASSES = 200
GEOMETRY = FrameGeometry(256, 224)
NEVER = float("inf")


@dataclass(frozen=True)
class PaperModel:
    """One model of the bench: its pipeline name and how to build its architecture."""

    name: str
    patch_size: int | None  # None: the full-frame baseline

    def config(self):
        from training.adafocus.presets import paper_activitynet

        paper = paper_activitynet(self.patch_size or 128, NUM_CLASSES)
        if self.patch_size is None:
            return dataclasses.replace(paper, variant="full_frame")
        return paper


MODELS = {
    **{f"adafocus_v2_p{p}": PaperModel(f"adafocus_v2_p{p}", p) for p in PATCH_SIZES},
    "full_frame": PaperModel("full_frame", None),
    # The same p128 weights (same seed) under their own name, whose version 2 is its INT8 export
    # (``training/export.py --int8``): the service serves a name's latest version.
    "adafocus_v2_p128_int8": PaperModel("adafocus_v2_p128_int8", 128),
}
INT8_CALIBRATION_CLIPS = 16  # synthetic benchmark clips (random weights: only the speed counts)


def forced_exit_point(after: int, num_frames: int, gmacs_per_frame: float) -> OperatingPoint:
    """Exit after ``after`` steps whatever the confidence (the threshold of step ``after`` is -inf,
    those before it +inf); ``after == num_frames`` is the ``full`` point."""
    name = "full" if after == num_frames else f"after_{after}"
    return OperatingPoint(
        thresholds=[NEVER] * (after - 1) + [-NEVER] * (num_frames - after + 1),
        expected_gmacs=gmacs_per_frame * after,
        accuracy=None,
        exit_fractions=[1.0 if step == after - 1 else 0.0 for step in range(num_frames)],
        name=name,
        names=[name],
    )


def write_run(model_spec: PaperModel, run_dir: Path, seed: int = 0) -> Path:
    """``run_dir/model.pt``: the model with random weights (``seed``) and its forced exit points."""
    import torch

    from training.adafocus.costs import step_costs
    from training.adafocus.model import AdaFocusV2
    from training.adafocus.record import ModelRecord, save_model

    torch.manual_seed(seed)
    config = model_spec.config()
    model = AdaFocusV2(config).eval()
    costs = step_costs(model)
    gmacs = costs.total / 1e9
    points = [forced_exit_point(after, config.num_frames, gmacs) for after in (*FORCED_EXITS, config.num_frames)]
    record = ModelRecord(
        config=config,
        method="adafocus_v2",
        classes=[f"class_{i:03d}" for i in range(NUM_CLASSES)],
        multi_label=False,
        geometry=GEOMETRY,
        normalisation=IMAGENET,
        confidence="max_prob",
        operating_points=[point.as_dict() for point in points],
        step_macs=costs.as_dict(),
        train_config={"bench_realsize": {"random_weights_seed": seed, "model": model_spec.name}},
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    save_model(run_dir / "model.pt", model, record)
    return run_dir / "model.pt"


def export_models(work: Path, names: list[str], log=print) -> Path:
    """The model repository ``work/repo`` with ``names`` exported (version 1 each); a model
    already there (its manifest written by an earlier run of the bench) is kept."""
    from training.exporter.repository import export_run

    repo = work / "repo"
    for name in names:
        if latest_manifest(repo, name) is not None:
            continue
        run_dir = work / "runs" / name
        write_run(MODELS[name], run_dir)
        log(f"exporting {name} (random weights, paper size)")
        export_run(run_dir, repo, name=name, version=1, log=log)
        if name.endswith("_int8"):
            _add_int8(repo, name, log)
    return repo


def _add_int8(repo: Path, name: str, log) -> None:
    """Version 2 of ``name``: its INT8 export, calibrated on the synthetic benchmark's clips
    (generated if missing), keeping the forced exits, the test split not evaluated (random
    weights). Version 1's manifest is removed, so that the service loads the INT8 graphs alone."""
    from training.exporter.quantize import quantize_pipeline

    log(f"quantizing {name} to INT8 (version 2)")
    quantize_pipeline(repo, name, 1, None, 2, INT8_CALIBRATION_CLIPS, evaluate_test=False, recalibrate=False, log=log)
    (repo / f"{name}.v1.json").unlink()


def latest_manifest(repo: Path, name: str) -> dict | None:
    """The manifest of the latest version of ``name`` in ``repo`` (None: not exported yet)."""
    versions = sorted(int(path.name.split(".v")[-1][: -len(".json")]) for path in repo.glob(f"{name}.v*.json"))
    return json.loads((repo / f"{name}.v{versions[-1]}.json").read_text()) if versions else None


def manifest_gmacs(repo: Path, name: str) -> float:
    """GMACs per frame of an exported model, from its manifest (computed from the model at export)."""
    return float(latest_manifest(repo, name)["gmacs_per_frame"])
