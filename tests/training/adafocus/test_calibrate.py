"""``training/calibrate.py``: calibrated operating points written into imported and trained run folders."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from pipeline.early_exit import OperatingPoint, choose_operating_point
from pipeline.frames.transform import IMAGENET
from tests.training.tiny import TINY_TRAINING
from training.adafocus.config import TrainConfig
from training.adafocus.model import AdaFocusConfig, AdaFocusV2
from training.adafocus.record import load_model
from training.adafocus.run import train
from training.calibrate import main
from training.checkpoints.formats import ImportedModel
from training.checkpoints.run_folder import write_run_folder

ARCHITECTURE = {k: v for k, v in TINY_TRAINING.items() if k in AdaFocusConfig.__dataclass_fields__}
SYNTHETIC_CLASSES = [f"pattern_{k}" for k in range(10)]  # training/data/synthetic.py's classes.txt


def _imported_run(out: Path, classes: list[str] | None = None) -> Path:
    """A run folder as ``training/import_checkpoint.py`` writes it (the same writer), for a tiny model."""
    torch.manual_seed(0)
    model = AdaFocusV2(AdaFocusConfig(num_classes=10, frame_order="coarse_to_fine", **ARCHITECTURE)).eval()
    source = out.parent / f"{out.name}.pth"
    torch.save({"state_dict": model.state_dict()}, source)
    preprocessing = {"input_size": 32, "resize": 32, "mean": list(IMAGENET.mean), "std": list(IMAGENET.std)}
    imported = ImportedModel("adafocus", model, "adafocus_v2", {}, 10, preprocessing, [], "max_logit")
    classes = classes or SYNTHETIC_CLASSES
    write_run_folder(imported, out, classes, source, "adafocusv2-actnet")
    return out


@pytest.fixture(scope="module")
def trained_run(tiny_dataset: Path, tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("trained") / "run"
    train(TrainConfig(data=str(tiny_dataset), out=str(out), **{**TINY_TRAINING, "epochs": 1}))
    return out


def _points(run: Path) -> list[OperatingPoint]:
    _, record = load_model(run / "model.pt")
    return [OperatingPoint.from_dict(point) for point in record.operating_points]


def test_an_imported_run_folder_gets_calibrated_points_with_accuracies(tiny_dataset: Path, tmp_path: Path, capsys):
    run = _imported_run(tmp_path / "run")
    assert [p.accuracy for p in _points(run)] == [None]  # the import: only 'full', unmeasured
    assert main([str(run), "--data", str(tiny_dataset)]) == 0
    printed = capsys.readouterr().out
    assert "8 videos (calibration), confidence max_logit" in printed and "test top1" in printed
    points = _points(run)
    names = {name for point in points for name in point.names}
    assert names == {"full", "accurate", "balanced", "fast"}
    assert all(point.accuracy is not None and 0 <= point.accuracy <= 1 for point in points)
    # What the exporter copies into the manifest and the service picks its exits from.
    assert choose_operating_point(points, "balanced").expected_gmacs <= points[0].expected_gmacs
    _, record = load_model(run / "model.pt")
    assert record.confidence == "max_logit"  # the import's (the authors') criterion is kept
    summary = json.loads((run / "summary.json").read_text())
    assert summary["operating_points"] == record.operating_points
    assert summary["calibration"]["videos"] == 8 and summary["calibration"]["split"] == "calibration"
    assert summary["test"]["videos"] == 8 and len(summary["test"]["operating_points"]) == len(points)
    assert summary["imported"]["format"] == "adafocusv2-actnet"  # the rest of the summary is kept
    # The original is kept, and a second calibration keeps that first backup.
    _, original = load_model(run / "model.uncalibrated.pt")
    assert [p["accuracy"] for p in original.operating_points] == [None]
    assert main([str(run), "--data", str(tiny_dataset), "--confidence", "max_prob", "--split", "all"]) == 0
    _, record = load_model(run / "model.pt")
    assert record.confidence == "max_prob"
    assert json.loads((run / "summary.json").read_text())["calibration"]["videos"] == 28
    _, original = load_model(run / "model.uncalibrated.pt")
    assert [p["accuracy"] for p in original.operating_points] == [None]
    original_summary = json.loads((run / "summary.uncalibrated.json").read_text())
    assert [p["accuracy"] for p in original_summary["operating_points"]] == [None]


def test_a_trained_run_folder_is_recalibrated_with_the_same_weights(trained_run: Path, tiny_dataset: Path):
    before, _ = load_model(trained_run / "model.pt")
    assert main([str(trained_run), "--data", str(tiny_dataset), "--confidence", "entropy", "--no-test"]) == 0
    after, record = load_model(trained_run / "model.pt")
    assert record.confidence == "entropy" and all(p["accuracy"] is not None for p in record.operating_points)
    assert all(torch.equal(a, b) for a, b in zip(before.state_dict().values(), after.state_dict().values()))
    assert record.train_config["data"] == str(tiny_dataset)  # the training options are untouched
    summary = json.loads((trained_run / "summary.json").read_text())
    assert "operating_points" not in summary["test"]  # the earlier points' test figures are dropped
    assert summary["test"]["videos"] == 8  # what does not depend on the points stays


def test_numeric_labels_map_onto_an_import_without_labels(tiny_dataset: Path, tmp_path: Path):
    run = _imported_run(tmp_path / "run", classes=[f"class_{k}" for k in range(10)])
    listing = tmp_path / "videos" / "mine.csv"
    listing.parent.mkdir()
    rows = (tiny_dataset / "test.csv").read_text().splitlines()  # path,label with label 0..9
    listing.write_text("".join(f"{tiny_dataset / row.split(',')[0]},{row.split(',')[1]}\n" for row in rows))
    assert main([str(run), "--data", str(listing), "--split", "all"]) == 0
    assert json.loads((run / "summary.json").read_text())["calibration"]["videos"] == 8


@pytest.mark.parametrize(
    "case, message",
    [
        ("no_folder", "does not exist"),
        ("no_model", "model.pt does not exist"),
        ("no_data", "does not exist"),
        ("unknown_classes", "classes the model does not know: pattern_0"),
        ("no_test_split", "has no test split"),
        ("whole_clip", "whole-clip TSM model"),
        ("not_a_model", "not a saved AdaFocus model"),
    ],
)
def test_bad_input_exits_2_with_a_message(case: str, message: str, tiny_dataset: Path, tmp_path: Path, capsys):
    run, data, extra = tmp_path / "run", str(tiny_dataset), []
    if case == "no_model":
        run.mkdir()
    elif case == "no_data":
        _imported_run(run)
        data = str(tmp_path / "nowhere")
    elif case == "unknown_classes":
        _imported_run(run, classes=[f"action {k}" for k in range(10)])
    elif case == "no_test_split":
        _imported_run(run)
        data = str(tiny_dataset / "train.csv")
        extra = ["--split", "test"]
    elif case in ("whole_clip", "not_a_model"):
        run.mkdir()
        payload = {"format": "adafocus_tsm_model/1"} if case == "whole_clip" else {"weights": torch.zeros(1)}
        torch.save(payload, run / "model.pt")
    assert main([str(run), "--data", data, *extra]) == 2
    assert message in capsys.readouterr().err
    assert not (run / "model.uncalibrated.pt").exists()


def test_a_bad_option_is_a_usage_error(tmp_path: Path):
    with pytest.raises(SystemExit) as stopped:
        main([str(tmp_path), "--data", str(tmp_path), "--confidence", "margin"])
    assert stopped.value.code == 2
