"""Config parsing, the epoch sampler, EMA, checkpoints and the learning-rate schedule."""

from __future__ import annotations

import json
from dataclasses import dataclass, field

import pytest
import torch
from torch import nn

from training.engine.checkpoint import atomic_save, load_checkpoint
from training.engine.ema import ModelEma
from training.engine.optim import build_optimizer, cosine_with_warmup, parameter_groups
from training.engine.options import parse_config
from training.engine.sampler import EpochSampler
from training.models import create_model


@dataclass
class ExampleConfig:
    name: str = "a"
    size: int = 4
    rate: float = 0.5
    flag: bool = False
    limit: int | None = None
    pair: tuple[float, ...] = (1.0, 2.0)
    extra: dict = field(default_factory=dict)


def test_flags_override_the_config_file_which_overrides_defaults(tmp_path):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"size": 9, "rate": 0.1, "pair": [3, 4]}))
    config = parse_config(ExampleConfig, ["--config", str(path), "--rate", "0.7", "--flag", "--limit", "3"])
    assert config == ExampleConfig(size=9, rate=0.7, flag=True, limit=3, pair=(3, 4))


def test_toml_config_and_json_flags(tmp_path):
    path = tmp_path / "c.toml"
    path.write_text('name = "b"\nlimit = 5\n')
    config = parse_config(ExampleConfig, ["--config", str(path), "--extra", '{"k": 1}', "--limit", "none"])
    assert config.name == "b" and config.limit is None and config.extra == {"k": 1}


def test_unknown_config_keys_and_missing_files_are_clear_errors(tmp_path, capsys):
    path = tmp_path / "c.json"
    path.write_text(json.dumps({"sise": 9}))
    with pytest.raises(SystemExit):
        parse_config(ExampleConfig, ["--config", str(path)])
    assert "unknown option(s) sise" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        parse_config(ExampleConfig, ["--config", str(tmp_path / "missing.json")])
    assert "does not exist" in capsys.readouterr().err


def test_sampler_is_seeded_per_epoch_and_resumes_mid_epoch():
    sampler = EpochSampler(10, seed=3)
    sampler.set_epoch(1)
    full = list(sampler)
    assert sorted(i for i, _ in full) == list(range(10)) and {e for _, e in full} == {1}
    sampler.set_epoch(2)
    assert list(sampler) != full
    sampler.set_epoch(1, start=4)
    assert list(sampler) == full[4:] and len(sampler) == 6


def test_sampler_shards_cover_the_data_once():
    shards = [EpochSampler(11, seed=0, rank=r, world_size=3) for r in range(3)]
    indices = [i for s in shards for i, _ in s]
    assert sorted(indices) == list(range(11))


def test_ema_averages_weights_and_copies_masks():
    torch.manual_seed(0)
    model = create_model("condensenetv2_cifar", stages=(1, 1, 1), growth=(8, 8, 8))
    ema = ModelEma(model, decay=0.5, warmup=False)
    before = next(ema.module.parameters()).clone()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(1.0)
    model.condense(1.0)
    ema.update(model, step=0)
    after = next(ema.module.parameters())
    assert torch.allclose(after, before + 0.5)  # halfway to the live weights
    for (name, live), copied in zip(model.named_buffers(), ema.module.buffers()):
        if "group_mask" in name or "stage" in name:
            assert torch.equal(live, copied), name


def test_atomic_save_leaves_no_temporary_files_and_round_trips(tmp_path):
    atomic_save({"a": torch.arange(3)}, tmp_path / "ck.pt")
    atomic_save({"a": torch.arange(4)}, tmp_path / "ck.pt")
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]
    assert torch.equal(load_checkpoint(tmp_path / "ck.pt")["a"], torch.arange(4))


def test_atomic_save_failure_keeps_the_old_checkpoint(tmp_path):
    atomic_save({"a": 1}, tmp_path / "ck.pt")

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        atomic_save({"a": Unpicklable()}, tmp_path / "ck.pt")
    assert load_checkpoint(tmp_path / "ck.pt") == {"a": 1}
    assert [p.name for p in tmp_path.iterdir()] == ["ck.pt"]


def test_cosine_schedule_warms_up_then_decays_to_zero():
    factors = [cosine_with_warmup(step, 100, 10) for step in range(100)]
    assert factors[0] == pytest.approx(0.1) and factors[9] == pytest.approx(1.0)
    assert factors[10] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[10:], factors[11:]))
    assert factors[-1] < 0.01


def test_no_weight_decay_on_batchnorm_and_biases():
    model = nn.Sequential(nn.Conv2d(3, 4, 3), nn.BatchNorm2d(4), nn.Flatten(), nn.LazyLinear(2))
    model(torch.randn(1, 3, 5, 5))
    decay, no_decay = parameter_groups(model, 1e-4)
    assert decay["weight_decay"] == 1e-4 and no_decay["weight_decay"] == 0.0
    assert all(p.ndim > 1 for p in decay["params"]) and all(p.ndim == 1 for p in no_decay["params"])


def test_build_optimizer_names_each_optimiser_with_its_settings():
    model = nn.Linear(3, 2)
    groups = parameter_groups(model, 1e-4, lr_scale=0.5)
    sgd = build_optimizer(groups, "sgd", 0.1, momentum=0.8)
    assert type(sgd) is torch.optim.SGD and len(sgd.param_groups) == 2
    assert sgd.defaults["lr"] == 0.1 and sgd.defaults["momentum"] == 0.8 and sgd.defaults["nesterov"]
    assert [g["weight_decay"] for g in sgd.param_groups] == [1e-4, 0.0]
    assert all(g["lr_scale"] == 0.5 for g in sgd.param_groups)  # set_learning_rate reads it
    assert not build_optimizer(groups, "sgd", 0.1, nesterov=False).defaults["nesterov"]
    adamw = build_optimizer(groups, "adamw", 2e-3)
    assert type(adamw) is torch.optim.AdamW and adamw.defaults["lr"] == 2e-3
    assert [g["weight_decay"] for g in adamw.param_groups] == [1e-4, 0.0]  # the groups', not AdamW's default
    adam = build_optimizer(model.parameters(), "adam", 3e-4)  # plain parameters: one group
    assert type(adam) is torch.optim.Adam and len(adam.param_groups) == 1
    assert adam.defaults["lr"] == 3e-4 and adam.defaults["weight_decay"] == 0.0
    with pytest.raises(ValueError, match="unknown optimizer 'lamb'; use sgd, adamw, adam"):
        build_optimizer(groups, "lamb", 0.1)  # type: ignore[arg-type]


def test_train_state_accumulates_time_over_sessions_and_marks_unrecorded_time():
    import math
    import time

    from training.engine.state import TrainState

    state = TrainState.from_checkpoint(
        {"step": 3, "history": [], "bad_files": [], "epoch_losses": [], "train_seconds": 5.0}
    )
    assert math.isnan(state.train_cpu_seconds)  # an older checkpoint's unrecorded CPU time stays unknown
    state.charge_time()  # no clock running: nothing to add
    assert state.train_seconds == 5.0
    state.start_clock()
    time.sleep(0.05)
    state.stop_clock()
    assert 5.04 < state.train_seconds < 6.0
    saved = state.as_checkpoint()
    assert saved["train_seconds"] == state.train_seconds and "_clock" not in saved
    legacy = TrainState.from_checkpoint({"step": 0, "history": [], "bad_files": [], "epoch_losses": []})
    assert math.isnan(legacy.train_seconds)
