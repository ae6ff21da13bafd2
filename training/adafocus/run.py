"""One AdaFocus training run from start to summary: pick the method's trainer, resume, train,
calibrate and test (``finish``), write ``summary.json`` and ``report.md``."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

from training.adafocus.config import TrainConfig
from training.adafocus.finish import finish
from training.adafocus.report import write_run_report
from training.adafocus.v1.trainer import AdaFocusV1Trainer
from training.adafocus.v2.trainer import AdaFocusTrainer
from training.engine.commands import StopRequest, log
from training.engine.distributed import init_distributed, shutdown_distributed
from training.engine.state import cpu_seconds

TRAINERS = {"adafocus_v2": AdaFocusTrainer, "adafocus_v1": AdaFocusV1Trainer}
METHODS = tuple(TRAINERS)


def machine_description(device) -> dict[str, Any]:
    """Where the run trained: results can differ between processors (float summation order)."""
    import torch

    from training.engine.machine import cpu_name

    described = {
        "cpu": cpu_name(),
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "device": str(device),
    }
    if device.type == "cuda":
        described["gpu"] = torch.cuda.get_device_name(device)
    return described


def load_backbone_weights(model, config: TrainConfig, verbose: bool = True) -> None:
    """``--global-weights`` / ``--local-weights`` into the model's two CNNs (a fresh run only:
    a resumed run has its own weights). Every process loads the same file, so DDP replicas agree."""
    from training.checkpoints.pretrained import load_pretrained

    for flag, path, network in (
        ("--global-weights", config.global_weights, model.global_net),
        ("--local-weights", config.local_weights, model.local_net),
    ):
        if path is None:
            continue
        if network is None:
            raise ValueError(f"{flag}: the {config.variant} variant has no such network")
        for note in load_pretrained(network, path, what=flag):
            if verbose:
                log(note)


def train(config: TrainConfig, stop: StopRequest | None = None) -> dict[str, Any] | None:
    """Run (or resume) training to the end; rank 0 returns the summary, other ranks ``None``."""
    if config.method not in METHODS:
        raise ValueError(f"unknown method {config.method!r}; available: {', '.join(METHODS)}")
    dist = init_distributed(config.device)
    try:
        trainer = TRAINERS[config.method](config, dist, stop)
        trainer.run_dir.mkdir(parents=True, exist_ok=True)
        if trainer.maybe_resume():
            log(f"resuming {trainer.checkpoint_path} at step {trainer.state.step} of {trainer.total_steps}")
        else:
            load_backbone_weights(trainer.model, config, dist.is_main)
        if dist.is_main:
            (trainer.run_dir / "config.json").write_text(json.dumps(dataclasses.asdict(config), indent=2))
            for note in trainer.splits.notes:
                log(f"note: {note}")
        started, started_cpu = time.perf_counter(), cpu_seconds()
        trainer.fit()
        train_seconds, train_cpu = time.perf_counter() - started, cpu_seconds() - started_cpu
        if not dist.is_main:
            dist.leave_together()
            return None
        summary = finish(trainer)
        summary["train_seconds_this_session"] = round(train_seconds, 1)
        summary["train_cpu_seconds_this_session"] = round(train_cpu, 1)
        summary["seconds_this_session"] = round(time.perf_counter() - started, 1)
        summary["machine"] = machine_description(trainer.device)
        # Over every session of the run (NaN if it resumed from a checkpoint that did not record it).
        if isinstance(trainer, AdaFocusV1Trainer):
            summary["stage_seconds"] = [round(seconds, 1) for seconds in trainer.stage_seconds]
            summary["stage_cpu_seconds"] = [round(seconds, 1) for seconds in trainer.stage_cpu_seconds]
            summary["train_seconds"] = round(sum(trainer.stage_seconds), 1)
            summary["train_cpu_seconds"] = round(sum(trainer.stage_cpu_seconds), 1)
        else:
            summary["train_seconds"] = round(trainer.state.train_seconds, 1)
            summary["train_cpu_seconds"] = round(trainer.state.train_cpu_seconds, 1)
        (trainer.run_dir / "summary.json").write_text(json.dumps(summary, indent=2))
        write_run_report(trainer.run_dir, summary)
        dist.leave_together()
        return summary
    finally:
        shutdown_distributed(dist)
