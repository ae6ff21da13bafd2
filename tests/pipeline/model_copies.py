"""Copies of the shipped model repository with an edited manifest, for tests of what the
manifest drives. A manifest's ``files`` checksums cover the graphs, configs and labels, not
the manifest itself, so an edited copy still loads."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from tests.paths import SHIPPED_MODELS

SHIPPED = ("adafocus_v2", 2)  # the manifest these copies edit


def copy_with_statistics(destination: Path, mean: Sequence[float], std: Sequence[float]) -> Path:
    """The shipped repository under ``destination``, adafocus_v2's ``frames.mean``/``std`` replaced."""
    root = Path(shutil.copytree(SHIPPED_MODELS, destination / "model_repo"))
    path = root / f"{SHIPPED[0]}.v{SHIPPED[1]}.json"
    manifest = json.loads(path.read_text())
    manifest["frames"].update(mean=list(mean), std=list(std))
    path.write_text(json.dumps(manifest, indent=2) + "\n")
    return root


def normalised(crops: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(T, S, S, 3)`` uint8 -> ``(T, 3, S, S)`` float32, ``(x / 255 - mean) / std`` in plain numpy:
    the reference the pipeline's normalisation is checked against."""
    pixels = crops.astype(np.float32) / np.float32(255.0)
    values = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))
