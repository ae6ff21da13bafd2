"""Image classification training (``adafocus-train-image``): one run of the recipe on a folder.

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

from training.checkpoints.pretrained import load_pretrained
from training.data.images import ImageFolderDataset, split_image_folder
from training.data.synthetic_images import generate as generate_synthetic_images
from training.engine.commands import StopRequest, log
from training.engine.distributed import DistContext, resolve_device
from training.engine.ema import ModelEma
from training.engine.loop import TrainingLoop
from training.engine.optim import build_optimizer, parameter_groups
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
    weights: str | None = field(
        default=None,
        metadata=_help(
            "start from these weights (a torchvision ImageNet file, say; docs/import.md); a head of "
            "another class count is reported and left new; not reloaded when the run resumes"
        ),
    )
    weights_format: str = field(
        default="auto", metadata=_help("import format of --weights (auto: recognised from its keys)")
    )
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
    hflip: bool = field(
        default=True,
        metadata=_help("random horizontal flips in training (off for classes a mirror changes: textures, text)"),
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


class ImageTrainer(TrainingLoop):
    """One training run: data, model, optimiser, EMA and condensation on the engine's loop."""

    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_description = "an image-training checkpoint"
    sample_kind = "image"
    progress_lr_format = ".4f"
    config: ImageTrainConfig

    def __init__(self, config: ImageTrainConfig, stop: StopRequest | None = None) -> None:
        super().__init__(config, DistContext(device=resolve_device(config.device)), stop)
        torch.manual_seed(config.seed)
        self._build_data()
        self.model = create_model(config.model, num_classes=len(self.classes), **config.model_kwargs).to(self.device)
        self.condensable = hasattr(self.model, "condense")
        groups = parameter_groups(self.model, config.weight_decay)
        self.optimizer = build_optimizer(groups, "sgd", config.lr, momentum=config.momentum)
        self.ema = ModelEma(self.model, config.ema_decay) if config.ema_decay > 0 else None
        self.plan_schedule(len(self.train_set), config.batch_size, config.epochs, config.warmup_epochs, config.lr)

    def load_weights(self) -> None:
        """Start from ``--weights`` (a fresh run only: a resumed one has its own weights)."""
        if self.config.weights is None:
            return
        for note in load_pretrained(self.model, self.config.weights, self.config.weights_format):
            log(note)
        if self.ema:  # the average starts from the loaded weights, not the random ones
            self.ema = ModelEma(self.model, self.config.ema_decay)

    # -- data ---------------------------------------------------------------------------
    def _build_data(self) -> None:
        config = self.config
        generated = config.data is None
        root = generate_synthetic_images(SYNTHETIC_IMAGES, seed=0) if generated else Path(config.data)
        self.classes, train_samples, val_samples = split_image_folder(root, config.val_fraction, config.seed)
        crop_min = config.crop_scale_min if config.crop_scale_min is not None else (0.35 if generated else 0.08)
        eval_crop = config.eval_crop if config.eval_crop is not None else (1.0 if generated else 0.875)
        self.train_set = ImageFolderDataset(
            train_samples, config.input_size, True, config.seed, (crop_min, 1.0), hflip=config.hflip
        )
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

    def train_loader(self) -> DataLoader:
        return self._loader(self.train_set, self.sampler, drop_last=True)

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint_extras(self) -> dict[str, Any]:
        return {"ema": self.ema.state_dict() if self.ema else None}

    def restore_extras(self, checkpoint: dict[str, Any]) -> None:
        if self.ema and checkpoint["ema"] is not None:
            self.ema.load_state_dict(checkpoint["ema"])

    # -- training -----------------------------------------------------------------------
    def train_batch(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> float | None:
        images, labels, _ = batch
        return self.train_step(images, labels)

    def unreadable(self, batch: tuple[torch.Tensor, torch.Tensor, torch.Tensor]) -> list[int]:
        _, labels, indices = batch
        return indices[labels < 0].tolist()  # the dataset labels an unreadable image -1

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

    def before_step(self) -> None:
        self._condense()

    def after_step(self) -> None:
        if self.ema:
            self.ema.update(self.model, self.state.step)

    def _condense(self) -> None:
        if self.condensable and self.model.condense(self.state.step / self.total_steps):
            stage = int(next(m.stage for m in self.model.modules() if hasattr(m, "group_mask")))
            log(f"step {self.state.step}: condensed to step {stage} of {self.model.groups - 1}")

    # -- evaluation ---------------------------------------------------------------------
    @torch.no_grad()
    def evaluate(self, model: nn.Module) -> dict[str, float]:
        model.eval()
        loader = self._loader(self.val_set, EpochSampler(len(self.val_set), shuffle=False), drop_last=False)
        total, loss_sum, correct1, correct5 = 0, 0.0, 0, 0
        for images, labels, indices in loader:
            self.note_skipped(indices[labels < 0].tolist(), self.val_set)
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

    def evaluate_epoch(self) -> dict[str, Any]:
        evaluation = {"val": self.evaluate(self.model)}
        if self.ema:
            evaluation["val_ema"] = self.evaluate(self.ema.module)
        return evaluation

    def epoch_summary(self, record: dict[str, Any]) -> str:
        summary = f"epoch {record['epoch']}/{self.config.epochs}: val top-1 {record['val']['top1']:.3f}"
        if self.ema:
            summary += f", EMA {record['val_ema']['top1']:.3f}"
        return summary

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
    else:
        trainer.load_weights()
    (trainer.run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
    started = time.perf_counter()
    trainer.fit()
    summary = trainer.finish()
    summary["seconds_this_session"] = round(time.perf_counter() - started, 1)
    return summary
