"""The served form of a whole-clip TSM model (:mod:`training.adafocus.sthsth`): one ``clip`` graph.

A bidirectional temporal shift mixes every frame into every other, so the model cannot be
cut into per-frame graphs with running states as the streaming models are. It is exported
whole: ``frames`` ``(batch, T, 3, S, S)`` (the glance frames, then the focus frames, each
normalised) -> ``logits`` ``(batch, K)`` and ``location`` ``(batch, 2)``, the clip's one patch,
``(x, y)`` in ``(0, 1)``. The manifest says ``temporal: whole_clip`` and which frames each
network sees (``frames.sets``); its only operating point is ``full``.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from training.adafocus.sthsth import TsmAdaFocusV2
from training.adafocus.sthsth_record import TsmModelRecord
from training.checkpoints.run_folder import full_operating_point

from .graphs import GraphDefinition

VARIANT = "adafocus_v2_tsm"


class ClipGraph(nn.Module):
    """Whole clips -> the authors' prediction and the clip's patch location."""

    def __init__(self, model: TsmAdaFocusV2) -> None:
        super().__init__()
        self.model = model

    def forward(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        output = self.model(frames)
        return output.logits, output.location


@torch.no_grad()
def clip_graph(model: TsmAdaFocusV2, batch: int = 2) -> GraphDefinition:
    """The ``clip`` graph of ``model`` (in eval mode) with an example input of ``batch`` clips."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    frames = torch.randn(batch, config.num_frames, 3, config.frame_size, config.frame_size, generator=generator)
    return GraphDefinition("clip", ClipGraph(model.eval()), (frames,), ("frames",), ("logits", "location"))


def whole_clip_fields(model: TsmAdaFocusV2, record: TsmModelRecord) -> dict[str, Any]:
    """The manifest's entries that describe the model (all but name, version, graphs, files, source)."""
    config = model.config
    gmacs_per_clip = record.macs_per_clip / 1e9
    full = full_operating_point(1, gmacs_per_clip)  # one step, which always exits
    return {
        "method": "adafocus_v2",
        "temporal": "whole_clip",
        "variant": VARIANT,
        "focus": "policy",
        "labels": record.classes,
        "multi_label": record.multi_label,
        "frames": {
            "num_frames": config.num_frames,
            "sets": [
                {"segments": config.glance_segments, "network": "glance"},
                {"segments": config.focus_segments, "network": "focus"},
            ],
            "order": list(range(config.num_frames)),
            "resize": record.geometry.resize,
            "crop": record.geometry.crop,
            "mean": list(record.normalisation.mean),
            "std": list(record.normalisation.std),
            "glance_size": config.frame_size,
            "patch_size": config.patch_size,
        },
        "confidence": "max_prob",  # no exit is decided on it; the field is the manifest's
        "operating_points": [full.as_dict()],
        "state_sizes": {},
        "gmacs_per_frame": gmacs_per_clip / config.num_frames,
    }
