"""The authors' training recipe as a preset: its optimiser, option precedence, a training step."""

from __future__ import annotations

import json
import math
import typing
from pathlib import Path

import pytest
import torch

from tests.training.tiny import TINY_TRAINING
from training.adafocus.config import Preset, TrainConfig
from training.adafocus.model import AdaFocusConfig, AdaFocusV2
from training.adafocus.presets import (
    PAPER_RECIPE,
    TRAINING_PRESETS,
    paper_activitynet,
    parse_train_config,
    train_config,
)
from training.adafocus.v2.trainer import AdaFocusTrainer, part_optimizer
from training.engine.optim import set_learning_rate

# The tiny architecture of the training tests (the paper's ResNet-50 takes seconds to build).
TINY_ARCHITECTURE = {k: v for k, v in TINY_TRAINING.items() if k in AdaFocusConfig.__dataclass_fields__}


def _lr_scale_of(optimizer: torch.optim.Optimizer) -> dict[int, tuple[float, float]]:
    """Each parameter's (lr multiplier, weight decay); fails if a parameter is in two groups."""
    seen: dict[int, tuple[float, float]] = {}
    for group in optimizer.param_groups:
        for param in group["params"]:
            assert id(param) not in seen, "a parameter is in two groups"
            seen[id(param)] = (group["lr_scale"], group["weight_decay"])
    return seen


def test_every_training_preset_is_a_choice_of_the_preset_option():
    assert set(TRAINING_PRESETS) == set(typing.get_args(Preset))


def test_the_preset_is_the_paper_architecture_with_the_authors_recipe():
    config = train_config("paper_activitynet")
    architecture = config.model_config(num_classes=200)
    assert architecture == paper_activitynet()
    assert architecture.aux_dropout == 0.2 and architecture.dropout == 0.2
    assert architecture.frame_order == "coarse_to_fine"
    for key, value in PAPER_RECIPE.items():
        assert getattr(config, key) == value, key
    assert (config.optimizer, config.nesterov, config.decay_all_parameters) == ("sgd", False, True)
    assert (config.lr, config.batch_size, config.epochs, config.warmup_epochs) == (2e-3, 32, 50, 0.0)
    minik = train_config("paper_minikinetics")
    assert (minik.lr, minik.batch_size) == (3e-3, 48)


def test_the_preset_optimizer_has_the_authors_groups_lr_decay_and_no_nesterov():
    config = train_config("paper_activitynet", **TINY_ARCHITECTURE)
    model = AdaFocusV2(config.model_config(num_classes=5))
    optimizer = part_optimizer(model, config)
    assert isinstance(optimizer, torch.optim.SGD)
    assert optimizer.defaults["nesterov"] is False and optimizer.defaults["momentum"] == 0.9
    scales = _lr_scale_of(optimizer)
    assert set(scales) == {id(p) for p in model.parameters()}  # every parameter, once
    expected = {  # the authors' get_optim_policies: the auxiliary heads go with their network
        "policy": 0.1,
        "global_net": 0.5,
        "global_aux": 0.5,
        "local_net": 1.0,
        "local_aux": 1.0,
        "classifier": 5.0,
    }
    for name, param in model.named_parameters():
        scale, decay = scales[id(param)]
        assert scale == expected[name.split(".")[0]], name
        assert decay == 1e-4, name  # on every parameter, BN and biases included
    set_learning_rate(optimizer, config.lr, 1.0)
    assert sorted({group["lr"] for group in optimizer.param_groups}) == pytest.approx([2e-4, 1e-3, 2e-3, 1e-2])


def test_the_default_optimizer_is_unchanged_nesterov_and_no_decay_on_bn_and_biases():
    config = TrainConfig(optimizer="sgd", **TINY_ARCHITECTURE)
    model = AdaFocusV2(config.model_config(num_classes=5))
    optimizer = part_optimizer(model, config)
    assert optimizer.defaults["nesterov"] is True
    scales = _lr_scale_of(optimizer)
    for name, param in model.named_parameters():
        assert scales[id(param)][1] == (0.0 if param.ndim <= 1 else 1e-4), name


