"""``model.pt``: a trained AdaFocus model with everything needed to use, export and serve it.

One definition, :class:`ModelRecord`, is written by the end of a run (``finish``) and read by
the exporter, the benchmarks and the tests: its fields are the contract, checked when the
file is read (a missing or unknown entry is an error naming it, never a silent default).
Files of the previous format, ``adafocus_model/1``, are read through :func:`_upgrade_v1`,
which states what that format implied.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.frames.transform import IMAGENET, FrameGeometry, Normalisation
from training.engine.checkpoint import atomic_save, load_checkpoint

from .model import AdaFocusConfig, AdaFocusV2

MODEL_FORMAT = "adafocus_model/2"
_V1_FORMAT = "adafocus_model/1"


@dataclass
class ModelRecord:
    """What ``model.pt`` holds besides the weights."""

    config: AdaFocusConfig  # the architecture
    method: str  # adafocus_v2 or adafocus_v1: how it was trained
    classes: list[str]
    multi_label: bool
    geometry: FrameGeometry  # resize and crop of the frames it was trained on
    normalisation: Normalisation  # the frames' mean and std
    confidence: str  # the exit rule's confidence (max_prob, max_logit, entropy)
    operating_points: list[dict[str, Any]]  # calibrated exit points (OperatingPoint.as_dict)
    step_macs: dict[str, int]  # MACs per frame of each part (StepCosts.as_dict)
    train_config: dict[str, Any]  # the training run's options, for the record

    def to_payload(self, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "format": MODEL_FORMAT,
            "config": self.config.as_dict(),
            "method": self.method,
            "classes": list(self.classes),
            "multi_label": self.multi_label,
            "geometry": {"resize": self.geometry.resize, "crop": self.geometry.crop},
            "normalisation": {"mean": list(self.normalisation.mean), "std": list(self.normalisation.std)},
            "confidence": self.confidence,
            "operating_points": self.operating_points,
            "step_macs": self.step_macs,
            "train_config": self.train_config,
            "state_dict": state_dict,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: str | Path) -> ModelRecord:
        expected = {field.name for field in dataclasses.fields(cls)} | {"format", "state_dict"}
        missing, unknown = sorted(expected - set(payload)), sorted(set(payload) - expected)
        if missing or unknown:
            raise ValueError(
                f"{source} is not a complete {MODEL_FORMAT} record (missing: {', '.join(missing) or 'none'}; "
                f"unknown: {', '.join(unknown) or 'none'})"
            )
        normalisation = payload["normalisation"]
        return cls(
            config=AdaFocusConfig(**payload["config"]),
            method=payload["method"],
            classes=list(payload["classes"]),
            multi_label=bool(payload["multi_label"]),
            geometry=FrameGeometry(**payload["geometry"]),
            normalisation=Normalisation(tuple(normalisation["mean"]), tuple(normalisation["std"])),
            confidence=payload["confidence"],
            operating_points=list(payload["operating_points"]),
            step_macs=dict(payload["step_macs"]),
            train_config=dict(payload["train_config"]),
        )


def _upgrade_v1(payload: dict[str, Any]) -> dict[str, Any]:
    """An ``adafocus_model/1`` file as ``adafocus_model/2``: that format kept the metadata as
    loose keys, trained every model on ImageNet statistics, and recorded the method only in the
    training options (absent: AdaFocusV2)."""
    upgraded = {key: value for key, value in payload.items() if key != "frame_geometry"}
    upgraded.update(
        format=MODEL_FORMAT,
        method=payload["train_config"].get("method", "adafocus_v2"),
        multi_label=payload.get("multi_label", False),
        geometry=payload["frame_geometry"],
        normalisation={"mean": list(IMAGENET.mean), "std": list(IMAGENET.std)},
    )
    return upgraded


def save_model(path: str | Path, model: AdaFocusV2, record: ModelRecord) -> None:
    """Write ``model.pt`` (atomically): the record and the model's weights."""
    if model.config != record.config:
        raise ValueError("the record's architecture is not the model's")
    atomic_save(record.to_payload(model.state_dict()), path)


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[AdaFocusV2, ModelRecord]:
    """The model (in eval mode) and its :class:`ModelRecord`."""
    model, record = model_from_payload(load_checkpoint(path), path)
    return model.to(device), record


def model_from_payload(payload: Any, source: str | Path) -> tuple[AdaFocusV2, ModelRecord]:
    """The model (in eval mode, on the CPU) and record of a loaded ``model.pt`` payload."""
    if not isinstance(payload, dict) or payload.get("format") not in (MODEL_FORMAT, _V1_FORMAT):
        raise ValueError(f"{source} is not a saved AdaFocus model")
    if payload["format"] == _V1_FORMAT:
        payload = _upgrade_v1(payload)
    record = ModelRecord.from_payload(payload, source)
    model = AdaFocusV2(record.config)
    model.load_state_dict(payload["state_dict"])
    return model.eval(), record
