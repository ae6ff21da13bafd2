"""The CondenseNetV2 reference data's weight formula and input, for the test and the import bench.

Formula: tensor number ``n`` of the layout (file order) with ``c`` elements takes
``u = uniform(100000 * seed + n, c)`` (splitmix64 of the element index, in [-1, 1)) and, by
its name: conv/linear ``weight`` ``u * sqrt(3 * gain / fan_in)`` (gain 2 for convs), BN
``weight`` ``1 + 0.2 u``, ``bias`` and ``running_mean`` ``0.1 u``, ``running_var``
``1 + 0.25 (u + 1)``, ``num_batches_tracked`` 0. Masks and indices: group ``g`` of a layer
with ``N`` prunable channels keeps channel ``j`` iff ``(1009 j + 37 g) % N < N / G`` (LGC:
``N`` inputs; SFR: ``N`` outputs), at the final step (``_stage`` G-1, ``_count``
(G-1) N / G); a converted LGC's ``index`` lists each group's kept channels in ascending
order (its BN holds ``index[i]``'s values at ``i``: the formula's values for the
``N`` inputs, gathered), a converted SFR's dense ``index`` has row ``g * N/G + m`` select group ``g``'s
``m``-th kept channel (what the authors' conversion of such masks makes: checked when the
data was written).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import torch

from tests.training.checkpoints.weight_formula import tensor_value

DATA = Path(__file__).resolve().parents[2] / "data" / "condensenetv2"
GROUPS_A = 8
GROUPS = {"a": 8, "b": 6, "c": 8}  # the authors' group counts of cdnv2_a / b / c


def load_layout(variant: str) -> dict[str, list]:
    """The authors' ``unconverted`` and ``converted`` key listings of ``cdnv2_<variant>``."""
    with gzip.open(DATA / f"cdnv2_{variant}_layout.json.gz", "rt") as f:
        return json.load(f)


def load_reference(variant: str) -> dict[str, np.ndarray]:
    """The authors' logits on :func:`smooth_input` for ``cdnv2_<variant>`` (see the module docstring)."""
    with np.load(DATA / f"cdnv2_{variant}_224.npz") as data:
        return {key: data[key] for key in data.files}


def keeps(channels: int, groups: int) -> np.ndarray:
    """``(G, N)`` bool: which channels each group keeps."""
    g, j = np.meshgrid(np.arange(groups), np.arange(channels), indexing="ij")
    return (j * 1009 + g * 37) % channels < channels // groups


def _structure(key: str, shape: list[int], groups: int) -> np.ndarray:
    """Masks, steps and indices of a fully condensed layer (see the module docstring)."""
    parent, name = key.rsplit(".", 1)
    lgc = parent.endswith("conv_1")
    if name == "_stage":
        return np.full((1,), groups - 1, np.float32)
    if name == "_count":
        return np.full((1,), np.nan, np.float32)  # filled from the mask by the caller
    if name == "_mask":
        out_c, in_c = shape[:2]
        if lgc:  # row r * G + g is group g's input mask
            mask = keeps(in_c, groups)[np.arange(out_c) % groups]
        else:  # column j * G + g is group g's output mask
            mask = keeps(out_c, groups)[np.arange(in_c) % groups].T
        return mask.astype(np.float32)[:, :, None, None]
    kept = keeps(shape[0], groups)
    if lgc:
        return np.concatenate([np.flatnonzero(row) for row in kept]).astype(np.int64)
    matrix = np.zeros((shape[0], shape[0]), np.float32)
    matrix[np.arange(shape[0]), np.concatenate([np.flatnonzero(row) for row in kept])] = 1.0
    return matrix


def authors_state_dict(layout: list, seed: int, groups: int = GROUPS_A) -> dict[str, torch.Tensor]:
    """The authors' state dict of ``layout`` filled by the formula."""
    state = {}
    for number, (key, shape, _dtype) in enumerate(layout):
        name = key.rsplit(".", 1)[-1]
        if name in ("_mask", "_stage", "_count", "index"):
            array = _structure(key, shape, groups)
        else:
            array = tensor_value(key, shape, number, seed)
        state[key] = torch.from_numpy(np.array(array, copy=True))  # keeps 0-d shapes
    for key in [k for k in state if k.endswith(".conv_1.index")]:
        # a converted LGC's BN holds kept channel index[i]'s statistics at i (copies agree)
        parent = key.rsplit(".", 1)[0]
        for entry in ("weight", "bias", "running_mean", "running_var"):
            state[f"{parent}.norm.{entry}"] = state[f"{parent}.norm.{entry}"][state[key]]
    for key in [k for k in state if k.endswith("._count")]:
        parent = key.rsplit(".", 1)[0]
        mask = state[f"{parent}._mask"]
        prunable = mask.shape[1] if parent.endswith("conv_1") else mask.shape[0]
        state[key] = torch.full((1,), float((groups - 1) * (prunable // groups)))
    return state


def smooth_input(batch: int = 2, size: int = 224) -> torch.Tensor:
    """The reference input: ``batch`` smooth 3-channel images (sines and cosines of the pixel position)."""
    c, h, w = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    images = [
        np.sin(0.045 * h * (c + 1) + 0.031 * w + 0.7 * b) + 0.5 * np.cos(0.023 * (h + w) - c + b) for b in range(batch)
    ]
    return torch.from_numpy(np.stack(images).astype(np.float32))
