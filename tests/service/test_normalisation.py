"""The service normalises a model's frames with the statistics its manifest records."""

from __future__ import annotations

import io

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.frames.decode import ClipReader
from pipeline.frames.transform import FrameGeometry
from pipeline.onnx_steps import OnnxPipeline, create_sessions
from pipeline.repository import load_pipeline
from service.app import create_app
from service.settings import Settings
from tests.pipeline.model_copies import SHIPPED, copy_with_statistics, normalised
from tests.videos import make_video

MEAN, STD = (0.2, 0.5, 0.8), (0.4, 0.15, 0.3)  # far from ImageNet's


def test_served_scores_are_those_of_frames_normalised_with_the_manifests_statistics(tmp_path):
    root = copy_with_statistics(tmp_path, MEAN, STD)
    data = make_video(tmp_path / "clip.mp4", frames=24, width=160, height=128, marker=True).read_bytes()
    pipeline = load_pipeline(root, *SHIPPED)
    frames = pipeline.manifest.frames
    # The reference: the same samples (uint8 crops), normalised here, run without the service.
    reader = ClipReader(io.BytesIO(data), frames.num_frames, FrameGeometry(frames.resize, frames.crop))
    crops = reader.read(range(frames.num_frames), normalised=False).frames
    reader.close()
    logits = OnnxPipeline(pipeline, create_sessions(pipeline, threads=1)).run_clip(normalised(crops, MEAN, STD)).logits
    shifted = np.exp(logits.astype(np.float64) - logits.max())
    expected = dict(zip(pipeline.manifest.labels, shifted / shifted.sum()))

    settings = Settings(
        model_repo=root, models=[SHIPPED[0]], providers=["CPUExecutionProvider"], decode_workers=1, threads=1
    )
    with TestClient(create_app(settings)) as client:
        response = client.post(
            "/v1/classify", params={"exit": "off", "top_k": len(expected)}, files={"video": ("clip.mp4", data)}
        )
    assert response.status_code == 200, response.text
    scores = {entry["label"]: entry["score"] for entry in response.json()["labels"]}
    assert scores == pytest.approx(expected, rel=1e-4, abs=1e-6)
