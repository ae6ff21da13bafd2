"""Save and load a trained backbone as one self-describing file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import nn

from training.engine.checkpoint import atomic_save

from .registry import create_model

FORMAT = "backbone/1"


def save_backbone(model: nn.Module, path: str | Path, name: str, model_kwargs: dict[str, Any], **extra: Any) -> None:
    """Write ``model`` (training or converted form) with what is needed to rebuild it."""
    atomic_save(
        {
            "format": FORMAT,
            "model": name,
            "model_kwargs": model_kwargs,
            "converted": bool(getattr(model, "converted", False)),
            "state_dict": model.state_dict(),
            **extra,
        },
        path,
    )


def load_backbone(path: str | Path) -> tuple[nn.Module, dict[str, Any]]:
    """Rebuild a model saved by :func:`save_backbone`; returns it (in eval mode) and the file's metadata."""
    payload = torch.load(path, map_location="cpu", weights_only=False)
    if payload.get("format") != FORMAT:
        raise ValueError(f"{path} is not a backbone file (format {payload.get('format')!r})")
    model = create_model(payload["model"], **payload["model_kwargs"])
    if payload["converted"]:
        # The converted structure does not depend on which channels were kept: any full
        # condensation gives the right shapes, and the state dict then sets the indices.
        model.condense(1.0)
        model = model.convert()
    model.load_state_dict(payload.pop("state_dict"))
    return model.eval(), payload
