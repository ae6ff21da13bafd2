"""A model that fails verification, ONNX Runtime or its warm-up (outputs included) is marked
unavailable with its reason; the others are served, and /readyz follows ADAFOCUS_READY_WHEN
(issue 22)."""

from __future__ import annotations

import hashlib
import logging
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from pipeline.manifest import reference_clip
from pipeline.repository import ModelRepositoryError
from service.app import create_app
from service.registry import ModelRegistry
from service.settings import Settings
from tests.paths import SHIPPED_MODELS
from tests.pipeline.model_copies import SHIPPED, copy_of_shipped, damage_graph, edit_manifest
from tests.service.test_hardening import problem
from tests.videos import make_video

BASELINE = ("full_frame", 1)
# sha256 of adafocus-reference/1 at 8 frames of 128x128 (the shipped models' geometry).
REFERENCE_CLIP_SHA256 = "984e5c31a4de4be0d253cde3587c3ef02f2f85ced8bcd6d51fda2d430508fc32"


def settings(root: Path, **overrides) -> Settings:
    return Settings(model_repo=root, providers=["CPUExecutionProvider"], decode_workers=1, threads=1, **overrides)


def loaded(root: Path, **overrides) -> ModelRegistry:
    registry = ModelRegistry(settings(root, **overrides))
    registry.load()
    return registry


def reason(registry: ModelRegistry, model: tuple[str, int | None]) -> str:
    assert set(registry.unavailable) == {model}, registry.unavailable
    return registry.unavailable[model].reason


@pytest.fixture
def repo(tmp_path) -> Path:
    return copy_of_shipped(tmp_path)


