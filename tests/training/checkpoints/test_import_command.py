"""``training/import_checkpoint.py``: the run folder it writes, and exit 2 with a clear error otherwise."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.training.checkpoints.torchvision_layout import mobilenetv2_shapes, resnet_shapes, seeded_state_dict
from training.import_checkpoint import main
from training.models.serialization import load_backbone


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("files") / "resnet18.pth"
    torch.save(seeded_state_dict(resnet_shapes("basic", (2, 2, 2, 2), num_classes=5)), path)
    return path


def test_import_writes_an_image_run_folder(resnet18_file, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\nd\ne\n")
    assert (
        main(
            [
                str(resnet18_file),
                "--format",
                "torchvision-resnet",
                "--labels",
                str(labels),
                "--out",
                str(tmp_path / "run"),
            ]
        )
        == 0
    )
    model, meta = load_backbone(tmp_path / "run" / "model_converted.pt")
    assert meta["classes"] == ["a", "b", "c", "d", "e"] and meta["model"] == "resnet18"
    assert meta["imported"]["format"] == "torchvision-resnet"
    config = json.loads((tmp_path / "run" / "config.json").read_text())
    assert (config["model"], config["input_size"], config["eval_crop"]) == ("resnet18", 224, 0.875)
    assert model(torch.zeros(1, 3, 32, 32)).logits.shape == (1, 5)


def test_without_labels_the_classes_are_numbered_with_a_warning(resnet18_file, tmp_path, capsys):
    assert main([str(resnet18_file), "--format", "torchvision-resnet", "--out", str(tmp_path / "run")]) == 0
    assert "warning: no --labels" in capsys.readouterr().err
    _, meta = load_backbone(tmp_path / "run" / "model_converted.pt")
    assert meta["classes"] == [f"class_{i}" for i in range(5)]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--format", "adafocusv2-actnet", "--patch-size", "128"], "is not a adafocusv2-actnet file"),
        (["--format", "nope"], "unknown format 'nope'"),
        (["--format", "torchvision-mobilenetv2"], "is not a torchvision-mobilenetv2 file"),
        (["--format", "torchvision-resnet", "--patch-size", "96"], "--patch-size applies to the AdaFocus formats"),
    ],
)
def test_bad_requests_exit_2_with_an_error(resnet18_file, tmp_path, capsys, extra, message):
    assert main([str(resnet18_file), *extra, "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and message in err
    assert not (tmp_path / "run").exists()


def test_a_wrong_label_count_a_used_folder_and_a_truncated_file_exit_2(resnet18_file, tmp_path, capsys):
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\n")
    assert (
        main(
            [
                str(resnet18_file),
                "--format",
                "torchvision-resnet",
                "--labels",
                str(labels),
                "--out",
                str(tmp_path / "r"),
            ]
        )
        == 2
    )
    assert "has 2 lines, the model has 5 classes" in capsys.readouterr().err
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "x").write_text("")
    assert main([str(resnet18_file), "--format", "torchvision-resnet", "--out", str(tmp_path / "used")]) == 2
    assert "not an empty folder" in capsys.readouterr().err
    cut = tmp_path / "cut.pth"
    cut.write_bytes(resnet18_file.read_bytes()[:5000])
    assert main([str(cut), "--format", "torchvision-resnet", "--out", str(tmp_path / "r2")]) == 2
    assert "cannot read" in capsys.readouterr().err


def test_a_tensor_the_format_does_not_know_is_named(tmp_path, capsys):
    state = seeded_state_dict(mobilenetv2_shapes(num_classes=3))
    state["features.5.extra"] = torch.zeros(1)
    torch.save({"state_dict": {f"module.{k}": v for k, v in state.items()}}, tmp_path / "m.pth")
    assert main([str(tmp_path / "m.pth"), "--format", "torchvision-mobilenetv2", "--out", str(tmp_path / "r")]) == 2
    assert "does not know (not imported): features.5.extra" in capsys.readouterr().err


def test_a_shape_mismatch_names_the_key(tmp_path, capsys):
    state = seeded_state_dict(resnet_shapes("bottleneck", (3, 4, 6, 3), num_classes=3))
    state["layer2.0.conv2.weight"] = state["layer2.0.conv2.weight"][:, :64]  # a ResNeXt-like grouped conv
    torch.save(state, tmp_path / "r.pth")
    assert main([str(tmp_path / "r.pth"), "--format", "torchvision-resnet", "--out", str(tmp_path / "r")]) == 2
    assert (
        "layer2.0.conv2.weight has shape [128, 64, 3, 3], the model needs [128, 128, 3, 3]" in capsys.readouterr().err
    )


def test_an_old_file_without_batchnorm_counters_imports_with_a_note(tmp_path, capsys):
    state = seeded_state_dict(resnet_shapes("basic", (2, 2, 2, 2), num_classes=3))
    old = {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}  # resnet18-5c106cde.pth style
    torch.save(old, tmp_path / "old.pth")
    assert main([str(tmp_path / "old.pth"), "--format", "torchvision-resnet", "--out", str(tmp_path / "r")]) == 0
    assert "no BatchNorm num_batches_tracked in the file" in capsys.readouterr().err


@pytest.mark.parametrize("width_mult", [0.5, 0.75, 1.4])
def test_the_mobilenetv2_width_multiplier_is_read_from_the_shapes(tmp_path, width_mult):
    torch.save(seeded_state_dict(mobilenetv2_shapes(num_classes=4, width_mult=width_mult)), tmp_path / "m.pth")
    assert main([str(tmp_path / "m.pth"), "--format", "torchvision-mobilenetv2", "--out", str(tmp_path / "r")]) == 0
    model, meta = load_backbone(tmp_path / "r" / "model_converted.pt")
    assert meta["model_kwargs"].get("width_mult", 1.0) == width_mult
    assert model(torch.zeros(1, 3, 32, 32)).logits.shape == (1, 4)
