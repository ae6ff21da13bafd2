"""Whole-clip TSM models (issue 23): the run folder an import writes, its export as one ``clip``
graph checked against PyTorch, and the service answering as PyTorch does on the same video,
in one pass (no early exit), with the box on the frames the focus network sees."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from fastapi.testclient import TestClient

from pipeline.frames.decode import read_clip
from pipeline.frames.sampling import sample_indices
from pipeline.frames.transform import IMAGENET, FrameGeometry
from pipeline.manifest import Manifest
from pipeline.onnx_steps import OnnxPipeline
from pipeline.repository import load_pipeline
from service.app import create_app
from tests.service.test_availability import settings
from tests.service.test_hardening import problem
from tests.training.tiny import TINY_TSM
from tests.videos import make_video
from training.adafocus.sthsth import TsmAdaFocusConfig, build_tsm_adafocus, tsn_segment_indices
from training.adafocus.sthsth_record import load_tsm_model
from training.checkpoints.formats import ImportedModel
from training.checkpoints.run_folder import write_run_folder
from training.exporter.repository import export_run

CLASSES = ["push", "pull", "turn"]
GLANCE, FOCUS = TINY_TSM["glance_segments"], TINY_TSM["focus_segments"]
SIZE, PATCH = TINY_TSM["frame_size"], TINY_TSM["patch_size"]
TINY = TsmAdaFocusConfig(num_classes=len(CLASSES), **TINY_TSM)


def _tiny_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = build_tsm_adafocus(TINY)
    with torch.no_grad():  # move the policy off the centre, so a wrong crop shows in the logits
        head = model.policy.net[-2]
        head.weight.mul_(20.0)
        head.bias.copy_(torch.tensor([1.5, -1.0]))
        for net in (model.global_fc, model.local_fc):  # logits large enough to rank clearly
            net.weight.mul_(30.0)
    return model.eval()


@pytest.fixture(scope="module")
def exported(tmp_path_factory):
    """(the model, its run folder, the repository with it exported as ``tsm`` v1)."""
    root = tmp_path_factory.mktemp("tsm")
    model = _tiny_model()
    source = root / "weights.pth"
    torch.save(model.state_dict(), source)
    imported = ImportedModel(
        kind="adafocus_tsm",
        model=model,
        model_name="adafocusv2_tsm",
        model_kwargs=TINY.as_dict(),
        num_classes=len(CLASSES),
        preprocessing={"input_size": SIZE, "resize": 72, "mean": list(IMAGENET.mean), "std": list(IMAGENET.std)},
    )
    run = root / "run"
    write_run_folder(imported, run, CLASSES, source, "adafocusv2-sthsth")
    repo = root / "repo"
    export_run(run, repo, name="tsm", log=lambda _: None)
    return model, run, repo


def test_the_run_folder_rebuilds_the_model(exported):
    model, run, _ = exported
    rebuilt, record = load_tsm_model(run / "model.pt")
    clip = torch.randn(1, GLANCE + FOCUS, 3, SIZE, SIZE)
    with torch.no_grad():
        assert torch.equal(rebuilt(clip).logits, model(clip).logits)
    assert record.classes == CLASSES and (record.geometry.resize, record.geometry.crop) == (72, SIZE)
    assert record.macs_per_clip > 0


def test_the_manifest_says_whole_clip(exported):
    _, _, repo = exported
    manifest = load_pipeline(repo, "tsm", 1).manifest
    assert manifest.temporal == "whole_clip" and set(manifest.graphs) == {"clip"} and manifest.num_steps == 1
    assert manifest.frames.samples == (GLANCE, FOCUS) and manifest.frames.num_frames == GLANCE + FOCUS
    assert [manifest.frames.network_of(p) for p in range(5)] == ["glance"] * GLANCE + ["focus"] * FOCUS
    assert [point.name for point in manifest.operating_points] == ["full"]
    assert manifest.operating_points[0].thresholds == ["-inf"] or manifest.operating_points[0].thresholds == [
        float("-inf")
    ]
    assert manifest.reference is not None and len(manifest.reference.step_logits) == 1
    graph = manifest.graphs["clip"]
    assert [t.shape for t in graph.inputs] == [["batch", GLANCE + FOCUS, 3, SIZE, SIZE]]
    assert [t.name for t in graph.outputs] == ["logits", "location"]
    assert manifest.gmacs_per_frame == pytest.approx(graph.gmacs_per_frame)


def _torch_answer(model, frames: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    with torch.no_grad():
        out = model(torch.from_numpy(frames)[None])
    return out.logits[0].numpy(), out.location[0].numpy()


def test_onnx_runtime_runs_the_clip_as_pytorch_does(exported):
    model, _, repo = exported
    pipeline = load_pipeline(repo, "tsm", 1)
    crops = np.random.default_rng(0).integers(0, 256, (GLANCE + FOCUS, SIZE, SIZE, 3), dtype=np.uint8)
    result = OnnxPipeline(pipeline).run_clip(crops)
    logits, location = _torch_answer(model, IMAGENET(crops))
    assert result.exit_step == 0 and len(result.step_logits) == 1
    np.testing.assert_allclose(result.logits, logits, atol=1e-4)
    np.testing.assert_allclose(result.locations[0], location, atol=1e-5)
    assert not np.allclose(location, 0.5, atol=0.05)  # the policy looks away from the centre


def test_the_service_answers_the_video_as_pytorch_does(exported, tmp_path):
    model, _, repo = exported
    video = make_video(tmp_path / "clip.mp4", frames=30, width=96, height=80, marker=True)
    manifest: Manifest = load_pipeline(repo, "tsm", 1).manifest
    geometry = FrameGeometry(manifest.frames.resize, manifest.frames.crop)
    clip = read_clip(video, manifest.frames.samples, geometry)
    logits, location = _torch_answer(model, clip.frames)
    expected = np.exp(logits - logits.max()) / np.exp(logits - logits.max()).sum()
    with TestClient(create_app(settings(repo, default_model="tsm"))) as client:
        answer = client.post("/v1/classify", params={"top_k": 3}, files={"video": ("x.mp4", video.read_bytes())})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        refused = problem(
            client.post("/v1/classify", params={"exit": "fast"}, files={"video": ("x.mp4", video.read_bytes())}), 422
        )
        full = client.post("/v1/classify", params={"exit": "full"}, files={"video": ("x.mp4", video.read_bytes())})
    scores = {entry["label"]: entry["score"] for entry in body["labels"]}
    for k, label in enumerate(CLASSES):
        assert scores[label] == pytest.approx(expected[k], abs=1e-5)
    assert body["labels"][0]["label"] == CLASSES[int(np.argmax(logits))]
    exit = body["exit"]
    assert (exit["step"], exit["frames_processed"], exit["frames_sampled"]) == (0, 5, 5)
    assert exit["frame_index"] == max(clip.frame_indices.tolist())
    assert [f["frame_index"] for f in body["frames"]] == clip.frame_indices.tolist()
    assert body["skipped_frames"] == []
    boxes = [f.get("box") for f in body["frames"]]
    assert boxes[:GLANCE] == [None] * GLANCE and all(box is not None for box in boxes[GLANCE:])
    assert len({(box["x"], box["y"]) for box in boxes[GLANCE:]}) == 1  # one patch per clip
    # the box is where the policy looked: location * (crop - patch) in the crop, mapped to the video
    crop_offset = ((96 * 72 / 80 - SIZE) / 2, (72 - SIZE) / 2)  # a 96x80 frame resized to 86.4x72
    scale = 80 / 72
    for axis, key in enumerate(("x", "y")):
        in_crop = location[axis] * (SIZE - PATCH)
        assert boxes[GLANCE][key] == pytest.approx((in_crop + crop_offset[axis]) * scale, abs=0.6)
    assert body["gmacs"]["spent"] == pytest.approx(body["gmacs"]["full_model"])
    assert refused["title"] == "No early exit" and "exit=off or full" in refused["detail"]
    assert full.status_code == 200 and full.json()["labels"] == body["labels"]


def test_our_sampling_is_the_authors_for_videos_longer_than_the_sets():
    """The served clip takes frames as the authors' test does (TSN segment centres per set), for
    every video with more frames than segments; at or under that length they take frame 0 every
    time and we spread the samples over the video (docs/import.md says so)."""
    for frames in range(FOCUS + 1, 400):
        ours = sample_indices(frames, (GLANCE, FOCUS)).tolist()
        assert ours == tsn_segment_indices(frames, GLANCE) + tsn_segment_indices(frames, FOCUS), frames
    for segments in (8, 12):
        for frames in range(segments + 1, 600):
            assert sample_indices(frames, segments).tolist() == tsn_segment_indices(frames, segments), frames