def test_a_corrupt_graph_leaves_the_other_model_served(repo, tmp_path, caplog):
    damage_graph(repo, BASELINE, "focus")
    with caplog.at_level(logging.ERROR, logger="service"), TestClient(create_app(settings(repo))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 200, ready.text  # the default model is served
        body = ready.json()
        assert body["status"] == "ready" and body["models"] == ["adafocus_v2 v2"]
        (failed,) = body["unavailable"]
        assert (failed["name"], failed["version"]) == BASELINE and "corrupt" in failed["reason"]

        listed = client.get("/v1/models").json()
        assert [m["name"] for m in listed["models"]] == ["adafocus_v2"]
        assert listed["models"][0]["status"] == "available"
        assert listed["unavailable"] == [{**failed, "status": "unavailable"}]

        clip = make_video(tmp_path / "clip.mp4", frames=16, width=128, height=128).read_bytes()
        refused = client.post("/v1/classify", params={"model": "full_frame"}, files={"video": ("x.mp4", clip)})
        answer = problem(refused, 503)  # it exists, so not a 404
        assert answer["title"] == "Model unavailable" and failed["reason"] in answer["detail"]
        problem(client.post("/v1/classify", params={"model": "nope"}, files={"video": ("x.mp4", clip)}), 404)
        assert client.post("/v1/classify", files={"video": ("x.mp4", clip)}).status_code == 200
    logged = [r for r in caplog.records if r.levelno == logging.ERROR and "full_frame v1" in r.getMessage()]
    assert logged and failed["reason"] in logged[0].getMessage() and "\n" not in logged[0].getMessage()


def test_a_graph_onnx_runtime_refuses_is_unavailable(repo):
    damage_graph(repo, BASELINE, "classifier", checksum_too=True)  # verification passes
    registry = loaded(repo)
    assert "ONNX Runtime" in reason(registry, BASELINE) and "\n" not in reason(registry, BASELINE)
    assert set(registry.models) == {SHIPPED}


def test_a_warm_up_failure_is_unavailable(repo):
    # The classifier's state is 256 wide: a manifest that says 255 feeds it the wrong shape.
    edit_manifest(repo, lambda m: m["state_sizes"].update(classifier=255), BASELINE)
    edit_manifest(repo, lambda m: m.pop("reference"), BASELINE)
    assert reason(loaded(repo), BASELINE).startswith("warm-up failed")


def test_the_shipped_models_carry_a_reference_and_match_it():
    registry = loaded(SHIPPED_MODELS)
    assert registry.unavailable == {} and set(registry.models) == {SHIPPED, BASELINE}
    for model in registry.models.values():
        assert model.pipeline.manifest.reference is not None
    # The formula's bytes are part of the manifest format: they must never change.
    clip = reference_clip(registry.models[SHIPPED].pipeline.manifest.frames)
    assert clip.shape == (8, 128, 128, 3) and clip.dtype == np.uint8
    assert hashlib.sha256(clip.tobytes()).hexdigest() == REFERENCE_CLIP_SHA256


def _shift_reference(by: float):
    def edit(manifest: dict) -> None:
        manifest["reference"]["step_logits"][3][2] += by

    return edit


def test_outputs_that_differ_from_the_reference_are_not_served(repo):
    edit_manifest(repo, _shift_reference(0.5))  # atol 0.15 + 2% of a logit under 12
    registry = loaded(repo)
    message = reason(registry, SHIPPED)
    assert "reference" in message and "step 3, logit 2" in message
    assert set(registry.models) == {BASELINE}
    assert registry.readiness() == "the default model adafocus_v2 is not served"


def test_outputs_within_the_tolerance_are_served(repo):
    edit_manifest(repo, _shift_reference(0.1))
    assert loaded(repo).unavailable == {}


def test_ready_when_decides_readiness(repo):
    damage_graph(repo, SHIPPED, "glance")  # the default model
    registry = loaded(repo)
    assert registry.readiness() == "the default model adafocus_v2 is not served"
    registry.settings = settings(repo, ready_when="any")
    assert registry.readiness() is None
    registry.settings = settings(repo, ready_when="all")
    assert registry.readiness() == "1 model version(s) unavailable"
    assert loaded(repo, ready_when="all", models=["full_frame"]).readiness() is None


def test_readyz_is_503_with_the_reasons_when_the_rule_fails(repo):
    damage_graph(repo, SHIPPED, "glance")
    with TestClient(create_app(settings(repo))) as client:
        ready = client.get("/readyz")
        assert ready.status_code == 503
        body = ready.json()
        assert body["status"] == "not ready" and body["reason"] == "the default model adafocus_v2 is not served"
        assert body["models"] == ["full_frame v1"] and body["unavailable"][0]["name"] == "adafocus_v2"
        assert client.get("/healthz").status_code == 200  # alive all the same
        problem(client.post("/v1/classify", content=b"x", headers={"content-type": "video/mp4"}), 503)


def test_a_model_the_settings_name_but_the_repository_lacks_is_unavailable(repo):
    registry = loaded(repo, models=["adafocus_v2", "missing"])
    assert "no pipeline missing" in reason(registry, ("missing", None))
    with pytest.raises(Exception, match="model missing is not served: no pipeline missing"):
        registry.get("missing")


@pytest.mark.parametrize("make", ["empty", "absent"])
def test_an_empty_repository_still_fails_start_up(tmp_path, make):
    root = tmp_path / "model_repo"
    if make == "empty":
        root.mkdir()
    with pytest.raises(ModelRepositoryError, match="no pipeline manifests|does not exist"):
        loaded(root)


@pytest.mark.parametrize("shrinkage", [True, False])
def test_the_arena_gives_memory_back_unless_told_not_to(shrinkage: bool):
    """ADAFOCUS_ORT_ARENA_SHRINKAGE (on by default) decides whether the served sessions shrink the arena."""
    from pipeline.onnx_steps import ArenaShrinkingSession

    assert Settings().ort_arena_shrinkage is True
    registry = loaded(SHIPPED_MODELS, models=["adafocus_v2"], ort_arena_shrinkage=shrinkage)
    sessions = registry.get("adafocus_v2").runner.sessions
    assert all(isinstance(session, ArenaShrinkingSession) == shrinkage for session in sessions.values())


@pytest.mark.parametrize("fp16", [False, True])
def test_tensorrt_fp16_follows_the_setting(monkeypatch, fp16: bool):
    """ADAFOCUS_TRT_FP16 (off by default) reaches the TensorRT options of every served graph."""
    from tests.provider_options import record_fp16

    asked = record_fp16(monkeypatch)
    assert Settings().trt_fp16 is False
    registry = loaded(SHIPPED_MODELS, models=["adafocus_v2"], trt_fp16=fp16)
    assert len(asked) == len(registry.get("adafocus_v2").runner.sessions) and set(asked) == {fp16}
