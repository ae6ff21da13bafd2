"""A model with only the ``full`` operating point and no measured accuracy (an imported checkpoint
before calibration, issue 23) is served: requests that name no exit run every frame, with a
warning at start-up; naming a point it lacks is still a 422."""

from __future__ import annotations

import logging
import math

from fastapi.testclient import TestClient

from service.app import create_app
from tests.pipeline.model_copies import SHIPPED, copy_of_shipped, edit_manifest
from tests.service.test_availability import settings
from tests.service.test_hardening import problem
from tests.videos import make_video


def _only_full(manifest: dict) -> None:
    steps = manifest["frames"]["num_frames"]
    full = next(point for point in manifest["operating_points"] if "full" in point["names"])
    full.update(accuracy=None, thresholds=["inf"] * (steps - 1) + ["-inf"])
    manifest["operating_points"] = [full]


def test_a_model_without_the_default_point_runs_every_frame(tmp_path, caplog):
    repo = copy_of_shipped(tmp_path)
    edit_manifest(repo, _only_full)
    clip = make_video(tmp_path / "clip.mp4", frames=16, width=128, height=128).read_bytes()
    with caplog.at_level(logging.WARNING, logger="service"), TestClient(create_app(settings(repo))) as client:
        listed = client.get("/v1/models").json()["models"]
        served = next(m for m in listed if m["name"] == SHIPPED[0])
        assert [p["accuracy"] for p in served["operating_points"]] == [None]
        answer = client.post("/v1/classify", files={"video": ("x.mp4", clip)})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["exit"]["frames_processed"] == body["exit"]["frames_sampled"]
        assert body["exit"]["operating_point"] is None  # the default did not apply: every frame
        named = client.post("/v1/classify", params={"exit": "full"}, files={"video": ("x.mp4", clip)})
        assert named.status_code == 200 and named.json()["exit"]["operating_point"] == "full"
        budget = client.post("/v1/classify", params={"exit": "1000"}, files={"video": ("x.mp4", clip)})
        assert budget.status_code == 200 and budget.json()["exit"]["operating_point"] == "full"
        refused = problem(client.post("/v1/classify", params={"exit": "fast"}, files={"video": ("x.mp4", clip)}), 422)
        assert "full" in refused["detail"]
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any("no operating point 'balanced'" in m and "every frame" in m for m in warned), warned
    assert not math.isnan(body["gmacs"]["spent"])
