"""The ``condensenetv2`` import format: parity with the authors' code, and strictness.

Reference data (tests/data/condensenetv2): ``cdnv2_a_layout.json.gz`` lists the keys, shapes
and dtypes of the authors' ``cdnv2_a`` and ``converted_cdnv2_a`` state dicts (written from
their models at jianghaojun/CondenseNetV2 4431162; the converted one equals the published
listing of the released A file); ``cdnv2_a_224.npz`` holds their models' logits on
:func:`smooth_input` (2 x 3 x 224 x 224: their head pools 7x7 with a fixed AvgPool2d(7)) once
filled by :func:`authors_state_dict` (seed 0: training form, seed 1: converted form), and
those of their own conversion of the seed-0 model.

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

import argparse
import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from training.checkpoints import CheckpointError, import_file

DATA = Path(__file__).resolve().parents[2] / "data" / "condensenetv2"
GROUPS_A = 8


def uniform(number: int, count: int) -> np.ndarray:
    """``count`` values in [-1, 1): splitmix64 of ``number * 2**32 + i``."""
    with np.errstate(over="ignore"):
        x = np.arange(count, dtype=np.uint64) + np.uint64(number) * np.uint64(1 << 32)
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        x = x ^ (x >> np.uint64(31))
    return (x >> np.uint64(11)).astype(np.float64) / float(1 << 53) * 2.0 - 1.0


def keeps(channels: int, groups: int) -> np.ndarray:
    """``(G, N)`` bool: which channels each group keeps."""
    g, j = np.meshgrid(np.arange(groups), np.arange(channels), indexing="ij")
    return (j * 1009 + g * 37) % channels < channels // groups


def _value(key: str, shape: list[int], number: int, seed: int) -> np.ndarray:
    count = int(np.prod(shape)) if shape else 1
    u = uniform(seed * 100_000 + number, count).reshape(shape)
    name = key.rsplit(".", 1)[-1]
    if name == "num_batches_tracked":
        return np.zeros(shape, np.int64)
    if name == "running_var":
        return (1.0 + 0.25 * (u + 1.0)).astype(np.float32)
    if name in ("running_mean", "bias"):
        return (0.1 * u).astype(np.float32)
    if name == "weight" and len(shape) == 1:  # BN gamma
        return (1.0 + 0.2 * u).astype(np.float32)
    gain = 2.0 if len(shape) == 4 else 1.0
    return (u * np.sqrt(3.0 * gain / int(np.prod(shape[1:])))).astype(np.float32)


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
            array = _value(key, shape, number, seed)
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
    c, h, w = np.meshgrid(np.arange(3), np.arange(size), np.arange(size), indexing="ij")
    images = [
        np.sin(0.045 * h * (c + 1) + 0.031 * w + 0.7 * b) + 0.5 * np.cos(0.023 * (h + w) - c + b) for b in range(batch)
    ]
    return torch.from_numpy(np.stack(images).astype(np.float32))


@pytest.fixture(scope="module")
def layout() -> dict[str, list]:
    with gzip.open(DATA / "cdnv2_a_layout.json.gz", "rt") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(DATA / "cdnv2_a_224.npz") as data:
        return {key: data[key] for key in data.files}


def _logits(model: torch.nn.Module) -> np.ndarray:
    with torch.no_grad():
        return model(smooth_input()).logits.numpy()


def _assert_parity(ours: np.ndarray, theirs: np.ndarray) -> None:
    assert np.abs(ours - theirs).max() < 1e-4
    assert (ours.argmax(1) == theirs.argmax(1)).all()


def test_converted_file_matches_the_authors_converted_model(tmp_path, layout, reference):
    path = tmp_path / "converted_cdnv2_a.pth.tar"
    torch.save({"state_dict": authors_state_dict(layout["converted"], seed=1)}, path)
    imported = import_file(path, "condensenetv2")
    assert imported.model_name == "condensenetv2_a" and imported.model_kwargs == {}
    assert imported.num_classes == 1000
    assert imported.model.condensation_complete
    _assert_parity(_logits(imported.model), reference["converted"])
    # and its inference form (our scatter in place of their dense matrix) answers the same
    _assert_parity(_logits(imported.model.convert()), reference["converted"])


def test_training_checkpoint_matches_the_authors_model_and_prefers_ema(tmp_path, layout, reference):
    ema = {f"module.{k}": v for k, v in authors_state_dict(layout["unconverted"], seed=0).items()}
    raw = {f"module.{k}": v for k, v in authors_state_dict(layout["unconverted"], seed=7).items()}
    args = argparse.Namespace(dataset="imagenet", model="cdnv2_a", HS_start_block=2, SE_start_block=3, lr=0.4)
    path = tmp_path / "checkpoint-349.pth.tar"
    saved = {"epoch": 349, "arch": "cdnv2_a", "state_dict": raw, "optimizer": {"state": {}, "param_groups": []}}
    torch.save({**saved, "args": args, "version": 2, "state_dict_ema": ema, "metric": 64.4}, path)
    imported = import_file(path, "condensenetv2")
    assert any("state_dict_ema" in note for note in imported.notes)
    _assert_parity(_logits(imported.model), reference["unconverted"])
    # our conversion gives what their conversion of the same model gives
    _assert_parity(_logits(imported.model.convert()), reference["their_conversion"])


def test_sfr_index_that_is_not_a_selection_is_refused_naming_the_key(tmp_path, layout):
    key = "features.denseblock_3.denselayer_2.sfr.index"
    for damage, words in (
        (lambda m: m[5].copy_(torch.arange(len(m)) < 2), "row 5 selects 2 channels"),
        (lambda m: m.__setitem__((3, slice(None)), 0.0), "row 3 selects 0 channels"),
        (lambda m: m.mul_(0.5), "is not a selection: entry"),
    ):
        state = authors_state_dict(layout["converted"], seed=1)
        damage(state[key])
        path = tmp_path / "bad.pth"
        torch.save({"state_dict": state}, path)
        with pytest.raises(CheckpointError, match="not a selection") as error:
            import_file(path, "condensenetv2")
        assert key in str(error.value) and words in str(error.value)


def test_sfr_index_selecting_one_channel_twice_in_a_group_is_refused(tmp_path, layout):
    key = "features.denseblock_1.denselayer_1.sfr.index"
    state = authors_state_dict(layout["converted"], seed=1)
    state[key][1] = state[key][0]  # rows 0 and 1 are both group 0's
    path = tmp_path / "bad.pth"
    torch.save({"state_dict": state}, path)
    with pytest.raises(CheckpointError, match=f"{key} is not a selection the authors' conversion makes"):
        import_file(path, "condensenetv2")


def test_shape_mismatch_and_unknown_tensor_are_errors_naming_the_key(tmp_path, layout):
    state = authors_state_dict(layout["converted"], seed=1)
    key = "features.denseblock_4.denselayer_3.conv_2.conv.weight"
    state[key] = state[key][:, :-1]
    torch.save({"state_dict": state}, tmp_path / "shape.pth")
    with pytest.raises(CheckpointError, match=key):
        import_file(tmp_path / "shape.pth", "condensenetv2")
    state = authors_state_dict(layout["converted"], seed=1)
    state["features.extra.weight"] = torch.zeros(3)
    torch.save({"state_dict": state}, tmp_path / "extra.pth")
    with pytest.raises(CheckpointError, match="features.extra.weight"):
        import_file(tmp_path / "extra.pth", "condensenetv2")


def test_training_mask_inconsistent_with_its_count_is_refused(tmp_path, layout):
    state = authors_state_dict(layout["unconverted"], seed=0)
    key = "features.denseblock_2.denselayer_1.conv_1._mask"
    state[key][0::GROUPS_A, 0] = 1.0 - state[key][0::GROUPS_A, 0]  # one more or one fewer input for group 0
    torch.save({"state_dict": state}, tmp_path / "mask.pth")
    with pytest.raises(CheckpointError, match=key):
        import_file(tmp_path / "mask.pth", "condensenetv2")


def test_other_format_is_refused(tmp_path):
    torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7)}}, tmp_path / "resnet.pth")
    with pytest.raises(CheckpointError, match="not a condensenetv2 file"):
        import_file(tmp_path / "resnet.pth", "condensenetv2")


def test_command_imports_a_converted_file_and_exits_2_on_a_bad_index(tmp_path, layout, capsys):
    from training.import_checkpoint import main

    state = authors_state_dict(layout["converted"], seed=1)
    torch.save({"state_dict": state}, tmp_path / "good.pth")
    assert main([str(tmp_path / "good.pth"), "--format", "condensenetv2", "--out", str(tmp_path / "run")]) == 0
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["model"] == "condensenetv2_a" and len(summary["classes"]) == 1000
    key = "features.denseblock_5.denselayer_8.sfr.index"
    state[key][0, :] = 0.0
    torch.save({"state_dict": state}, tmp_path / "bad.pth")
    assert main([str(tmp_path / "bad.pth"), "--format", "condensenetv2", "--out", str(tmp_path / "run2")]) == 2
    assert f"{key} is not a selection" in capsys.readouterr().err
