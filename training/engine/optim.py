"""Optimiser and learning-rate schedule shared by the training scripts."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any, Literal, get_args

import torch
from torch import nn

OptimizerName = Literal["sgd", "adamw", "adam"]


def parameter_groups(
    model: nn.Module, weight_decay: float, lr_scale: float = 1.0, decay_all: bool = False
) -> list[dict]:
    """The trainable parameters of ``model`` as optimiser groups with ``lr_scale``.

    By default two groups: weights with ``weight_decay``, and BN / bias parameters (one
    dimension or less) without it. ``decay_all=True`` gives one group with ``weight_decay`` on
    every parameter, BN and biases included, as the AdaFocusV2 authors' recipe does.
    """
    params = [param for param in model.parameters() if param.requires_grad]
    if decay_all:
        groups = [{"params": params, "weight_decay": weight_decay, "lr_scale": lr_scale}]
    else:
        groups = [
            {"params": [p for p in params if p.ndim > 1], "weight_decay": weight_decay, "lr_scale": lr_scale},
            {"params": [p for p in params if p.ndim <= 1], "weight_decay": 0.0, "lr_scale": lr_scale},
        ]
    return [g for g in groups if g["params"]]


def build_optimizer(
    params: Iterable[dict[str, Any]] | Iterable[torch.Tensor],
    name: OptimizerName,
    lr: float,
    momentum: float = 0.9,
    nesterov: bool = True,
) -> torch.optim.Optimizer:
    """The optimiser ``name`` over ``params`` (parameter groups, or plain parameters: one group).

    ``sgd`` takes ``momentum`` and ``nesterov``; ``adamw`` and ``adam`` keep PyTorch's betas,
    and their weight decay is whatever each group says (AdamW's default where none does).
    Raises ``ValueError`` for another name.
    """
    params = list(params)
    if name == "sgd":
        return torch.optim.SGD(params, lr=lr, momentum=momentum, nesterov=nesterov)
    if name == "adamw":
        return torch.optim.AdamW(params, lr=lr)
    if name == "adam":
        return torch.optim.Adam(params, lr=lr)
    raise ValueError(f"unknown optimizer {name!r}; use {', '.join(get_args(OptimizerName))}")


def cosine_with_warmup(step: int, total_steps: int, warmup_steps: int) -> float:
    """Learning-rate factor: linear warm-up from ~0 to 1, then cosine decay to 0."""
    if warmup_steps > 0 and step < warmup_steps:
        return (step + 1) / warmup_steps
    span = max(1, total_steps - warmup_steps)
    progress = min(1.0, (step - warmup_steps) / span)
    return 0.5 * (1.0 + math.cos(math.pi * progress))


def set_learning_rate(optimizer: torch.optim.Optimizer, base_lr: float, factor: float) -> float:
    """Set every group's lr to ``base_lr * factor * group['lr_scale']``; returns the base value."""
    lr = base_lr * factor
    for group in optimizer.param_groups:
        group["lr"] = lr * group.get("lr_scale", 1.0)
    return lr
