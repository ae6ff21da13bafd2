"""The one resumable training loop every trainer runs.

:class:`TrainingLoop` owns what does not depend on the model or the data: the run folder and
its ``checkpoint.pt``, the progress (:class:`TrainState`), the stop request, the process
group (:class:`DistContext`), the epoch/step loop with its warm-up + cosine learning rate,
mid-epoch resume, unreadable-file bookkeeping, the end-of-epoch record (``metrics.json``),
stop signals, ``max_steps`` and periodic checkpoints. A trainer subclasses it and supplies
the hooks: its loader, one step on a batch, which samples of a batch were unreadable, the
evaluation part of an epoch's record and its log line, and, where it has them, checkpoint
extras and work around each step.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, ClassVar, Protocol

import torch
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.engine.checkpoint import atomic_save, restore_rng_state, rng_state
from training.engine.commands import BadDataError, StopRequest, TrainingStopped, log
from training.engine.distributed import DistContext
from training.engine.optim import cosine_with_warmup, set_learning_rate
from training.engine.resume import load_resumable_checkpoint
from training.engine.sampler import EpochSampler
from training.engine.state import TrainState


class LoopConfig(Protocol):
    """The options the loop reads from a trainer's configuration (a dataclass)."""

    out: str
    restart: bool
    strict_data: bool
    checkpoint_every: int
    max_steps: int | None
    progress: bool


class Samples(Protocol):
    """A dataset whose ``samples[index].path`` names the file of a sample."""

    samples: Any


