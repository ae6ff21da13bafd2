"""Export to the model repository: graphs, equivalence with PyTorch, the manifest and its loader."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import onnx
import pytest
import torch

from pipeline.frames.decode import read_clip
from pipeline.frames.transform import FrameGeometry, normalise
from pipeline.manifest import Manifest, manifest_schema
from pipeline.onnx_steps import OnnxPipeline, create_sessions, provider_options, run_step
from pipeline.repository import ModelRepositoryError, find_pipelines, load_pipeline
from tests.paths import REPO
from tests.training.exporter.quick_export import quick_export_onnx
from tests.training.tiny import TINY_TRAINING
from training.adafocus.config import TrainConfig
from training.adafocus.record import load_model
from training.adafocus.run import train
from training.export import main
from training.exporter.repository import export_run


@pytest.fixture(scope="module")
def exported(tiny_dataset: Path, tmp_path_factory) -> dict[str, Path]:
    """Tiny trained runs of AdaFocusV2 and two baselines, exported into one repository."""
    root = tmp_path_factory.mktemp("export")
    repo = root / "repo"
    for variant in ("adafocus_v2", "full_frame", "glance_only"):
        train(TrainConfig(data=str(tiny_dataset), out=str(root / variant), variant=variant, **TINY_TRAINING))
        export_run(root / variant, repo, log=lambda _: None)
    return {"repo": repo, "runs": root, "data": tiny_dataset}


def test_repository_layout_and_graphs(exported):
    repo = exported["repo"]
    pipeline = load_pipeline(repo, "adafocus_v2")
    manifest = pipeline.manifest
    assert set(manifest.graphs) == {"glance", "focus", "classifier"} and manifest.focus == "policy"
    for name, graph in manifest.graphs.items():
        model = onnx.load(str(pipeline.graph_path(name)))
        onnx.checker.check_model(model, full_check=True)
        assert {o.domain: o.version for o in model.opset_import}[""] == 17
        # Only the batch axis is dynamic.
        for value in model.graph.input:
            dims = value.type.tensor_type.shape.dim
            assert dims[0].dim_param and all(d.HasField("dim_value") for d in dims[1:]), (name, value.name)
        config = (repo / graph.triton_model / "config.pbtxt").read_text()
        assert f'name: "{graph.triton_model}"' in config and 'platform: "onnxruntime_onnx"' in config
        # Triton refuses empty dims: a per-frame scalar is [1], reshaped to [] for the model.
        assert "dims: [  ]" not in config
        scalars = [spec.name for spec in graph.inputs if len(spec.shape) == 1]
        assert config.count("reshape: { shape: [ ] }") == len(scalars)
    focus = onnx.load(str(pipeline.graph_path("focus")))
    samplers = [node for node in focus.graph.node if node.op_type == "GridSample"]
    assert len(samplers) == 1
    attributes = {a.name: onnx.helper.get_attribute_value(a) for a in samplers[0].attribute}
    assert attributes["mode"] == b"bilinear" and attributes.get("align_corners", 0) == 0
    labels = (repo / manifest.graphs["classifier"].triton_model / "labels.txt").read_text().splitlines()
    assert labels == manifest.labels
    assert abs(manifest.gmacs_per_frame - sum(g.gmacs_per_frame for g in manifest.graphs.values())) < 1e-9
    assert (repo / "manifest.schema.json").read_text() == manifest_schema()
    assert set(load_pipeline(repo, "full_frame").manifest.graphs) == {"focus", "classifier"}
    assert set(load_pipeline(repo, "glance_only").manifest.graphs) == {"glance", "classifier"}


def _test_clips(exported, manifest: Manifest) -> list[tuple[np.ndarray, int]]:
    data = exported["data"]
    geometry = FrameGeometry(manifest.frames.resize, manifest.frames.crop)
    rows = [line.split(",") for line in (data / "test.csv").read_text().splitlines()]
    return [(read_clip(data / path, manifest.frames.num_frames, geometry).frames, int(label)) for path, label in rows]


@pytest.mark.parametrize("name", ["adafocus_v2", "full_frame", "glance_only"])
def test_onnx_pipeline_matches_pytorch_end_to_end(exported, name: str):
    model, _ = load_model(exported["runs"] / name / "model.pt")
    pipeline = OnnxPipeline(load_pipeline(exported["repo"], name))
    for frames, _ in _test_clips(exported, pipeline.manifest):
        ours = pipeline.run_clip(frames)
        with torch.no_grad():
            clip = torch.from_numpy(frames)[None]
            reference = model(clip).step_logits[0].numpy()
        got = np.stack(ours.step_logits)
        assert np.abs(got - reference).max() < 1e-4
        assert (got.argmax(-1) == reference.argmax(-1)).all()


@pytest.mark.parametrize("name", ["adafocus_v2", "full_frame"])
def test_a_batched_step_gives_every_row_what_it_gets_alone(name: str):
    """The service runs rows of different videos, at different steps, as one step batch. The
    shipped model (trained, so every input moves its outputs), on random frames and states."""
    pipeline = OnnxPipeline(load_pipeline(REPO / "model_repo", name))
    manifest = pipeline.manifest
    size, rng = manifest.frames.crop, np.random.default_rng(0)
    rows = [
        {
            "frames": rng.normal(size=(1, 3, size, size)).astype(np.float32),
            "policy_state": rng.normal(size=(1, manifest.state_sizes["policy"])).astype(np.float32),
            "classifier_state": rng.normal(size=(1, manifest.state_sizes["classifier"])).astype(np.float32),
            "step": np.array([step], dtype=np.int64),
        }
        for step in (0, 3, 5)
    ]
    batched, seconds = run_step(pipeline.sessions, manifest, {k: np.concatenate([r[k] for r in rows]) for k in rows[0]})
    assert set(seconds) == {"glance", "focus", "classify"}
    assert not np.allclose(batched["logits"][0], batched["logits"][2], atol=1e-3)  # the rows differ
    for i, row in enumerate(rows):
        alone, _ = run_step(pipeline.sessions, manifest, row)
        assert set(alone) == set(batched)
        for key, value in alone.items():
            np.testing.assert_allclose(batched[key][i : i + 1], value, atol=1e-5, err_msg=key)


def test_a_step_on_uint8_crops_normalises_them_as_the_frame_pipeline_does():
    """The service hands ``run_step`` the decoder's uint8 crops; the result is the same, bit for
    bit, as on the crops that ``frames.transform.normalise`` gives (what training sees)."""
    pipeline = OnnxPipeline(load_pipeline(REPO / "model_repo", "adafocus_v2"))
    manifest = pipeline.manifest
    size, rng = manifest.frames.crop, np.random.default_rng(1)
    crops = rng.integers(0, 256, size=(2, size, size, 3), dtype=np.uint8)
    feeds = {
        "policy_state": np.zeros((2, manifest.state_sizes["policy"]), dtype=np.float32),
        "classifier_state": np.zeros((2, manifest.state_sizes["classifier"]), dtype=np.float32),
        "step": np.zeros(2, dtype=np.int64),
    }
    from_crops, _ = run_step(pipeline.sessions, manifest, {**feeds, "frames": crops})
    from_floats, _ = run_step(pipeline.sessions, manifest, {**feeds, "frames": normalise(crops)})
    for key, value in from_floats.items():
        np.testing.assert_array_equal(from_crops[key], value, err_msg=key)


def test_early_exit_stops_computing(exported):
    pipeline = OnnxPipeline(load_pipeline(exported["repo"], "adafocus_v2"))
    frames, _ = _test_clips(exported, pipeline.manifest)[0]
    steps = pipeline.manifest.frames.num_frames
    assert pipeline.run_clip(frames, thresholds=[-np.inf] * steps).exit_step == 0
    assert len(pipeline.run_clip(frames, thresholds=[np.inf] * steps).step_logits) == steps


def test_versions_and_names(exported, tmp_path: Path, monkeypatch):
    # The versions are the subject, not the graphs: the smallest run (two graphs), exported by
    # the quicker exporter (the one export_run uses is tested by the fixture and the tests above).
    monkeypatch.setattr("training.exporter.repository.export_onnx", quick_export_onnx)
    repo = tmp_path / "repo"
    shutil.copytree(exported["repo"], repo)
    run = exported["runs"] / "glance_only"
    assert main([str(run), "--out", str(repo)]) == 0  # the next free version
    assert load_pipeline(repo, "glance_only").manifest.version == 2
    assert load_pipeline(repo, "glance_only", version=1).manifest.version == 1
    assert find_pipelines(repo)["adafocus_v2"] == [1]  # the other pipelines keep their versions
    assert main([str(run), "--out", str(repo), "--version", "2"]) == 2  # taken
    assert main([str(tmp_path / "no_run"), "--out", str(repo)]) == 2


def test_tensorrt_without_tensorrt_or_gpu_stops_with_a_clear_message(exported, tmp_path: Path, capsys):
    from training.exporter import tensorrt_engines

    repo = tmp_path / "repo"
    shutil.copytree(exported["repo"], repo)
    run = exported["runs"] / "adafocus_v2"
    assert main([str(run), "--out", str(repo), "--tensorrt"]) == 2
    message = capsys.readouterr().err
    try:
        import tensorrt  # noqa: F401
    except ImportError:
        assert "TensorRT's Python package" in message and "not installed" in message
    else:
        assert "no CUDA GPU" in message
    # It stops before exporting: no new version, nothing half-written.
    assert find_pipelines(repo)["adafocus_v2"] == [1]
    assert not (repo / "engines").exists()
    with pytest.raises(tensorrt_engines.TensorRTUnavailable):
        tensorrt_engines.build_pipeline_engines(repo, "adafocus_v2")


@pytest.fixture
def repo_copy(exported, tmp_path: Path) -> Path:
    repo = tmp_path / "repo"
    shutil.copytree(exported["repo"], repo)
    return repo


def test_missing_file_is_rejected(repo_copy: Path):
    (repo_copy / "adafocus_v2_focus" / "1" / "model.onnx").unlink()
    with pytest.raises(ModelRepositoryError, match="missing file .*adafocus_v2_focus/1/model.onnx"):
        load_pipeline(repo_copy, "adafocus_v2")


def test_corrupt_file_is_rejected(repo_copy: Path):
    path = repo_copy / "adafocus_v2_classifier" / "1" / "model.onnx"
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ModelRepositoryError, match="corrupt or was replaced"):
        load_pipeline(repo_copy, "adafocus_v2")


def test_invalid_or_mismatched_manifest_is_rejected(repo_copy: Path):
    manifest_path = repo_copy / "adafocus_v2.v1.json"
    original = json.loads(manifest_path.read_text())
    manifest_path.write_text("{not json")
    with pytest.raises(ModelRepositoryError, match="cannot be read as JSON"):
        load_pipeline(repo_copy, "adafocus_v2")
    broken = {k: v for k, v in original.items() if k != "labels"}
    manifest_path.write_text(json.dumps(broken))
    with pytest.raises(ModelRepositoryError, match="labels: Field required"):
        load_pipeline(repo_copy, "adafocus_v2")
    manifest_path.write_text(json.dumps({**original, "version": 3}))
    with pytest.raises(ModelRepositoryError, match="describes adafocus_v2 v3"):
        load_pipeline(repo_copy, "adafocus_v2")
    with pytest.raises(ModelRepositoryError, match="no pipeline nope in .*available: adafocus_v2"):
        load_pipeline(repo_copy, "nope")
    labels = repo_copy / "adafocus_v2_classifier" / "labels.txt"
    manifest_path.write_text(json.dumps(original))
    labels.write_text("other\n")
    with pytest.raises(ModelRepositoryError, match="corrupt or was replaced"):
        load_pipeline(repo_copy, "adafocus_v2")


def test_tensorrt_provider_gets_profiles_and_caches(exported, tmp_path: Path):
    glance = load_pipeline(exported["repo"], "adafocus_v2").manifest.graphs["glance"]
    trt, cuda = provider_options(glance, ["TensorrtExecutionProvider", "CUDAExecutionProvider"], tmp_path, 16, 4)
    name, options = trt
    assert name == "TensorrtExecutionProvider" and cuda == "CUDAExecutionProvider"
    assert options["trt_profile_min_shapes"] == "frames:1x3x32x32,policy_state:1x16"
    assert options["trt_profile_opt_shapes"] == "frames:4x3x32x32,policy_state:4x16"
    assert options["trt_profile_max_shapes"] == "frames:16x3x32x32,policy_state:16x16"
    assert options["trt_engine_cache_path"] == str(tmp_path) and options["trt_engine_cache_enable"] == "True"
    assert options["trt_fp16_enable"] == "False"


def test_fp16_engines_are_asked_for_and_cached_apart_from_fp32_ones(exported, tmp_path: Path):
    """FP16 on request, its engines in cache_dir/fp16: ONNX Runtime would load an FP32 engine
    cached under the same name instead of building the FP16 one."""
    glance = load_pipeline(exported["repo"], "adafocus_v2").manifest.graphs["glance"]
    ((_, fp32),) = provider_options(glance, ["TensorrtExecutionProvider"], tmp_path)
    ((_, fp16),) = provider_options(glance, ["TensorrtExecutionProvider"], tmp_path, fp16=True)
    assert fp16["trt_fp16_enable"] == "True"
    assert fp16["trt_engine_cache_path"] == fp16["trt_timing_cache_path"] == str(tmp_path / "fp16")
    assert fp32["trt_engine_cache_path"] == str(tmp_path)


@pytest.mark.parametrize("allow_spinning", [False, True])
def test_sessions_spin_only_when_asked(allow_spinning: bool):
    """Idle ONNX Runtime threads spin by default, which starves the service's decoders: off unless asked."""
    sessions = create_sessions(load_pipeline(REPO / "model_repo", "adafocus_v2"), allow_spinning=allow_spinning)
    for session in sessions.values():
        entry = session.get_session_options().get_session_config_entry("session.intra_op.allow_spinning")
        assert entry == ("1" if allow_spinning else "0")


