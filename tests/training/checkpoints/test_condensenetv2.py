"""The ``condensenetv2`` import format: parity with the authors' code, and strictness.

Reference data (tests/data/condensenetv2): ``cdnv2_a_layout.json.gz`` lists the keys, shapes
and dtypes of the authors' ``cdnv2_a`` and ``converted_cdnv2_a`` state dicts (written from
their models at jianghaojun/CondenseNetV2 4431162; the converted one equals the published
listing of the released A file); ``cdnv2_a_224.npz`` holds their models' logits on
:func:`smooth_input` (2 x 3 x 224 x 224: their head pools 7x7 with a fixed AvgPool2d(7)) once
filled by :func:`authors_state_dict` (seed 0: training form, seed 1: converted form), and
those of their own conversion of the seed-0 model.

The formula and the input are in ``condensenetv2_formula.py`` (shared with bench/bench_import.py).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pytest
import torch

from tests.training.checkpoints.condensenetv2_formula import (
    GROUPS_A,
    authors_state_dict,
    load_layout,
    load_reference,
    smooth_input,
)
from training.checkpoints import CheckpointError, import_file


@pytest.fixture(scope="module")
def layout() -> dict[str, list]:
    return load_layout("a")


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    return load_reference("a")


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
