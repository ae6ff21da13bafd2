"""What every AdaFocus trainer shares, on the engine's loop: the video splits and loaders, the
model and its DDP wrapping, evaluation on the calibration split, the random generator of
patches and policies (saved with the checkpoint), mixed precision.

The one-stage V2 trainer (:mod:`.v2.trainer`) and the staged V1 trainer (:mod:`.v1.trainer`)
subclass :class:`AdaFocusTrainerBase` with their optimiser and their step.
"""

from __future__ import annotations

import contextlib
from typing import Any

import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from pipeline.frames.transform import FrameGeometry
from training.adafocus.config import TrainConfig
from training.adafocus.evaluation import collect, step_metrics
from training.adafocus.model import AdaFocusV2
from training.adafocus.v2.policy import PatchPolicy
from training.data.frame_cache import FrameCache
from training.data.splits import VideoSplits, load_splits
from training.data.videos import VideoDataset
from training.engine.commands import StopRequest
from training.engine.distributed import DistContext
from training.engine.loop import TrainingLoop
from training.engine.sampler import EpochSampler

CHECKPOINT_FORMAT = "train_adafocus/1"
CONFIG_OPTIMIZERS = ("adamw", "sgd")  # what --optimizer may name (V1's PPO stage takes Adam itself)

# A batch of the training loader: clips, targets, dataset indices, whether each clip was readable,
# the target boxes of each frame (NaN where the data has none; training.data.videos.VideoItem).
VideoBatch = tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]


def frame_geometry(config: TrainConfig, synthetic: bool) -> FrameGeometry:
    resize = config.resize
    if resize is None:
        resize = config.frame_size if synthetic else round(config.frame_size * 8 / 7)
    return FrameGeometry(resize, config.frame_size)


class AdaFocusTrainerBase(TrainingLoop):
    """One AdaFocus training run (one process of it, under ``torchrun``).

    A subclass sets ``self.optimizer`` and defines :meth:`train_step`.
    """

    checkpoint_format = CHECKPOINT_FORMAT
    checkpoint_description = "an AdaFocus training checkpoint"
    sample_kind = "video"
    config: TrainConfig
    model: AdaFocusV2

    def __init__(self, config: TrainConfig, dist: DistContext | None = None, stop: StopRequest | None = None) -> None:
        super().__init__(config, dist, stop)
        if config.batch_size % self.dist.world_size:
            raise ValueError(f"batch size {config.batch_size} does not split over {self.dist.world_size} processes")
        if config.optimizer not in CONFIG_OPTIMIZERS:
            raise ValueError(f"unknown optimizer {config.optimizer!r}; use {' or '.join(CONFIG_OPTIMIZERS)}")
        torch.manual_seed(config.seed)
        self._build_data()
        self.model = AdaFocusV2(config.model_config(len(self.classes))).to(self.device)
        if config.policy_head_init == "pytorch" and isinstance(self.model.policy, PatchPolicy):
            self.model.policy.head.reset_parameters()  # as the authors' code: PyTorch's default, not zeros
        self.train_model: nn.Module = self.model
        if self.dist.enabled:
            self.train_model = DistributedDataParallel(
                self.model, device_ids=[self.device.index] if self.device.type == "cuda" else None
            )
        self.plan_schedule(len(self.splits.train), config.batch_size, config.epochs, config.warmup_epochs, config.lr)
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
                cache=cache,  # unreadable videos come back flagged; the loop's note_skipped decides
                normalisation=config.normalisation,  # recorded in model.pt and the manifest (finish)
            )

        self.train_set = dataset(self.splits.train, True)
        self.calibration_set = dataset(self.splits.calibration, False)
        self.test_set = dataset(self.splits.test, False) if self.splits.test else None
        self.sampler = EpochSampler(
            len(self.train_set), seed=config.seed, rank=self.dist.rank, world_size=self.dist.world_size
        )

    def train_loader(self) -> DataLoader:
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

    def unreadable(self, batch: VideoBatch) -> list[int]:
        _, _, indices, valid, _ = batch
        return indices[~valid].tolist()

    # -- checkpoints --------------------------------------------------------------------
    def checkpoint_extras(self) -> dict[str, Any]:
        return {"generator": self.generator.get_state()}

    def restore_extras(self, checkpoint: dict[str, Any]) -> None:
        if self.device.type == "cpu":  # on CUDA the generator starts again from its seed
            self.generator.set_state(checkpoint["generator"])

    # -- training -----------------------------------------------------------------------
    def train_batch(self, batch: VideoBatch) -> float | None:
        clips, target, _, valid, boxes = batch
        return self.train_step(clips, target, valid, boxes)

    def train_step(
        self, clips: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, boxes: torch.Tensor | None = None
    ) -> float | None:
        """One optimiser step on the readable videos of the batch; ``None`` if there were none.
        ``boxes``: the frames' target boxes (the oracle baseline's patches)."""
        raise NotImplementedError

    def _autocast(self) -> contextlib.AbstractContextManager:
        if self.config.amp and self.device.type == "cuda":
            return torch.autocast("cuda", dtype=torch.bfloat16)
        return contextlib.nullcontext()

    # -- evaluation ---------------------------------------------------------------------
    def evaluate(self, dataset: VideoDataset) -> dict[str, Any]:
        """Accuracy after the last step (and every step) on ``dataset``; rank 0 only."""
        predictions = collect(self.model, dataset, self.config.eval_batch_size, 0, self.device, seed=self.config.seed)
        self.note_skipped(predictions.skipped, dataset)
        per_step = step_metrics(predictions, self.multi_label)
        return {"final": per_step[-1], "per_step": per_step, "videos": len(predictions.logits)}

    def evaluate_epoch(self) -> dict[str, Any]:
        return {"calibration": self.evaluate(self.calibration_set)}

    def epoch_summary(self, record: dict[str, Any]) -> str:
        metric = "mAP" if self.multi_label else "top1"
        epochs = self.total_steps // self.steps_per_epoch
        return (
            f"epoch {record['epoch']}/{epochs}: train loss {record['train_loss'] or float('nan'):.3f}, "
            f"calibration {metric} {record['calibration']['final'][metric]:.3f}"
        )
