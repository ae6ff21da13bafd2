"""The contracts between training, export and serving: one source of architecture defaults, one
focus vocabulary, and the ``model.pt`` record written and read through one definition."""

from __future__ import annotations

import dataclasses
import typing

import numpy as np
import pytest
import torch

from pipeline.frames.transform import IMAGENET, FrameGeometry, Normalisation
from pipeline.manifest import PATCH_FOCUS, Focus, ServedFocus
from tests.training.tiny import TINY_TRAINING
from training.adafocus.config import TrainConfig
from training.adafocus.model import VARIANTS, AdaFocusConfig, AdaFocusV2
from training.adafocus.record import MODEL_FORMAT, ModelRecord, load_model, save_model
from training.engine.checkpoint import atomic_save
from training.exporter.graphs import focus_kind

TINY = {"num_classes": 3, **{k: v for k, v in TINY_TRAINING.items() if k in AdaFocusConfig.__dataclass_fields__}}


def test_train_config_takes_its_model_defaults_from_the_architecture():
    architecture = AdaFocusConfig(num_classes=7)
    assert TrainConfig().model_config(7) == architecture
    train_fields = {field.name for field in dataclasses.fields(TrainConfig)}
    shared = [f.name for f in dataclasses.fields(AdaFocusConfig) if f.name in train_fields]
    assert len(shared) >= 15  # every architecture option is a training option
    for name in shared:
        assert getattr(TrainConfig(), name) == getattr(architecture, name), name


@pytest.mark.parametrize("variant", VARIANTS)
def test_model_and_manifest_share_one_focus_vocabulary(variant: str):
    model = AdaFocusV2(AdaFocusConfig(**{**TINY, "variant": variant}))
    assert model.focus_mode in typing.get_args(Focus)
    assert (model.crop is not None) == (model.focus_mode in PATCH_FOCUS)
    if model.focus_mode in ("random", "oracle"):  # training comparisons
        with pytest.raises(ValueError, match="not exported"):
            focus_kind(model)
    else:
        assert focus_kind(model) == model.focus_mode
        assert focus_kind(model) in typing.get_args(ServedFocus)


def tiny_record(model: AdaFocusV2, **changes) -> ModelRecord:
    record = ModelRecord(
        config=model.config,
        method="adafocus_v2",
        classes=["a", "b", "c"],
        multi_label=False,
        geometry=FrameGeometry(32, 32),
        normalisation=Normalisation((0.5, 0.4, 0.3), (0.2, 0.25, 0.3)),
        confidence="max_prob",
        operating_points=[
            {
                "name": "full",
                "names": ["full"],
                "p": None,
                "thresholds": ["inf"] * 4,
                "expected_gmacs": 1e-8,
                "accuracy": 1.0,
                "exit_fractions": [0.0, 0.0, 0.0, 1.0],
            }
        ],
        step_macs={"glance": 1, "policy": 2, "focus": 3, "classifier": 4, "total": 10},
        train_config=dataclasses.asdict(TrainConfig()),
    )
    return dataclasses.replace(record, **changes)


def test_the_record_round_trips(tmp_path):
    torch.manual_seed(0)
    model = AdaFocusV2(AdaFocusConfig(**TINY)).eval()
    record = tiny_record(model)
    save_model(tmp_path / "model.pt", model, record)
    loaded_model, loaded = load_model(tmp_path / "model.pt")
    assert loaded == record
    for (name, a), (_, b) in zip(model.state_dict().items(), loaded_model.state_dict().items(), strict=True):
        assert torch.equal(a, b), name


def test_a_record_with_a_missing_or_unknown_entry_is_refused_by_name(tmp_path):
    model = AdaFocusV2(AdaFocusConfig(**TINY))
    payload = tiny_record(model).to_payload(model.state_dict())
    del payload["normalisation"]
    payload["colour"] = "blue"
    atomic_save(payload, tmp_path / "model.pt")
    with pytest.raises(ValueError, match=r"missing: normalisation; unknown: colour"):
        load_model(tmp_path / "model.pt")


def test_a_first_format_file_reads_as_imagenet_statistics(tmp_path):
    """``adafocus_model/1`` files (loose keys, ImageNet statistics) still load."""
    model = AdaFocusV2(AdaFocusConfig(**TINY))
    record = tiny_record(model)
    old = {
        "format": "adafocus_model/1",
        "config": model.config.as_dict(),
        "state_dict": model.state_dict(),
        "classes": record.classes,
        "operating_points": record.operating_points,
        "step_macs": record.step_macs,
        "confidence": "max_prob",
        "multi_label": False,
        "frame_geometry": {"resize": 32, "crop": 32},
        "train_config": {"method": "adafocus_v1"},
    }
    atomic_save(old, tmp_path / "model.pt")
    _, loaded = load_model(tmp_path / "model.pt")
    assert loaded.normalisation == IMAGENET and loaded.method == "adafocus_v1"
    assert loaded.geometry == FrameGeometry(32, 32) and MODEL_FORMAT == "adafocus_model/2"


def test_a_run_trains_on_frames_normalised_with_its_own_statistics(tiny_dataset, tmp_path):
    """What model.pt and the manifest record (config.normalisation) is what the data loader applies."""
    from pipeline.frames.decode import read_clip
    from training.adafocus.v2.trainer import AdaFocusTrainer

    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    config = TrainConfig(data=str(tiny_dataset), out=str(tmp_path), **{**TINY_TRAINING, "mean": mean, "std": std})
    trainer = AdaFocusTrainer(config)
    item = trainer.calibration_set[0]
    sample = trainer.calibration_set.samples[0]
    expected = read_clip(sample.path, config.num_frames, trainer.geometry, normalisation=Normalisation(mean, std))
    assert np.array_equal(item.frames, expected.frames)
    assert not np.allclose(item.frames, read_clip(sample.path, config.num_frames, trainer.geometry).frames)
