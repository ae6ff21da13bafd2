"""Copies of the shipped model repository with an edited manifest, for tests of what the
manifest drives, or with a damaged graph. A manifest's ``files`` checksums cover the graphs,
configs and labels, not the manifest itself, so an edited copy still loads."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from tests.paths import SHIPPED_MODELS

SHIPPED = ("adafocus_v2", 2)  # the manifest these copies edit


def copy_of_shipped(destination: Path) -> Path:
    """The shipped repository, copied to ``destination / "model_repo"``."""
    return Path(shutil.copytree(SHIPPED_MODELS, destination / "model_repo"))


def edit_manifest(root: Path, edit: Callable[[dict], None], model: tuple[str, int] = SHIPPED) -> None:
    """Apply ``edit`` to the JSON of ``model``'s manifest under ``root``, in place."""
    path = root / f"{model[0]}.v{model[1]}.json"
    manifest = json.loads(path.read_text())
    edit(manifest)
    path.write_text(json.dumps(manifest, indent=2) + "\n")


def copy_with_statistics(destination: Path, mean: Sequence[float], std: Sequence[float]) -> Path:
    """The shipped repository under ``destination``, adafocus_v2's ``frames.mean``/``std`` replaced
    (and its reference outputs, which other statistics change, dropped)."""
    root = copy_of_shipped(destination)

    def restate(manifest: dict) -> None:
        manifest["frames"].update(mean=list(mean), std=list(std))
        manifest.pop("reference", None)

    edit_manifest(root, restate)
    return root


def damage_graph(root: Path, model: tuple[str, int], graph: str, checksum_too: bool = False) -> Path:
    """Overwrite one graph of ``model`` under ``root`` with bytes that are no ONNX model. With
    ``checksum_too`` the manifest's checksum follows, so verification passes and ONNX Runtime
    is the one to refuse it. Returns the graph's path."""
    manifest = json.loads((root / f"{model[0]}.v{model[1]}.json").read_text())
    relative = manifest["graphs"][graph]["file"]
    (root / relative).write_bytes(b"this is not an ONNX model\n" * 64)
    if checksum_too:
        digest = hashlib.sha256((root / relative).read_bytes()).hexdigest()
        edit_manifest(root, lambda m: m["files"].update({relative: digest}), model)
    return root / relative


def normalised(crops: np.ndarray, mean: Sequence[float], std: Sequence[float]) -> np.ndarray:
    """``(T, S, S, 3)`` uint8 -> ``(T, 3, S, S)`` float32, ``(x / 255 - mean) / std`` in plain numpy:
    the reference the pipeline's normalisation is checked against."""
    pixels = crops.astype(np.float32) / np.float32(255.0)
    values = (pixels - np.asarray(mean, dtype=np.float32)) / np.asarray(std, dtype=np.float32)
    return np.ascontiguousarray(values.transpose(0, 3, 1, 2))
