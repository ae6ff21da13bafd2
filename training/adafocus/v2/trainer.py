"""One-stage AdaFocusV2 training: data, model, optimiser, schedule, checkpoints, DDP.

A step runs the clip batch through two branches that share the glance: patches where the
policy looks, and patches at random places (input diversity). The loss sums, per branch,
the classifier's loss after every step and the per-frame auxiliary losses of both
networks, and averages the branches; the policy reads the global features through a
stop-gradient. Each of these three fixes has a switch (``--no-random-patch-branch``,
``--no-auxiliary-losses``, ``--no-stop-gradient``) for ablations.

The run folder holds ``checkpoint.pt`` (rewritten atomically; rerunning the same command
resumes from it), ``config.json``, ``metrics.json`` (one record per epoch) and, at the end
(``finish``), ``model.pt``, ``summary.json`` and ``report.md``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.frames.transform import FrameGeometry
from training.adafocus.config import TrainConfig
from training.adafocus.evaluation import collect, step_metrics
from training.adafocus.losses import adafocus_loss
from training.adafocus.model import AdaFocusV2, ClipOutput
from training.data.frame_cache import FrameCache
from training.data.splits import VideoSplits, load_splits
from training.data.videos import VideoDataset
from training.engine.checkpoint import atomic_save, restore_rng_state, rng_state
from training.engine.distributed import DistContext
from training.engine.optim import cosine_with_warmup, parameter_groups, set_learning_rate
from training.engine.runtime import (
    BadDataError,
    StopRequest,
    TrainingStopped,
    TrainState,
    load_resumable_checkpoint,
    log,
)
from training.engine.sampler import EpochSampler

CHECKPOINT_FORMAT = "train_adafocus/1"


def build_optimizer(model: AdaFocusV2, config: TrainConfig) -> torch.optim.Optimizer:
    """Parameter groups per part (policy, global, local, classifier + heads), each with its lr multiplier."""
    parts = [
        (model.policy, config.lr_policy),
        (model.global_net, config.lr_global),
        (model.local_net, config.lr_local),
    ]
    groups: list[dict] = []
    claimed: set[int] = set()
    for module, scale in parts:
        if module is not None:
            groups += parameter_groups(module, config.weight_decay, scale)
            claimed |= {id(p) for p in module.parameters()}
    rest = nn.ParameterList([p for p in model.parameters() if id(p) not in claimed])
    groups += parameter_groups(rest, config.weight_decay, config.lr_classifier)
    if config.optimizer == "adamw":
        return torch.optim.AdamW(groups, lr=config.lr)
    if config.optimizer == "sgd":
        return torch.optim.SGD(groups, lr=config.lr, momentum=config.momentum, nesterov=True)
    raise ValueError(f"unknown optimizer {config.optimizer!r}; use adamw or sgd")


def frame_geometry(config: TrainConfig, synthetic: bool) -> FrameGeometry:
    resize = config.resize
    if resize is None:
        resize = config.frame_size if synthetic else round(config.frame_size * 8 / 7)
    return FrameGeometry(resize, config.frame_size)


class AdaFocusTrainer:
    """One training run (one process of it, under ``torchrun``)."""

    def __init__(self, config: TrainConfig, dist: DistContext | None = None, stop: StopRequest | None = None) -> None:
        self.config = config
        self.dist = dist or DistContext()
        self.device = self.dist.device
        self.stop = stop or StopRequest()
        self.run_dir = Path(config.out)
        if config.batch_size % self.dist.world_size:
            raise ValueError(f"batch size {config.batch_size} does not split over {self.dist.world_size} processes")
        self.local_batch = config.batch_size // self.dist.world_size
        torch.manual_seed(config.seed)
        self._build_data()
        self.model = AdaFocusV2(config.model_config(len(self.classes))).to(self.device)
        self.optimizer = build_optimizer(self.model, config)
        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.steps_per_epoch = len(self.splits.train) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.splits.train)} training videos is fewer than one batch of {config.batch_size}")
        self.total_steps = config.epochs * self.steps_per_epoch
        self.warmup_steps = int(config.warmup_epochs * self.steps_per_epoch)
        self.base_lr = config.lr
        self.state = TrainState()
        self.generator = torch.Generator(device=self.device).manual_seed(config.seed * 7919 + self.dist.rank)

    # -- data ---------------------------------------------------------------------------
    def _build_data(self) -> None:
        config = self.config
        # Rank 0 generates the synthetic data (if needed) before the others look for it.
        if self.dist.is_main:
            self.splits: VideoSplits = load_splits(config.data, config.calibration_fraction, config.seed)
        self.dist.barrier()
        if not self.dist.is_main:
            self.splits = load_splits(config.data, config.calibration_fraction, config.seed)
        self.classes = self.splits.classes
        self.multi_label = self.splits.multi_label
        self.geometry = frame_geometry(config, synthetic=config.data is None)
        cache = FrameCache(config.frame_cache, int(config.frame_cache_gb * 2**30)) if config.frame_cache else None

        def dataset(samples, train: bool) -> VideoDataset:
            return VideoDataset(
                samples,
                len(self.classes),
                config.num_frames,
                self.geometry,
                train=train,
                seed=config.seed,
                multi_label=self.multi_label,
                cache=cache,  # unreadable videos come back flagged; _note_bad_files decides
            )

        self.train_set = dataset(self.splits.train, True)
        self.calibration_set = dataset(self.splits.calibration, False)
        self.test_set = dataset(self.splits.test, False) if self.splits.test else None
        self.sampler = EpochSampler(
            len(self.train_set), seed=config.seed, rank=self.dist.rank, world_size=self.dist.world_size
        )

    def _train_loader(self) -> DataLoader:
        workers = self.config.workers
        return DataLoader(
            self.train_set,
            batch_size=self.local_batch,
            sampler=self.sampler,
            num_workers=workers,
            drop_last=True,
            pin_memory=self.device.type == "cuda",
            # FFmpeg's threads and fork() do not mix: workers start from a clean process.
            multiprocessing_context="forkserver" if workers > 0 else None,
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    # -- checkpoints --------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        self.state.charge_time()  # the checkpoint carries the training time so far
        bad_files = set().union(*self.dist.all_gather(self.state.bad_files))
        self.state.bad_files = bad_files
        if not self.dist.is_main:
            return
        atomic_save(self.checkpoint_payload(), self.checkpoint_path)

    def checkpoint_payload(self) -> dict[str, Any]:
        return {
            "format": CHECKPOINT_FORMAT,
            "config": dataclasses.asdict(self.config),
            "classes": self.classes,
            "model": self.model.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            **self.state.as_checkpoint(),
            "rng": rng_state(),
            "generator": self.generator.get_state(),
        }

    def maybe_resume(self) -> bool:
        """Load ``checkpoint.pt`` from the run folder unless ``restart``; True if resumed."""
        checkpoint = load_resumable_checkpoint(
            self.checkpoint_path, CHECKPOINT_FORMAT, "an AdaFocus training checkpoint", self.config
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
        if self.device.type == "cpu":
            self.generator.set_state(checkpoint["generator"])

    # -- training -----------------------------------------------------------------------
    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    def _branches(self) -> tuple[str, ...]:
        focus = self.model.focus_mode
        if focus == "policy" and self.config.random_patch_branch:
            return ("policy", "random")
        return (focus,) if focus is not None else (None,)

    def train_step(self, clips: torch.Tensor, target: torch.Tensor, valid: torch.Tensor) -> float | None:
        """One optimiser step on the readable videos of the batch; ``None`` if there were none."""
        self.model.train()
        any_valid = bool(valid.any())
        if any_valid:
            clips, target = clips[valid], target[valid]
        # Under DDP every process must take part in each step, even with nothing readable:
        # it then runs the batch with a zero loss.
        elif not self.dist.enabled:
            return None
        clips = clips.to(self.device, non_blocking=True)
        target = target.to(self.device, non_blocking=True)
        branches = self._branches()
        with self._autocast():
            outputs = self.train_model(
                clips, branches if branches != (None,) else None, self.config.stop_gradient, self.generator
            )
        outputs = (outputs,) if isinstance(outputs, ClipOutput) else outputs  # (a NamedTuple is a tuple too)
        loss, _ = adafocus_loss(
            outputs, target, self.multi_label, self.config.auxiliary_losses, self.config.label_smoothing
        )
        if not any_valid:
            loss = loss * 0.0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()) if any_valid else None

    def _note_bad_files(self, valid: torch.Tensor, indices: torch.Tensor, dataset: VideoDataset) -> None:
        self.note_skipped(indices[~valid].tolist(), dataset)

    def note_skipped(self, indices: list[int], dataset: VideoDataset) -> None:
        """Record unreadable videos (or stop, with ``strict_data``)."""
        for index in indices:
            path = str(dataset.samples[index].path)
            if self.config.strict_data:
                raise BadDataError(f"cannot read video {path}")
            if path not in self.state.bad_files:
                log(f"warning: skipping unreadable video {path}")
            self.state.bad_files.add(path)

    def evaluate(self, dataset: VideoDataset) -> dict[str, Any]:
        """Accuracy after the last step (and every step) on ``dataset``; rank 0 only."""
        predictions = collect(self.model, dataset, self.config.eval_batch_size, 0, self.device, seed=self.config.seed)
        self.note_skipped(predictions.skipped, dataset)
        per_step = step_metrics(predictions, self.multi_label)
        return {"final": per_step[-1], "per_step": per_step, "videos": len(predictions.logits)}

    def record_extras(self) -> dict[str, Any]:
        """Entries added to each epoch's record in ``metrics.json`` (a subclass's stage, say)."""
        return {}

    def metrics_history(self) -> list[dict[str, Any]]:
        """What ``metrics.json`` holds: every epoch record of the run."""
        return self.state.history

    def _evaluated(self, epoch: int) -> bool:
        return any(record["epoch"] == epoch + 1 for record in self.state.history)

    def _end_of_epoch(self, epoch: int) -> None:
        losses = self.dist.all_gather(self.state.epoch_losses)
        flat = [loss for rank_losses in losses for loss in rank_losses]
        self.state.epoch_losses = []
        if self.dist.is_main:
            record: dict[str, Any] = {
                **self.record_extras(),
                "epoch": epoch + 1,
                "step": self.state.step,
                "train_loss": sum(flat) / len(flat) if flat else None,
                "calibration": self.evaluate(self.calibration_set),
            }
            self.state.history.append(record)
            metric = "mAP" if self.multi_label else "top1"
            epochs = self.total_steps // self.steps_per_epoch
            log(
                f"epoch {epoch + 1}/{epochs}: train loss {record['train_loss'] or float('nan'):.3f}, "
                f"calibration {metric} {record['calibration']['final'][metric]:.3f}"
            )
            (self.run_dir / "metrics.json").write_text(json.dumps(self.metrics_history(), indent=2))
        self.state.history = self.dist.broadcast(self.state.history)
        self.save_checkpoint()

    def fit(self) -> None:
        """Train to the end of the schedule (or until stopped, raising :class:`TrainingStopped`)."""
        config = self.config
        loader = self._train_loader()
        bar = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            disable=not (config.progress and self.dist.is_main),
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
                for clips, target, indices, valid in loader:
                    lr = set_learning_rate(
                        self.optimizer,
                        self.base_lr,
                        cosine_with_warmup(self.state.step, self.total_steps, self.warmup_steps),
                    )
                    self._note_bad_files(valid, indices, self.train_set)
                    loss = self.train_step(clips, target, valid)
                    if loss is not None:
                        self.state.epoch_losses.append(loss)
                    self.state.step += 1
                    bar.update()
                    bar.set_postfix(loss=f"{loss:.3f}" if loss is not None else "-", lr=f"{lr:.2g}", epoch=epoch + 1)
                    if self.state.step % self.steps_per_epoch == 0:
                        break  # a resumed epoch's sampler may hold a partial batch more
                    self._maybe_stop_or_checkpoint()
                self._end_of_epoch(epoch)
                self._maybe_stop_or_checkpoint()
        finally:
            self.state.stop_clock()
            bar.close()

    def run_step(self) -> int:
        """Steps done in the whole run (what ``max_steps`` counts)."""
        return self.state.step

    def _maybe_stop_or_checkpoint(self) -> None:
        step = self.state.step
        reason = self.stop.reason
        if reason is None and self.config.max_steps is not None and self.run_step() >= self.config.max_steps:
            reason = f"max_steps={self.config.max_steps}"
        # Every process must agree to stop at the same step.
        reason = self.dist.broadcast(reason)
        if reason is not None and step < self.total_steps:
            self.save_checkpoint()
            raise TrainingStopped(f"stopped by {reason} at step {step}; checkpoint saved to {self.checkpoint_path}")
        if step % self.config.checkpoint_every == 0 and step % self.steps_per_epoch != 0:
            self.save_checkpoint()
