"""Save and load a trained AdaFocus model with everything needed to use it."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from training.engine.checkpoint import atomic_save, load_checkpoint

from .model import AdaFocusConfig, AdaFocusV2

MODEL_FORMAT = "adafocus_model/1"


def save_model(path: str | Path, model: AdaFocusV2, classes: list[str], **metadata: Any) -> None:
    """``model.pt``: architecture, weights, class names and metadata (operating points, costs, ...)."""
    atomic_save(
        {
            "format": MODEL_FORMAT,
            "config": model.config.as_dict(),
            "state_dict": model.state_dict(),
            "classes": list(classes),
            **metadata,
        },
        path,
    )


def load_model(path: str | Path, device: str | torch.device = "cpu") -> tuple[AdaFocusV2, dict[str, Any]]:
    """The model (in eval mode) and the saved record (``classes``, ``operating_points``, ...)."""
    record = load_checkpoint(path)
    if record.get("format") != MODEL_FORMAT:
        raise ValueError(f"{path} is not a saved AdaFocus model")
    model = AdaFocusV2(AdaFocusConfig(**record["config"]))
    model.load_state_dict(record.pop("state_dict"))
    return model.to(device).eval(), record
