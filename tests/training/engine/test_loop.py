"""The engine's one training loop: every trainer runs it; resume, stops at epoch ends, old
checkpoints and unreadable samples on a toy trainer (milliseconds)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from training.adafocus.trainer import AdaFocusTrainerBase
from training.adafocus.v1.trainer import AdaFocusV1Trainer
from training.adafocus.v2.trainer import AdaFocusTrainer
from training.engine.checkpoint import load_checkpoint
from training.engine.commands import BadDataError, TrainingStopped
from training.engine.loop import TrainingLoop
from training.engine.optim import build_optimizer
from training.engine.sampler import EpochSampler
from training.image.trainer import ImageTrainer

LOOP_METHODS = ("fit", "save_checkpoint", "maybe_resume", "checkpoint_payload", "_end_of_epoch")


@pytest.mark.parametrize("trainer", [ImageTrainer, AdaFocusTrainer, AdaFocusV1Trainer])
def test_every_trainer_runs_the_engine_loop(trainer: type) -> None:
    assert issubclass(trainer, TrainingLoop)
    for name in LOOP_METHODS:
        if trainer is AdaFocusV1Trainer and name == "fit":
            continue  # V1 runs the loop once per stage: its fit calls TrainingLoop.fit (below)
        assert getattr(trainer, name) is getattr(TrainingLoop, name), f"{trainer.__name__}.{name}"
    assert issubclass(AdaFocusV1Trainer, AdaFocusTrainerBase) and not issubclass(AdaFocusV1Trainer, AdaFocusTrainer)
    assert "fit" not in vars(AdaFocusTrainerBase) and "fit" not in vars(AdaFocusTrainer)


# -- a toy trainer ----------------------------------------------------------------------------
@dataclass
class ToyConfig:
    out: str = "runs/toy"
    restart: bool = False
    strict_data: bool = False
    checkpoint_every: int = 3
    max_steps: int | None = None
    progress: bool = False
    epochs: int = 3
    lr: float = 0.1
    unreadable: tuple[int, ...] = ()


class ToyData(Dataset):
    """Ten points of a linear map; the indices in ``unreadable`` come back flagged unreadable."""

    def __init__(self, unreadable: tuple[int, ...]) -> None:
        generator = torch.Generator().manual_seed(0)
        self.inputs = torch.randn(10, 3, generator=generator)
        self.targets = self.inputs @ torch.tensor([1.0, -2.0, 0.5])
        self.unreadable = set(unreadable)
        self.samples = [SimpleNamespace(path=Path(f"toy/{i}.txt")) for i in range(10)]

    def __len__(self) -> int:
        return 10

    def __getitem__(self, key: tuple[int, int]) -> tuple[torch.Tensor, torch.Tensor, int, bool]:
        index, _ = key
        return self.inputs[index], self.targets[index], index, index not in self.unreadable


class ToyTrainer(TrainingLoop):
    checkpoint_format = "toy/1"
    checkpoint_description = "a toy checkpoint"
    sample_kind = "point"

    def __init__(self, config: ToyConfig) -> None:
        super().__init__(config)
        torch.manual_seed(0)
        self.classes = ["y"]
        self.train_set = ToyData(config.unreadable)
        self.sampler = EpochSampler(len(self.train_set), seed=1)
        self.model = nn.Linear(3, 1)
        self.optimizer = build_optimizer(self.model.parameters(), "sgd", config.lr)
        self.plan_schedule(len(self.train_set), 4, config.epochs, 0.5, config.lr)  # 2 steps per epoch

    def train_loader(self) -> DataLoader:
        return DataLoader(self.train_set, batch_size=self.local_batch, sampler=self.sampler, drop_last=True)

    def unreadable(self, batch: Any) -> list[int]:
        _, _, indices, readable = batch
        return indices[~readable].tolist()

    def train_batch(self, batch: Any) -> float | None:
        inputs, targets, _, readable = batch
        if not readable.any():
            return None
        loss = nn.functional.mse_loss(self.model(inputs[readable]).squeeze(1), targets[readable])
        self.optimizer.zero_grad()
        loss.backward()
        self.optimizer.step()
        return float(loss)

    def evaluate_epoch(self) -> dict[str, Any]:
        with torch.no_grad():
            return {
                "val": float(
                    nn.functional.mse_loss(self.model(self.train_set.inputs).squeeze(1), self.train_set.targets)
                )
            }

    def epoch_summary(self, record: dict[str, Any]) -> str:
        return f"epoch {record['epoch']}: {record['val']:.3f}"


def _run(config: ToyConfig) -> ToyTrainer:
    trainer = ToyTrainer(config)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    trainer.maybe_resume()
    trainer.fit()
    return trainer


def _same(a: ToyTrainer, b: ToyTrainer) -> None:
    for (name, x), y in zip(a.model.state_dict().items(), b.model.state_dict().values(), strict=True):
        assert torch.equal(x, y), name
    assert a.state.history == b.state.history and a.state.step == b.state.step == 6


@pytest.mark.parametrize("stop_at", [1, 2, 3, 5])
def test_a_stopped_run_resumes_to_the_same_weights_and_history(tmp_path: Path, stop_at: int) -> None:
    straight = _run(ToyConfig(out=str(tmp_path / "straight")))
    with pytest.raises(TrainingStopped, match=f"max_steps={stop_at} at step {stop_at}"):
        _run(ToyConfig(out=str(tmp_path / "resumed"), max_steps=stop_at))
    _same(straight, _run(ToyConfig(out=str(tmp_path / "resumed"))))
    assert [record["epoch"] for record in straight.state.history] == [1, 2, 3]


def test_a_stop_at_an_epoch_end_evaluates_that_epoch_first(tmp_path: Path) -> None:
    with pytest.raises(TrainingStopped):
        _run(ToyConfig(out=str(tmp_path), max_steps=2))
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["step"] == 2 and [record["epoch"] for record in checkpoint["history"]] == [1]
    assert checkpoint["format"] == "toy/1" and {"model", "optimizer", "rng", "epoch_losses"} <= set(checkpoint)


@pytest.mark.parametrize("step", [2, 6])
def test_an_epoch_a_checkpoint_left_unevaluated_is_evaluated_on_resume(tmp_path: Path, step: int) -> None:
    """The old image trainer could stop at an epoch's last step (the last epoch's too) before
    evaluating it; resuming such a checkpoint evaluates that epoch before going on."""
    if step < 6:
        with pytest.raises(TrainingStopped):
            _run(ToyConfig(out=str(tmp_path), max_steps=step))
    else:
        _run(ToyConfig(out=str(tmp_path)))  # (a run never stops at its last step: it finishes)
    checkpoint = load_checkpoint(tmp_path / "checkpoint.pt")
    assert checkpoint["step"] == step
    checkpoint["history"] = checkpoint["history"][:-1]  # as the old code left it
    torch.save(checkpoint, tmp_path / "checkpoint.pt")
    resumed = _run(ToyConfig(out=str(tmp_path)))
    assert [(record["epoch"], record["step"]) for record in resumed.state.history] == [(1, 2), (2, 4), (3, 6)]


def test_unreadable_samples_are_recorded_once_or_stop_the_run(tmp_path: Path) -> None:
    trainer = _run(ToyConfig(out=str(tmp_path / "run"), unreadable=(3,)))
    assert trainer.state.bad_files == {"toy/3.txt"}
    assert load_checkpoint(tmp_path / "run" / "checkpoint.pt")["bad_files"] == ["toy/3.txt"]
    with pytest.raises(BadDataError, match="cannot read point toy/3.txt"):
        _run(ToyConfig(out=str(tmp_path / "strict"), unreadable=(3,), strict_data=True))


def test_too_few_samples_for_one_batch_is_a_clear_error(tmp_path: Path) -> None:
    trainer = ToyTrainer(ToyConfig(out=str(tmp_path)))
    with pytest.raises(ValueError, match="10 training points is fewer than one batch of 16"):
        trainer.plan_schedule(10, 16, 1, 0.0, 0.1)
