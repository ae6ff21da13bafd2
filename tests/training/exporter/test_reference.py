"""The export records reference outputs (a fixed computed clip through the whole pipeline, ONNX
Runtime on CPU), and ``add_reference`` adds them to an older export without touching its graphs."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import torch

from pipeline.early_exit import OperatingPoint
from pipeline.frames.transform import FrameGeometry
from pipeline.manifest import REFERENCE_INPUT, manifest_schema
from pipeline.repository import load_pipeline, sha256_of
from service.registry import ModelRegistry
from service.settings import Settings
from tests.paths import SHIPPED_MODELS
from tests.pipeline.model_copies import copy_of_shipped, edit_manifest
from tests.training.exporter.quick_export import quick_export_onnx
from tests.training.tiny import TINY_TRAINING
from training.adafocus.config import TrainConfig
from training.adafocus.costs import step_costs
from training.adafocus.model import AdaFocusV2
from training.adafocus.record import ModelRecord, save_model
from training.exporter.repository import REFERENCE_ATOL, REFERENCE_RTOL, add_reference, export_run

SHIPPED = [("adafocus_v2", 2), ("full_frame", 1)]


def served(root: Path) -> ModelRegistry:
    registry = ModelRegistry(Settings(model_repo=root, providers=["CPUExecutionProvider"], threads=1))
    registry.load()
    return registry


def untrained_run(run: Path) -> Path:
    """A run directory with the ``model.pt`` of a freshly initialised tiny AdaFocusV2 (the export
    needs no trained weights; training one takes most of a minute)."""
    torch.manual_seed(0)
    config = TrainConfig(**TINY_TRAINING)
    model = AdaFocusV2(config.model_config(num_classes=3)).eval()
    steps = config.num_frames
    full = OperatingPoint([math.inf] * (steps - 1) + [-math.inf], 0.1, 1.0, [0.0] * (steps - 1) + [1.0])
    full.name, full.names = "full", ["full"]
    record = ModelRecord(
        config=model.config,
        method="adafocus_v2",
        classes=["a", "b", "c"],
        multi_label=False,
        geometry=FrameGeometry(config.resize, config.frame_size),
        normalisation=config.normalisation,
        confidence="max_prob",
        operating_points=[full.as_dict()],
        step_macs=step_costs(model).as_dict(),
        train_config={},
    )
    save_model(run / "model.pt", model, record)
    return run


def test_an_export_records_reference_outputs_the_service_checks(tmp_path: Path, monkeypatch):
    monkeypatch.setattr("training.exporter.repository.export_onnx", quick_export_onnx)
    export_run(untrained_run(tmp_path), tmp_path / "repo", log=lambda _: None)
    manifest = load_pipeline(tmp_path / "repo", "adafocus_v2").manifest
    reference = manifest.reference
    assert reference is not None and reference.input == REFERENCE_INPUT
    assert (reference.atol, reference.rtol) == (REFERENCE_ATOL, REFERENCE_RTOL)
    assert len(reference.step_logits) == manifest.frames.num_frames and reference.logits == reference.step_logits[-1]
    assert np.isfinite(reference.step_logits).all()
    assert served(tmp_path / "repo").unavailable == {}


def test_add_reference_rewrites_only_the_manifests(tmp_path: Path):
    root = copy_of_shipped(tmp_path)
    checksums = {path: sha256_of(path) for path in root.rglob("*") if path.is_file() and path.suffix != ".json"}
    for model in SHIPPED:
        edit_manifest(root, lambda m: m.pop("reference"), model)
    assert all(load_pipeline(root, *model).manifest.reference is None for model in SHIPPED)

    for model in SHIPPED:
        add_reference(root, *model, log=lambda _: None)
        written = json.loads((root / f"{model[0]}.v{model[1]}.json").read_text())
        shipped = json.loads((SHIPPED_MODELS / f"{model[0]}.v{model[1]}.json").read_text())
        assert {k: v for k, v in written.items() if k != "reference"} == {
            k: v for k, v in shipped.items() if k != "reference"
        }
        recomputed, recorded = (np.asarray(m["reference"]["step_logits"]) for m in (written, shipped))
        np.testing.assert_allclose(recomputed, recorded, rtol=0, atol=1e-5)
    assert {path: sha256_of(path) for path in checksums} == checksums  # the graphs are untouched
    assert (root / "manifest.schema.json").read_text() == manifest_schema()
    assert (SHIPPED_MODELS / "manifest.schema.json").read_text() == manifest_schema()
    assert served(root).unavailable == {}


def test_the_export_command_adds_the_reference_to_an_older_export(tmp_path, capsys):
    from training.export import main

    root = copy_of_shipped(tmp_path)
    shipped = json.loads((SHIPPED_MODELS / "adafocus_v2.v2.json").read_text())["reference"]
    edit_manifest(root, lambda manifest: manifest.pop("reference"))
    assert "reference" not in json.loads((root / "adafocus_v2.v2.json").read_text())

    assert main(["--add-reference", "adafocus_v2:2", "--out", str(root)]) == 0
    assert json.loads((root / "adafocus_v2.v2.json").read_text())["reference"] == shipped

    assert main(["--add-reference", "adafocus_v2", "--out", str(root)]) == 2  # no version
    assert main(["--add-reference", "adafocus_v2:9", "--out", str(root)]) == 2  # not exported
    assert "error:" in capsys.readouterr().err