def test_shipped_model_loads_and_classifies(tmp_path: Path):
    """model_repo/ ships a verified default model that reads fresh synthetic clips."""
    from training.data.synthetic import SyntheticConfig, generate

    pipeline = OnnxPipeline(load_pipeline(REPO / "model_repo", "adafocus_v2"))
    manifest = pipeline.manifest
    assert (REPO / "model_repo" / "manifest.schema.json").read_text() == manifest_schema()
    assert {"full", "accurate", "balanced", "fast"} <= {n for p in manifest.operating_points for n in p.names}
    data = generate(tmp_path, SyntheticConfig(seed=11, train=1, calibration=1, test=20), workers=1)
    geometry = FrameGeometry(manifest.frames.resize, manifest.frames.crop)
    correct = 0
    for line in (data / "test.csv").read_text().splitlines():
        path, label = line.split(",")
        frames = read_clip(data / path, manifest.frames.num_frames, geometry).frames
        correct += int(pipeline.run_clip(frames).logits.argmax()) == int(label)
    assert correct >= 16  # 98% on the 500-clip test split; chance is 2 of 20


def test_service_answers_like_pytorch(exported):
    """POST /classify on an exported tiny model: same top-1, exit step and scores as PyTorch."""
    from fastapi.testclient import TestClient

    from pipeline.early_exit import confidence, simulate_exit
    from service.app import create_app
    from service.settings import Settings

    model, record = load_model(exported["runs"] / "adafocus_v2" / "model.pt")
    settings = Settings(model_repo=exported["repo"], models=["adafocus_v2"], providers=["CPUExecutionProvider"])
    manifest = load_pipeline(exported["repo"], "adafocus_v2").manifest
    data = exported["data"]
    compared = 0
    with TestClient(create_app(settings)) as client:
        for point in manifest.operating_points[:4]:
            choice = point.names[0] if point.names else None
            if choice is None:
                continue
            for line in (data / "test.csv").read_text().splitlines():
                path = data / line.split(",")[0]
                body = client.post("/classify", params={"exit": choice, "top_k": 100}, files={"video": path.open("rb")})
                assert body.status_code == 200, body.text
                body = body.json()
                frames = read_clip(
                    path, manifest.frames.num_frames, FrameGeometry(manifest.frames.resize, manifest.frames.crop)
                )
                with torch.no_grad():
                    logits = model(torch.from_numpy(frames.frames)[None]).step_logits[0].numpy()
                thresholds = [float(t) for t in point.thresholds]
                scores_torch = confidence(logits, manifest.confidence)
                step = int(simulate_exit(scores_torch[None], thresholds)[0])
                # Thresholds are calibration videos' confidences: a test video within float noise
                # of one may exit a step apart on either runtime (docs/adafocus.md); skip those.
                near_tie = any(abs(scores_torch[t] - thresholds[t]) < 1e-4 for t in range(step + 1))
                if near_tie:
                    step = body["exit"]["step"]
                else:
                    assert body["exit"]["step"] == step
                    compared += 1
                probabilities = torch.softmax(torch.from_numpy(logits[step]).double(), -1).numpy()
                scores = {entry["label"]: entry["score"] for entry in body["labels"]}
                assert max(abs(scores[label] - probabilities[i]) for i, label in enumerate(manifest.labels)) < 1e-4
                assert body["labels"][0]["label"] == manifest.labels[int(logits[step].argmax())]
    assert compared >= 8  # exit steps were really compared, not all skipped as ties
