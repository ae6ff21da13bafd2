"""Train an image classifier (CondenseNetV2 by default) on an image folder.

    python training/train_image.py                 # generated dataset, CIFAR-size CondenseNetV2
    python training/train_image.py --data /data/imagenet --model condensenetv2_a \\
        --input-size 224 --epochs 350 --batch-size 256 --lr 0.4 --warmup-epochs 5

The recipe follows CondenseNetV2's: SGD with Nesterov momentum, no weight decay on BN and
biases, linear warm-up then cosine learning rate, label smoothing, an EMA of the weights
(condensation masks copied, not averaged), and condensation spread over the first half of
training. The run folder holds ``checkpoint.pt`` (rewritten atomically; rerunning the same
command resumes from it), ``metrics.json``, and at the end ``model_converted.pt`` (the
inference form) and ``summary.json``.
"""

from __future__ import annotations

import dataclasses
import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from training.data.images import ImageFolderDataset, split_image_folder
from training.data.synthetic_images import generate as generate_synthetic_images
from training.engine.checkpoint import atomic_save, restore_rng_state, rng_state
from training.engine.ema import ModelEma
from training.engine.optim import build_sgd, cosine_with_warmup, parameter_groups, set_learning_rate
from training.engine.runtime import (
    BadDataError,
    StopRequest,
    TrainingStopped,
    TrainState,
    load_resumable_checkpoint,
    log,
    resolve_device,
)
from training.engine.sampler import EpochSampler
from training.models import create_model
from training.models.serialization import save_backbone

SYNTHETIC_IMAGES = Path("data/synthetic_images")
CHECKPOINT_FORMAT = "train_image/1"


def _help(text: str) -> Any:
    return {"help": text}


@dataclass
class ImageTrainConfig:
    data: str | None = field(
        default=None,
        metadata=_help("image folder (root/<class>/*.jpg or root/{train,val}/<class>); none: a generated dataset"),
    )
    out: str = field(default="runs/image", metadata=_help("run folder"))
    model: str = field(default="condensenetv2_cifar_small", metadata=_help("registry name"))
    model_kwargs: dict = field(default_factory=dict, metadata=_help("extra builder arguments, as JSON"))
    input_size: int = field(default=32, metadata=_help("square input side"))
    epochs: int = field(default=15, metadata=_help("training epochs"))
    batch_size: int = field(default=64, metadata=_help("images per step"))
    lr: float = field(default=0.1, metadata=_help("peak learning rate"))
    momentum: float = field(default=0.9, metadata=_help("SGD Nesterov momentum"))
    weight_decay: float = field(default=4e-5, metadata=_help("weight decay (not on BN or biases)"))
    warmup_epochs: float = field(default=1.0, metadata=_help("linear warm-up length"))
    label_smoothing: float = field(default=0.1, metadata=_help("label smoothing"))
    ema_decay: float = field(default=0.9998, metadata=_help("weight EMA decay (0: off)"))
    crop_scale_min: float | None = field(
        default=None, metadata=_help("smallest random-crop area (none: 0.08, or 0.35 on the generated data)")
    )
    eval_crop: float | None = field(
        default=None, metadata=_help("centre-crop fraction at evaluation (none: 0.875, or 1.0 on the generated data)")
    )
    val_fraction: float = field(
        default=0.1, metadata=_help("share of each class held out when the folder has no val split")
    )
    workers: int = field(default=2, metadata=_help("data-loading processes"))
    seed: int = field(default=0, metadata=_help("random seed"))
    device: str = field(default="auto", metadata=_help("cpu, cuda, cuda:N or auto"))
    checkpoint_every: int = field(default=200, metadata=_help("steps between checkpoints (also at every epoch end)"))
    max_steps: int | None = field(
        default=None, metadata=_help("stop (resumably) after this many steps; the schedule is unchanged")
    )
    restart: bool = field(default=False, metadata=_help("discard an existing checkpoint in --out instead of resuming"))
    strict_data: bool = field(default=False, metadata=_help("stop on an unreadable image instead of skipping it"))
    progress: bool = field(default=True, metadata=_help("show a progress bar"))


