"""``model.pt`` of a whole-clip TSM AdaFocusV2 model (:mod:`.sthsth`): what export and serving need.

The streaming models' :class:`~training.adafocus.record.ModelRecord` describes a step loop
(frame order, operating points per step, MACs per step); a whole-clip model has none of
those: it answers once, after one pass over all its frames. Its record says instead how the
clip is sampled (the glance frames, then the focus frames, each set its own TSN segments),
the frames' geometry and normalisation, and the MACs of one pass counted from the model.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.frames.transform import FrameGeometry, Normalisation
from training.engine.checkpoint import atomic_save, load_checkpoint
from training.models.macs import count_macs

from .sthsth import TsmAdaFocusConfig, TsmAdaFocusV2, build_tsm_adafocus

TSM_MODEL_FORMAT = "adafocus_tsm_model/1"


@dataclass
class TsmModelRecord:
    """What a whole-clip model's ``model.pt`` holds besides the weights."""

    config: TsmAdaFocusConfig
    classes: list[str]
    multi_label: bool
    geometry: FrameGeometry  # resize (shorter side) and centre crop of every frame
    normalisation: Normalisation
    macs_per_clip: int  # one pass over a clip, counted by count_macs
    train_config: dict[str, Any]  # where the model came from (an import's origin, say)

    def to_payload(self, state_dict: dict[str, torch.Tensor]) -> dict[str, Any]:
        return {
            "format": TSM_MODEL_FORMAT,
            "config": self.config.as_dict(),
            "classes": list(self.classes),
            "multi_label": self.multi_label,
            "geometry": {"resize": self.geometry.resize, "crop": self.geometry.crop},
            "normalisation": {"mean": list(self.normalisation.mean), "std": list(self.normalisation.std)},
            "macs_per_clip": self.macs_per_clip,
            "train_config": self.train_config,
            "state_dict": state_dict,
        }

    @classmethod
    def from_payload(cls, payload: dict[str, Any], source: str | Path) -> TsmModelRecord:
        expected = {f.name for f in dataclasses.fields(cls)} | {"format", "state_dict"}
        missing, unknown = sorted(expected - set(payload)), sorted(set(payload) - expected)
        if missing or unknown:
            raise ValueError(
                f"{source} is not a complete {TSM_MODEL_FORMAT} record (missing: {', '.join(missing) or 'none'}; "
                f"unknown: {', '.join(unknown) or 'none'})"
            )
        normalisation = payload["normalisation"]
        return cls(
            config=TsmAdaFocusConfig(**payload["config"]),
            classes=list(payload["classes"]),
            multi_label=bool(payload["multi_label"]),
            geometry=FrameGeometry(**payload["geometry"]),
            normalisation=Normalisation(tuple(normalisation["mean"]), tuple(normalisation["std"])),
            macs_per_clip=int(payload["macs_per_clip"]),
            train_config=dict(payload["train_config"]),
        )


def clip_macs(model: TsmAdaFocusV2) -> int:
    """MACs of one whole-clip pass (both networks, the policy, the crop and the heads)."""
    config = model.config
    clip = torch.zeros(1, config.num_frames, 3, config.frame_size, config.frame_size)
    return count_macs(model, clip).total


def save_tsm_model(path: str | Path, model: TsmAdaFocusV2, record: TsmModelRecord) -> None:
    """Write ``model.pt`` (atomically): the record and the model's weights."""
    if model.config != record.config:
        raise ValueError("the record's architecture is not the model's")
    atomic_save(record.to_payload(model.state_dict()), path)


def is_tsm_payload(payload: Any) -> bool:
    return isinstance(payload, dict) and payload.get("format") == TSM_MODEL_FORMAT


def tsm_model_from_payload(payload: dict[str, Any], source: str | Path) -> tuple[TsmAdaFocusV2, TsmModelRecord]:
    """The model (in eval mode) and record of a loaded ``model.pt`` payload."""
    record = TsmModelRecord.from_payload(payload, source)
    model = build_tsm_adafocus(record.config)
    model.load_state_dict(payload["state_dict"])
    return model.eval(), record


def load_tsm_model(path: str | Path) -> tuple[TsmAdaFocusV2, TsmModelRecord]:
    """The model (in eval mode) and its :class:`TsmModelRecord` from ``path``."""
    payload = load_checkpoint(path)
    if not is_tsm_payload(payload):
        raise ValueError(f"{path} is not a saved whole-clip TSM model ({TSM_MODEL_FORMAT})")
    return tsm_model_from_payload(payload, path)
