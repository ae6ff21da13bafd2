"""INT8 export (training/exporter/quantize.py) of the shipped model, on fresh synthetic clips."""

from __future__ import annotations

import shutil
from pathlib import Path

import onnx
import pytest

from pipeline.repository import load_pipeline
from training.data.synthetic import SyntheticConfig, generate
from training.export import main as export_main
from training.exporter.quantize import crop_nodes, quantize_pipeline

REPO = Path(__file__).resolve().parents[3]
SHIPPED = "adafocus_v2"


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """The shipped pipeline copied into a fresh repository, and its INT8 version (v3) there."""
    root = tmp_path_factory.mktemp("int8")
    repo = root / "repo"
    shipped = load_pipeline(REPO / "model_repo", SHIPPED)
    for relative in [*shipped.manifest.files, shipped.manifest.file_name(SHIPPED, shipped.manifest.version)]:
        (repo / relative).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO / "model_repo" / relative, repo / relative)
    data = generate(root / "data", SyntheticConfig(seed=21, train=2, calibration=8, test=24), workers=1)
    result = quantize_pipeline(repo, SHIPPED, shipped.manifest.version, data, log=lambda _: None)
    return repo, shipped, result


def _producers(model) -> dict[str, str]:
    return {output: node.op_type for node in model.graph.node for output in node.output}


def test_the_int8_version_quantizes_the_cnns_and_leaves_the_crop_and_classifier_fp32(quantized):
    repo, shipped, result = quantized
    int8 = load_pipeline(repo, SHIPPED, shipped.manifest.version + 1)  # checksums verified
    assert int8.manifest.precision == "int8" and result.manifest_path.name == f"{SHIPPED}.v3.json"
    assert int8.manifest.graphs["classifier"].file == shipped.manifest.graphs["classifier"].file
    for name in ("glance", "focus"):
        assert int8.manifest.graphs[name].file != shipped.manifest.graphs[name].file
        ops = {node.op_type for node in onnx.load(str(int8.graph_path(name))).graph.node}
        assert {"QuantizeLinear", "DequantizeLinear"} <= ops, name
    focus = onnx.load(str(int8.graph_path("focus")))
    produced_by = _producers(focus)
    (grid_sample,) = [node for node in focus.graph.node if node.op_type == "GridSample"]
    assert grid_sample.name in crop_nodes(focus)
    # The crop reads the FP32 frame and the FP32 grid: nothing dequantized feeds it.
    assert all(produced_by.get(name) != "DequantizeLinear" for name in grid_sample.input)


def test_the_int8_version_is_as_accurate_and_has_its_own_thresholds(quantized):
    repo, shipped, result = quantized
    assert result.calibration_clips == 8 and result.test_clips == 24
    assert result.fp32_test is not None and result.int8_test is not None
    # The shipped model: 1.000 on the 500-clip test split in both precisions (docs/benchmarks).
    assert result.int8_test["full"] >= result.fp32_test["full"] - 1 / 24
    int8 = load_pipeline(repo, SHIPPED, shipped.manifest.version + 1).manifest
    assert int8.operating_points[0].names[0] == "full"
    assert all(point.accuracy is not None for point in int8.operating_points)  # measured on INT8 logits
    assert {"accurate", "balanced", "fast"} <= {name for p in int8.operating_points for name in p.names}
    assert int8.source.config["int8"]["from_version"] == shipped.manifest.version
    assert int8.source.test_top1 == result.int8_test["full"]


def test_the_service_serves_the_int8_version(quantized):
    from service.registry import ModelRegistry
    from service.settings import Settings

    repo, shipped, _ = quantized
    registry = ModelRegistry(Settings(model_repo=repo, providers=["CPUExecutionProvider"]))
    registry.load()  # the warm-up checks the reference outputs recorded from the INT8 graphs
    assert (SHIPPED, shipped.manifest.version + 1) in registry.models, registry.unavailable


def test_the_int8_option_refuses_what_it_cannot_do(quantized, capsys):
    repo, shipped, _ = quantized
    assert export_main(["--int8", f"{SHIPPED}:{shipped.manifest.version + 1}", "--out", str(repo)]) == 2
    assert "already int8" in capsys.readouterr().err
    assert export_main(["--int8", f"{SHIPPED}:{shipped.manifest.version}", "--out", str(repo), "--version", "3"]) == 2
    assert "already exists" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        export_main(["runs/x", "--int8", f"{SHIPPED}:2"])


def test_the_int8_option_writes_its_report(quantized, tmp_path):
    repo, shipped, _ = quantized
    report = tmp_path / "int8.md"
    data = generate(tmp_path / "data", SyntheticConfig(seed=22, train=1, calibration=2, test=3), workers=1)
    argv = ["--int8", f"{SHIPPED}:{shipped.manifest.version}", "--out", str(repo), "--data", str(data)]
    assert export_main([*argv, "--calibration-clips", "2", "--report", str(report)]) == 0
    text = report.read_text()
    assert "--int8" in text and "| full |" in text and "3 videos" in text