class ImageTrainer:
    """One training run: data, model, optimiser, EMA, schedule and checkpoints."""

    def __init__(self, config: ImageTrainConfig, stop: StopRequest | None = None) -> None:
        self.config = config
        self.stop = stop or StopRequest()
        self.run_dir = Path(config.out)
        self.device = resolve_device(config.device)
        torch.manual_seed(config.seed)
        self._build_data()
        self.model = create_model(config.model, num_classes=len(self.classes), **config.model_kwargs).to(self.device)
        self.condensable = hasattr(self.model, "condense")
        groups = parameter_groups(self.model, config.weight_decay)
        self.optimizer = build_sgd(groups, config.lr, momentum=config.momentum)
        self.ema = ModelEma(self.model, config.ema_decay) if config.ema_decay > 0 else None
        self.steps_per_epoch = len(self.train_set) // config.batch_size
        if self.steps_per_epoch == 0:
            raise ValueError(f"{len(self.train_set)} training images is fewer than one batch of {config.batch_size}")
        self.total_steps = config.epochs * self.steps_per_epoch
        self.warmup_steps = int(config.warmup_epochs * self.steps_per_epoch)
        self.state = TrainState()

    # -- data ---------------------------------------------------------------------------
    def _build_data(self) -> None:
        config = self.config
        generated = config.data is None
        root = generate_synthetic_images(SYNTHETIC_IMAGES, seed=0) if generated else Path(config.data)
        self.classes, train_samples, val_samples = split_image_folder(root, config.val_fraction, config.seed)
        crop_min = config.crop_scale_min if config.crop_scale_min is not None else (0.35 if generated else 0.08)
        eval_crop = config.eval_crop if config.eval_crop is not None else (1.0 if generated else 0.875)
        self.train_set = ImageFolderDataset(train_samples, config.input_size, True, config.seed, (crop_min, 1.0))
        self.val_set = ImageFolderDataset(
            val_samples, config.input_size, False, config.seed, eval_crop_fraction=eval_crop
        )
        self.sampler = EpochSampler(len(self.train_set), seed=config.seed)

    def _loader(self, dataset: ImageFolderDataset, sampler: EpochSampler, drop_last: bool) -> DataLoader:
        return DataLoader(
            dataset,
            batch_size=self.config.batch_size,
            sampler=sampler,
            num_workers=self.config.workers,
            multiprocessing_context="forkserver" if self.config.workers > 0 else None,  # no fork under threads
            drop_last=drop_last,
            pin_memory=self.device.type == "cuda",
            # A private generator: creating an iterator must not draw from the global RNG,
            # or a resumed run would diverge from an uninterrupted one.
            generator=torch.Generator().manual_seed(self.config.seed),
        )

    # -- checkpoints --------------------------------------------------------------------
    @property
    def checkpoint_path(self) -> Path:
        return self.run_dir / "checkpoint.pt"

    def save_checkpoint(self) -> None:
        self.state.charge_time()  # the checkpoint carries the training time so far
        atomic_save(
            {
                "format": CHECKPOINT_FORMAT,
                "config": dataclasses.asdict(self.config),
                "classes": self.classes,
                "model": self.model.state_dict(),
                "ema": self.ema.state_dict() if self.ema else None,
                "optimizer": self.optimizer.state_dict(),
                **self.state.as_checkpoint(),
                "rng": rng_state(),
            },
            self.checkpoint_path,
        )

    def maybe_resume(self) -> bool:
        """Load ``checkpoint.pt`` from the run folder unless ``restart``; True if resumed."""
        checkpoint = load_resumable_checkpoint(
            self.checkpoint_path, CHECKPOINT_FORMAT, "an image-training checkpoint", self.config
        )
        if checkpoint is None:
            return False
        self.model.load_state_dict(checkpoint["model"])
        if self.ema and checkpoint["ema"] is not None:
            self.ema.load_state_dict(checkpoint["ema"])
        self.optimizer.load_state_dict(checkpoint["optimizer"])
        self.state = TrainState.from_checkpoint(checkpoint)
        restore_rng_state(checkpoint["rng"])
        return True

    # -- training -----------------------------------------------------------------------
    def train_step(self, images: torch.Tensor, labels: torch.Tensor) -> float | None:
        """One optimiser step; ``None`` when every image of the batch was unreadable."""
        if not bool((labels >= 0).any()):
            return None
        self.model.train()
        logits = self.model(images.to(self.device, non_blocking=True)).logits
        loss = F.cross_entropy(
            logits, labels.to(self.device), label_smoothing=self.config.label_smoothing, ignore_index=-1
        )
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _note_bad_files(self, labels: torch.Tensor, indices: torch.Tensor, dataset: ImageFolderDataset) -> None:
        for index in indices[labels < 0].tolist():
            path = str(dataset.samples[index].path)
            if self.config.strict_data:
                raise BadDataError(f"cannot read image {path}")
            if path not in self.state.bad_files:
                log(f"warning: skipping unreadable image {path}")
            self.state.bad_files.add(path)

    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        loader = self._loader(self.val_set, EpochSampler(len(self.val_set), shuffle=False), drop_last=False)
        total, loss_sum, correct1, correct5 = 0, 0.0, 0, 0
        for images, labels, indices in loader:
            self._note_bad_files(labels, indices, self.val_set)
            keep = labels >= 0
            logits = model(images[keep].to(self.device)).logits.float().cpu()
            labels = labels[keep]
            loss_sum += float(F.cross_entropy(logits, labels, reduction="sum"))
            top = logits.topk(min(5, logits.shape[1]), dim=1).indices
            correct1 += int((top[:, 0] == labels).sum())
            correct5 += int((top == labels[:, None]).any(1).sum())
            total += len(labels)
        total = max(total, 1)
        return {"loss": loss_sum / total, "top1": correct1 / total, "top5": correct5 / total}

    def _condense(self) -> None:
        if self.condensable and self.model.condense(self.state.step / self.total_steps):
            stage = int(next(m.stage for m in self.model.modules() if hasattr(m, "group_mask")))
            log(f"step {self.state.step}: condensed to step {stage} of {self.model.groups - 1}")

    def _evaluated(self, epoch: int) -> bool:
        return any(record["epoch"] == epoch + 1 for record in self.state.history)

    def _end_of_epoch(self, epoch: int) -> None:
        losses = self.state.epoch_losses
        record: dict[str, Any] = {
            "epoch": epoch + 1,
            "step": self.state.step,
            "train_loss": sum(losses) / len(losses) if losses else None,
            "val": self.evaluate(self.model),
        }
        self.state.epoch_losses = []
        if self.ema:
            record["val_ema"] = self.evaluate(self.ema.module)
        self.state.history.append(record)
        summary = f"epoch {epoch + 1}/{self.config.epochs}: val top-1 {record['val']['top1']:.3f}"
        if self.ema:
            summary += f", EMA {record['val_ema']['top1']:.3f}"
        log(summary)
        (self.run_dir / "metrics.json").write_text(json.dumps(self.state.history, indent=2))
        self.save_checkpoint()

    def fit(self) -> None:
        """Train to the end of the schedule (or until stopped, raising :class:`TrainingStopped`)."""
        config = self.config
        loader = self._loader(self.train_set, self.sampler, drop_last=True)
        bar = tqdm(
            total=self.total_steps,
            initial=self.state.step,
            disable=not config.progress,
            unit="step",
            dynamic_ncols=True,
        )
        self.state.start_clock()
        try:
            while self.state.step < self.total_steps:
                epoch, done_in_epoch = divmod(self.state.step, self.steps_per_epoch)
                if done_in_epoch == 0 and epoch > 0 and not self._evaluated(epoch - 1):
                    self._end_of_epoch(epoch - 1)  # stopped right at an epoch's end last time
                self.sampler.set_epoch(epoch, start=done_in_epoch * config.batch_size)
                for images, labels, indices in loader:
                    self._condense()
                    lr = set_learning_rate(
                        self.optimizer,
                        config.lr,
                        cosine_with_warmup(self.state.step, self.total_steps, self.warmup_steps),
                    )
                    self._note_bad_files(labels, indices, self.train_set)
                    loss = self.train_step(images, labels)
                    if loss is not None:
                        self.state.epoch_losses.append(loss)
                    if self.ema:
                        self.ema.update(self.model, self.state.step)
                    self.state.step += 1
                    bar.update()
                    bar.set_postfix(loss=f"{loss:.3f}" if loss is not None else "-", lr=f"{lr:.4f}", epoch=epoch + 1)
                    self._maybe_stop_or_checkpoint()
                self._end_of_epoch(epoch)
            if not self._evaluated(self.total_steps // self.steps_per_epoch - 1):
                self._end_of_epoch(self.total_steps // self.steps_per_epoch - 1)
        finally:
            self.state.stop_clock()
            bar.close()

    def _maybe_stop_or_checkpoint(self) -> None:
        step = self.state.step
        reason = self.stop.reason
        if reason is None and self.config.max_steps is not None and step >= self.config.max_steps:
            reason = f"max_steps={self.config.max_steps}"
        if reason is not None:
            self.save_checkpoint()
            raise TrainingStopped(f"stopped by {reason} at step {step}; checkpoint saved to {self.checkpoint_path}")
        if step % self.config.checkpoint_every == 0 and step % self.steps_per_epoch != 0:
            self.save_checkpoint()

    # -- the end ------------------------------------------------------------------------
    def finish(self) -> dict[str, Any]:
        """Pick the better of the raw and EMA weights on val, convert it, write the summary."""
        if self.condensable and self.model.condense(1.0):
            log("warning: the run was too short to reach full condensation; finished it now")
        if self.ema:
            self.ema.sync_buffers(self.model)
        candidates = {"raw": self.model}
        if self.ema:
            candidates["ema"] = self.ema.module
        scores = {name: self.evaluate(m) for name, m in candidates.items()}
        chosen = max(scores, key=lambda name: scores[name]["top1"])
        final = candidates[chosen].eval()
        if self.condensable:
            final = final.convert()
        converted_val = self.evaluate(final)
        model_kwargs = {"num_classes": len(self.classes), **self.config.model_kwargs}
        save_backbone(final, self.run_dir / "model_converted.pt", self.config.model, model_kwargs, classes=self.classes)
        summary = {
            "model": self.config.model,
            "steps": self.state.step,
            "weights": chosen,
            "val": scores,
            "val_converted": converted_val,
            "converted": bool(getattr(final, "converted", False)),
            "unreadable_images": sorted(self.state.bad_files),
            "classes": self.classes,
            # Over every session of the run (NaN if it resumed from a checkpoint that did not record it).
            "train_seconds": round(self.state.train_seconds, 1),
            "train_cpu_seconds": round(self.state.train_cpu_seconds, 1),
        }
        (self.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary


def train(config: ImageTrainConfig, stop: StopRequest | None = None) -> dict[str, Any]:
    """Run (or resume) training to the end; returns the summary written to ``summary.json``."""
    trainer = ImageTrainer(config, stop)
    trainer.run_dir.mkdir(parents=True, exist_ok=True)
    if trainer.maybe_resume():
        log(f"resuming {trainer.checkpoint_path} at step {trainer.state.step} of {trainer.total_steps}")
    (trainer.run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    started = time.perf_counter()
    trainer.fit()
    summary = trainer.finish()
    summary["seconds_this_session"] = round(time.perf_counter() - started, 1)
    return summary