class TrainingLoop:
    """A resumable training run: ``maybe_resume()``, then ``fit()``.

    A subclass sets, in its ``__init__`` after this one's: ``model``, ``optimizer``,
    ``train_set``, ``sampler`` (an :class:`EpochSampler`), ``classes``, and the schedule
    (:meth:`plan_schedule`, or ``steps_per_epoch`` / ``total_steps`` / ``warmup_steps``
    itself); ``local_batch`` and ``base_lr`` where they differ from the defaults
    :meth:`plan_schedule` gives.
    """

    checkpoint_format: ClassVar[str]  # the checkpoint's ``format`` entry, e.g. ``train_image/1``
    checkpoint_description: ClassVar[str]  # what a refused checkpoint is not: "an image-training checkpoint"
    sample_kind: ClassVar[str]  # "image", "video": how messages name a sample
    progress_lr_format: ClassVar[str] = ".2g"  # the learning rate on the progress bar

    model: nn.Module
    optimizer: torch.optim.Optimizer
    train_set: Samples
    sampler: EpochSampler
    classes: list[str]
    local_batch: int  # samples per step in this process
    base_lr: float  # the peak learning rate the schedule scales
    steps_per_epoch: int
    total_steps: int
    warmup_steps: int

    def __init__(self, config: LoopConfig, dist: DistContext | None = None, stop: StopRequest | None = None) -> None:
        self.config = config
        self.dist = dist or DistContext()
        self.device = self.dist.device
        self.stop = stop or StopRequest()
        self.run_dir = Path(config.out)
        self.state = TrainState()

    def plan_schedule(self, samples: int, batch_size: int, epochs: int, warmup_epochs: float, lr: float) -> None:
        """Steps per epoch (full batches of ``batch_size`` over all processes), in all, of warm-up."""
        self.steps_per_epoch = samples // batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{samples} training {self.sample_kind}s is fewer than one batch of {batch_size}")
        self.total_steps = epochs * self.steps_per_epoch
        self.warmup_steps = int(warmup_epochs * self.steps_per_epoch)
        self.local_batch = batch_size // self.dist.world_size
        self.base_lr = lr

    # -- hooks ----------------------------------------------------------------------------
    def train_loader(self) -> DataLoader:
        """The training batches, drawn through ``self.sampler`` (whole batches only)."""
        raise NotImplementedError

    def train_batch(self, batch: Any) -> float | None:
        """One optimiser step on a batch of the loader; its loss, ``None`` if nothing was readable."""
        raise NotImplementedError

    def unreadable(self, batch: Any) -> list[int]:
        """The dataset indices of the samples of ``batch`` that could not be read."""
        raise NotImplementedError

    def evaluate_epoch(self) -> dict[str, Any]:
        """The evaluation entries of an epoch's record (rank 0 only)."""
        raise NotImplementedError

    def epoch_summary(self, record: dict[str, Any]) -> str:
        """The log line of an epoch's record."""
        raise NotImplementedError

    def before_step(self) -> None:
        """Work before each step, ahead of its learning rate (image: condensation)."""

    def after_step(self) -> None:
        """Work after each optimiser step, before the step count moves on (image: the EMA)."""

    def record_extras(self) -> dict[str, Any]:
        """Entries put first in each epoch's record in ``metrics.json`` (a stage, say)."""
        return {}

    def metrics_history(self) -> list[dict[str, Any]]:
        """What ``metrics.json`` holds: every epoch record of the run."""
        return self.state.history

    def checkpoint_extras(self) -> dict[str, Any]:
        """Entries of the checkpoint beyond the common ones (an EMA, a generator's state)."""
        return {}

    def restore_extras(self, checkpoint: dict[str, Any]) -> None:
        """Load what :meth:`checkpoint_extras` saved."""

    def steps_in_run(self) -> int:
        """Steps done in the whole run (what ``max_steps`` counts)."""
        return self.state.step

    # -- unreadable files -------------------------------------------------------------------
    def note_skipped(self, indices: list[int], dataset: Samples) -> None:
        """Record unreadable samples of ``dataset`` (or stop, with ``strict_data``)."""
        for index in indices:
            path = str(dataset.samples[index].path)
            if self.config.strict_data:
                raise BadDataError(f"cannot read {self.sample_kind} {path}")
            if path not in self.state.bad_files:
                log(f"warning: skipping unreadable {self.sample_kind} {path}")
            self.state.bad_files.add(path)

    # -- checkpoints --------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        """Write ``checkpoint.pt`` atomically (rank 0; every rank must call it)."""
        self.state.charge_time()  # the checkpoint carries the training time so far
        self.state.bad_files = set().union(*self.dist.all_gather(self.state.bad_files))
        if not self.dist.is_main:
            return
        atomic_save(self.checkpoint_payload(), self.checkpoint_path)

    def checkpoint_payload(self) -> dict[str, Any]:
        """The checkpoint: options, classes, weights, optimiser, progress, random state, extras."""
        return {
            "format": self.checkpoint_format,
            "config": dataclasses.asdict(self.config),
            "classes": self.classes,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.state.as_checkpoint(),
            "rng": rng_state(),
            **self.checkpoint_extras(),
        }

    def maybe_resume(self) -> bool:
        """Load ``checkpoint.pt`` from the run folder unless ``restart``; True if resumed."""
        checkpoint = load_resumable_checkpoint(
            self.checkpoint_path, self.checkpoint_format, self.checkpoint_description, self.config
        )
        if checkpoint is None:
            return False
        self.restore(checkpoint)
        return True

    def restore(self, checkpoint: dict[str, Any]) -> None:
        """Continue from a checkpoint of this run (model, optimiser, progress, random state)."""
        self.model.load_state_dict(checkpoint["model"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.state = TrainState.from_checkpoint(checkpoint)
        restore_rng_state(checkpoint["rng"])
        self.restore_extras(checkpoint)

    # -- the loop -----------------------------------------------------------------------
    def fit(self) -> None:
        """Train to the end of the schedule (or until stopped, raising :class:`TrainingStopped`)."""
        loader = self.train_loader()
        bar = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            disable=not (self.config.progress and self.dist.is_main),
            unit="step",
            dynamic_ncols=True,
        )
        self.state.start_clock()
        try:
            while self.state.step < self.total_steps:
                epoch, done_in_epoch = divmod(self.state.step, self.steps_per_epoch)
                if done_in_epoch == 0 and epoch > 0 and not self._evaluated(epoch - 1):
                    self._end_of_epoch(epoch - 1)  # stopped right at an epoch's end last time
                self.sampler.set_epoch(epoch, start=done_in_epoch * self.local_batch)
                for batch in loader:
                    loss, lr = self._step(batch)
                    bar.update()
                    lr_text = format(lr, self.progress_lr_format)
                    bar.set_postfix(loss=f"{loss:.3f}" if loss is not None else "-", lr=lr_text, epoch=epoch + 1)
                    if self.state.step % self.steps_per_epoch == 0:
                        break  # a resumed epoch's sampler may hold a partial batch more
                    self._maybe_stop_or_checkpoint()
                self._end_of_epoch(epoch)
                self._maybe_stop_or_checkpoint()
            # A checkpoint of the old image trainer could stop at the last step before its
            # epoch's evaluation; this loop never writes one (it evaluates before stopping).
            last_epoch = self.total_steps // self.steps_per_epoch - 1
            if last_epoch >= 0 and not self._evaluated(last_epoch):
                self._end_of_epoch(last_epoch)
        finally:
            self.state.stop_clock()
            bar.close()

    def _step(self, batch: Any) -> tuple[float | None, float]:
        """One step of the schedule on ``batch``: its loss and learning rate."""
        self.before_step()
        factor = cosine_with_warmup(self.state.step, self.total_steps, self.warmup_steps)
        lr = set_learning_rate(self.optimizer, self.base_lr, factor)
        self.note_skipped(self.unreadable(batch), self.train_set)
        loss = self.train_batch(batch)
        if loss is not None:
            self.state.epoch_losses.append(loss)
        self.after_step()
        self.state.step += 1
        return loss, lr

    def _evaluated(self, epoch: int) -> bool:
        return any(record["epoch"] == epoch + 1 for record in self.state.history)

    def _end_of_epoch(self, epoch: int) -> None:
        """Evaluate, append the epoch's record to ``metrics.json`` (rank 0), checkpoint."""
        losses = [loss for rank_losses in self.dist.all_gather(self.state.epoch_losses) for loss in rank_losses]
        self.state.epoch_losses = []
        if self.dist.is_main:
            record: dict[str, Any] = {
                **self.record_extras(),
                "epoch": epoch + 1,
                "step": self.state.step,
                "train_loss": sum(losses) / len(losses) if losses else None,
                **self.evaluate_epoch(),
            }
            self.state.history.append(record)
            log(self.epoch_summary(record))
            (self.run_dir / "metrics.json").write_text(json.dumps(self.metrics_history(), indent=2))
        self.state.history = self.dist.broadcast(self.state.history)
        self.save_checkpoint()

    def _maybe_stop_or_checkpoint(self) -> None:
        step = self.state.step
        reason = self.stop.reason
        if reason is None and self.config.max_steps is not None and self.steps_in_run() >= self.config.max_steps:
            reason = f"max_steps={self.config.max_steps}"
        # Every process must agree to stop at the same step.
        reason = self.dist.broadcast(reason)
        if reason is not None and step < self.total_steps:
            self.save_checkpoint()
            raise TrainingStopped(f"stopped by {reason} at step {step}; checkpoint saved to {self.checkpoint_path}")
        if step % self.config.checkpoint_every == 0 and step % self.steps_per_epoch != 0:
            self.save_checkpoint()