def test_flags_override_the_config_file_which_overrides_the_preset(tmp_path: Path):
    assert parse_train_config(["--preset", "paper_activitynet"]).lr == 2e-3
    config = parse_train_config(["--preset", "paper_activitynet", "--lr", "0.01", "--patch-size", "96"])
    assert (config.lr, config.patch_size, config.optimizer, config.preset) == (0.01, 96, "sgd", "paper_activitynet")
    # An explicit flag wins even where it names TrainConfig's default.
    config = parse_train_config(["--preset", "paper_activitynet", "--optimizer", "adamw", "--nesterov"])
    assert (config.optimizer, config.nesterov) == ("adamw", True)
    file = tmp_path / "run.json"
    file.write_text(json.dumps({"lr": 0.005, "epochs": 3}))
    config = parse_train_config(["--preset", "paper_activitynet", "--config", str(file), "--epochs", "7"])
    assert (config.lr, config.epochs, config.momentum) == (0.005, 7, 0.9)
    # A config file may name the preset; a flag naming another one wins.
    file.write_text(json.dumps({"preset": "paper_minikinetics", "epochs": 3}))
    config = parse_train_config(["--config", str(file)])
    assert (config.lr, config.batch_size, config.epochs) == (3e-3, 48, 3)
    config = parse_train_config(["--config", str(file), "--preset", "paper_activitynet"])
    assert (config.lr, config.batch_size, config.epochs) == (2e-3, 32, 3)
    # No preset: the defaults as before.
    assert parse_train_config([]) == TrainConfig()


def test_an_unknown_preset_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stopped:
        parse_train_config(["--preset", "paper_kinetics"])
    assert stopped.value.code == 2
    assert "paper_activitynet" in capsys.readouterr().err


def test_v1_refuses_the_v2_only_optimiser_options():
    with pytest.raises(ValueError, match="adafocus_v2 only"):
        train_config("paper_activitynet", method="adafocus_v1").model_config(5)


def test_auxiliary_dropout_acts_in_training_only_and_adds_no_weights():
    with_dropout = AdaFocusConfig(num_classes=5, aux_dropout=0.5, **TINY_ARCHITECTURE)
    torch.manual_seed(0)
    model = AdaFocusV2(with_dropout)
    plain = AdaFocusV2(AdaFocusConfig(num_classes=5, **TINY_ARCHITECTURE))
    assert model.state_dict().keys() == plain.state_dict().keys()
    clips = torch.randn(2, 4, 3, 32, 32)
    model.train()
    first, second = model(clips, "centre"), model(clips, "centre")
    assert not torch.equal(first.global_logits, second.global_logits)
    assert not torch.equal(first.local_logits, second.local_logits)
    model.eval()
    first, second = model(clips, "centre"), model(clips, "centre")
    assert torch.equal(first.global_logits, second.global_logits)


def test_a_training_step_runs_with_the_preset(tiny_dataset: Path, tmp_path: Path):
    overrides = {**TINY_TRAINING, "data": str(tiny_dataset), "out": str(tmp_path)}
    trainer = AdaFocusTrainer(train_config("paper_activitynet", **overrides))
    assert trainer.config.preset == "paper_activitynet" and trainer.model.config.aux_dropout == 0.2
    clips, target, _, valid, _ = next(iter(trainer.train_loader()))
    before = {name: p.detach().clone() for name, p in trainer.model.named_parameters()}
    loss = trainer.train_step(clips, target, valid)
    assert loss is not None and math.isfinite(loss)
    changed = [name for name, p in trainer.model.named_parameters() if not torch.equal(p, before[name])]
    assert any(name.startswith("policy.") for name in changed)
    assert any(name.startswith("classifier.") for name in changed)
