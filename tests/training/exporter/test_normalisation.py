"""A model trained with other statistics than ImageNet's is exported and served with them."""

from __future__ import annotations

import json

import numpy as np
import torch

from pipeline.onnx_steps import OnnxPipeline, run_step
from pipeline.repository import load_pipeline
from tests.training.adafocus.test_contracts import TINY, tiny_record
from tests.training.exporter.quick_export import quick_export_onnx
from training.adafocus.model import AdaFocusConfig, AdaFocusV2
from training.adafocus.record import save_model
from training.exporter.repository import export_run

MEAN, STD = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)


def test_the_served_pipeline_normalises_with_the_statistics_the_model_was_trained_with(tmp_path, monkeypatch):
    # The pipeline normalises (in NumPy), not the graphs: any exporter's graphs serve here.
    monkeypatch.setattr("training.exporter.repository.export_onnx", quick_export_onnx)
    torch.manual_seed(0)
    model = AdaFocusV2(AdaFocusConfig(**TINY)).eval()
    run, repo = tmp_path / "run", tmp_path / "repo"
    save_model(run / "model.pt", model, tiny_record(model))  # the record says MEAN, STD
    manifest_path = export_run(run, repo, name="custom", log=lambda _: None)
    frames_spec = json.loads(manifest_path.read_text())["frames"]
    assert (frames_spec["mean"], frames_spec["std"]) == (list(MEAN), list(STD))

    pipeline = OnnxPipeline(load_pipeline(repo, "custom"))
    manifest = pipeline.manifest
    crops = np.random.default_rng(0).integers(0, 256, (2, 32, 32, 3), dtype=np.uint8)
    feeds = {
        "frames": crops,
        "policy_state": np.zeros((2, manifest.state_sizes["policy"]), np.float32),
        "classifier_state": np.zeros((2, manifest.state_sizes["classifier"]), np.float32),
        "step": np.zeros(2, np.int64),
    }
    served, _ = run_step(pipeline.sessions, manifest, feeds)
    # What training fed the model: the crops normalised with the run's own statistics.
    normalised = (crops.astype(np.float32) / 255 - np.float32(MEAN)) / np.float32(STD)
    with torch.no_grad():
        logits, _, _ = model.step(torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy()), model.initial_state(2), 0)
    np.testing.assert_allclose(served["logits"], logits.numpy(), rtol=1e-4, atol=1e-4)
