"""``--weights`` / ``--global-weights`` / ``--local-weights``: imported weights as a run's start."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from tests.training.checkpoints.torchvision_layout import resnet_shapes, seeded_state_dict
from tests.training.tiny import TINY_TRAINING
from training.adafocus.config import TrainConfig
from training.adafocus.model import AdaFocusV2
from training.adafocus.run import load_backbone_weights
from training.adafocus.run import train as adafocus_train
from training.checkpoints import CheckpointError
from training.checkpoints.pretrained import load_pretrained
from training.data.synthetic_images import generate
from training.engine.commands import TrainingStopped
from training.image.trainer import ImageTrainConfig, ImageTrainer, train
from training.import_checkpoint import main as import_main
from training.models import create_model


@pytest.fixture(scope="module")
def resnet18_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("weights") / "resnet18-imagenet.pth"
    torch.save(seeded_state_dict(resnet_shapes("basic", (2, 2, 2, 2), num_classes=1000)), path)
    return path


def test_a_head_of_another_class_count_is_reported_and_left_new(resnet18_file):
    model = create_model("resnet18", num_classes=10)
    head_before = model.classifier.weight.clone()
    notes = load_pretrained(model, resnet18_file)
    assert torch.equal(model.classifier.weight, head_before)
    assert any("classifier.weight, classifier.bias" in n and "1000-class head" in n for n in notes)
    file = torch.load(resnet18_file)
    assert torch.equal(model.stages[3][1].conv2[0].weight, file["layer4.1.conv2.weight"])
    assert torch.equal(model.stem[0][1].running_var, file["bn1.running_var"])


def test_a_network_without_a_head_reports_the_files_head(resnet18_file):
    notes = load_pretrained(create_model("resnet18", num_classes=0), resnet18_file, what="--local-weights")
    assert any(n.startswith("--local-weights: unexpected (not loaded): classifier.weight") for n in notes)


def test_another_architecture_is_an_error_naming_the_keys(resnet18_file):
    with pytest.raises(CheckpointError, match=r"resnet18 .* does not fit.*not in the file: stages.0.2.conv1.0.weight"):
        load_pretrained(create_model("resnet34", num_classes=10), resnet18_file)
    with pytest.raises(CheckpointError, match=r"other shapes.*stem.0.0.weight \[64, 3, 7, 7\] vs \[16, 3, 7, 7\]"):
        load_pretrained(create_model("resnet18", num_classes=10, width=16), resnet18_file)


def test_adafocus_loads_the_local_network_and_refuses_a_missing_one(resnet18_file):
    config = TrainConfig(**{**TINY_TRAINING, "local_model": "resnet18", "local_kwargs": {}})
    config = dataclasses.replace(config, local_weights=str(resnet18_file))
    model = AdaFocusV2(config.model_config(3))
    load_backbone_weights(model, config, verbose=False)
    assert torch.equal(model.local_net.stem[0][0].weight, torch.load(resnet18_file)["conv1.weight"])
    glance_only = dataclasses.replace(config, variant="glance_only")
    with pytest.raises(ValueError, match="--local-weights: the glance_only variant has no such network"):
        load_backbone_weights(AdaFocusV2(glance_only.model_config(3)), glance_only)


def test_image_training_starts_from_the_weights_and_a_resume_does_not_reload_them(tmp_path):
    folder = generate(tmp_path / "images", seed=1, train_per_class=4, val_per_class=1, size=16)
    weights = tmp_path / "narrow.pth"
    torch.save(seeded_state_dict(resnet_shapes("basic", (2, 2, 2, 2), width=8)), weights)
    config = ImageTrainConfig(
        data=str(folder),
        out=str(tmp_path / "run"),
        model="resnet18",
        model_kwargs={"width": 8},
        input_size=16,
        epochs=1,
        batch_size=8,
        workers=0,
        progress=False,
        weights=str(weights),
        max_steps=1,
    )
    trainer = ImageTrainer(config)
    trainer.load_weights()
    conv1 = torch.load(weights)["conv1.weight"]
    assert torch.equal(trainer.model.stem[0][0].weight, conv1)
    assert torch.equal(trainer.ema.module.stem[0][0].weight, conv1)  # the EMA starts from them too
    with pytest.raises(TrainingStopped):
        train(config)
    weights.unlink()  # a resumed run must not read the file again
    summary = train(dataclasses.replace(config, max_steps=None))
    assert summary["steps"] == len(trainer.train_set) // 8


def test_adafocus_training_loads_the_weights_once_and_not_on_resume(tiny_dataset, tmp_path):
    weights = tmp_path / "narrow.pth"
    torch.save(seeded_state_dict(resnet_shapes("basic", (2, 2, 2, 2), width=8)), weights)
    local = {"local_model": "resnet18", "local_kwargs": {"width": 8}, "local_weights": str(weights)}
    values = {**TINY_TRAINING, **local}
    config = TrainConfig(data=str(tiny_dataset), out=str(tmp_path / "run"), **values)
    with pytest.raises(TrainingStopped):
        adafocus_train(dataclasses.replace(config, max_steps=1))
    weights.unlink()  # resuming must not read it again ...
    with pytest.raises(TrainingStopped, match="max_steps=2"):
        adafocus_train(dataclasses.replace(config, max_steps=2))
    model = AdaFocusV2(config.model_config(3))
    with pytest.raises(CheckpointError, match="narrow.pth does not exist"):  # ... a fresh start must
        load_backbone_weights(model, config)


def test_an_import_run_folder_is_a_starting_point_of_its_own(tmp_path):
    source = tmp_path / "narrow.pth"
    torch.save(seeded_state_dict(resnet_shapes("basic", (2, 2, 2, 2), width=8)), source)
    assert import_main([str(source), "--format", "torchvision-resnet", "--out", str(tmp_path / "run")]) == 0
    model = create_model("resnet18", num_classes=10, width=8)
    notes = load_pretrained(model, tmp_path / "run" / "model_converted.pt")  # format "auto": backbone
    assert any("1000-class head" in note for note in notes)
    assert torch.equal(model.stem[0][0].weight, torch.load(source)["conv1.weight"])
