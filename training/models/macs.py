"""Count multiply-accumulates (MACs) and parameters from the model itself.

MACs come from ``torch.utils.flop_counter.FlopCounterMode``, which sees every aten op a
forward pass runs; its FLOPs (2 per multiply-accumulate) are halved.

Two counting rules:

* ``standard``: conv and linear (matmul) MACs only; what papers usually call "FLOPs".
* ``paper``: the CondenseNetV2 reference rules, so the paper's totals can be compared
  exactly: on top of ``standard``, ReLU / ReLU6 / h-swish count 1 per output element,
  sigmoid 2 per element, average pooling ``C * Hout * Wout * k^2`` and global pooling
  ``C * H * W``; BN, additions, concatenation, gathers and shuffles count nothing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from math import prod
from typing import Any, Literal

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

aten = torch.ops.aten

Rules = Literal["standard", "paper"]


def _per_output_element(weight: int) -> Callable[..., int]:
    def formula(*args: Any, out_shape: Any = None, **kwargs: Any) -> int:
        return 2 * weight * prod(out_shape)  # FlopCounterMode reports 2 FLOPs per MAC

    return formula


def _avg_pool_formula(x_shape: Any, kernel_size: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    kernel = kernel_size if isinstance(kernel_size, (list, tuple)) else [kernel_size]
    window = prod(kernel) if len(kernel) > 1 else kernel[0] ** 2
    return 2 * prod(out_shape) * window


def _global_pool_formula(x_shape: Any, *args: Any, out_shape: Any = None, **kwargs: Any) -> int:
    return 2 * prod(x_shape)


PAPER_RULES: dict[Any, Callable[..., int]] = {
    aten.relu: _per_output_element(1),
    aten.hardtanh: _per_output_element(1),
    aten.hardswish: _per_output_element(1),
    aten.sigmoid: _per_output_element(2),
    aten.avg_pool2d: _avg_pool_formula,
    aten._adaptive_avg_pool2d: _global_pool_formula,
    aten.mean: _global_pool_formula,
}


@dataclass
class MacsReport:
    """MACs of one forward pass, per sample, in total and by module."""

    total: int
    by_module: dict[str, int] = field(default_factory=dict)

    @property
    def gmacs(self) -> float:
        return self.total / 1e9


def count_macs(
    model: nn.Module,
    inputs: torch.Tensor | tuple[torch.Tensor, ...],
    rules: Rules = "standard",
) -> MacsReport:
    """MACs per sample of ``model(*inputs)``; the batch size of the first input divides the count."""
    if rules not in ("standard", "paper"):
        raise ValueError(f"unknown counting rules {rules!r}; use 'standard' or 'paper'")
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    batch = inputs[0].shape[0]
    counter = FlopCounterMode(display=False, custom_mapping=PAPER_RULES if rules == "paper" else {})
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad(), counter:
            model(*inputs)
    finally:
        model.train(was_training)
    by_module = {name: sum(ops.values()) // (2 * batch) for name, ops in counter.get_flop_counts().items()}
    return MacsReport(total=counter.get_total_flops() // (2 * batch), by_module=by_module)


def count_params(model: nn.Module) -> int:
    """Number of parameters (BatchNorm's weight and bias included, running stats not)."""
    return sum(p.numel() for p in model.parameters())
