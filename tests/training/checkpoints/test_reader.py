"""The strict checkpoint reader: safe loading, unwrapping, every tensor used or reported."""

from __future__ import annotations

import argparse
from pathlib import Path

import pytest
import torch
from torch import nn

from training.checkpoints import CheckpointError, TensorReader, load_mapped, read_checkpoint, unwrap_state_dict


def _save(obj, path: Path) -> Path:
    torch.save(obj, path)
    return path


def test_a_truncated_file_is_a_checkpoint_error(tmp_path):
    whole = _save({"w": torch.ones(100, 100)}, tmp_path / "whole.pth").read_bytes()
    cut = tmp_path / "cut.pth"
    cut.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CheckpointError, match="cannot read .*cut.pth as a PyTorch checkpoint"):
        read_checkpoint(cut)


def test_a_file_that_is_not_torch_is_a_checkpoint_error(tmp_path):
    text = tmp_path / "notes.pth"
    text.write_text("not a checkpoint\n")
    with pytest.raises(CheckpointError, match="cannot read"):
        read_checkpoint(text)
    with pytest.raises(CheckpointError, match="does not exist"):
        read_checkpoint(tmp_path / "absent.pth")


def test_only_the_named_globals_are_unpickled(tmp_path):
    path = _save({"args": argparse.Namespace(lr=0.1), "state_dict": {"w": torch.ones(2)}}, tmp_path / "timm.pth")
    with pytest.raises(CheckpointError, match="does not allow.*argparse.Namespace"):
        read_checkpoint(path)
    payload = read_checkpoint(path, safe_globals=[argparse.Namespace])
    assert payload["args"].lr == 0.1


def test_unwrap_takes_the_state_dict_entry_and_strips_module():
    payload = {"epoch": 3, "state_dict": {"module.a": torch.zeros(1), "module.b": torch.zeros(2)}}
    assert list(unwrap_state_dict(payload, "f")) == ["a", "b"]
    # a prefix only some keys carry is kept: it is then part of the names
    assert list(unwrap_state_dict({"module.a": torch.zeros(1), "b": torch.zeros(1)}, "f")) == ["module.a", "b"]
    with pytest.raises(CheckpointError, match="not tensors: b"):
        unwrap_state_dict({"a": torch.zeros(1), "b": 3}, "f")
    with pytest.raises(CheckpointError, match="holds a list"):
        unwrap_state_dict([torch.zeros(1)], "f")


def test_the_reader_names_a_shape_mismatch_and_every_unused_tensor():
    reader = TensorReader({"a": torch.zeros(2, 3), "fc.weight": torch.zeros(4), "fc.bias": torch.zeros(4)}, "f.pth")
    with pytest.raises(CheckpointError, match=r"f.pth: a has shape \[2, 3\], the model needs \[3, 2\]"):
        reader.take("a", (3, 2))
    with pytest.raises(CheckpointError, match="no tensor zz"):
        reader.take("zz")
    reader.take("a", (2, 3))
    with pytest.raises(CheckpointError, match="does not know.*fc.weight, fc.bias"):
        reader.finish()
    reader.report(["fc.weight", "fc.bias"], "unused ImageNet head")
    assert reader.finish() == ["unused ImageNet head fc.weight, fc.bias"]


def test_load_mapped_fills_every_parameter_and_buffer_or_names_the_gap():
    model = nn.Sequential(nn.Conv2d(1, 2, 1, bias=False), nn.BatchNorm2d(2))
    full = {key: torch.full_like(value, 2) for key, value in model.state_dict().items()}
    partial = {key: value for key, value in full.items() if key != "1.running_var"}
    with pytest.raises(CheckpointError, match="not filled: 1.running_var"):
        load_mapped(model, partial, "f.pth")
    with pytest.raises(CheckpointError, match="no such parameter in the model: extra"):
        load_mapped(model, {**full, "extra": torch.zeros(1)}, "f.pth")
    with pytest.raises(CheckpointError, match=r"0.weight has shape \[2\]"):
        load_mapped(model, {**full, "0.weight": torch.zeros(2)}, "f.pth")
    load_mapped(model, full, "f.pth")
    assert torch.equal(model[1].running_var, torch.full((2,), 2.0))
