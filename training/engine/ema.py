"""Exponential moving average of a model's weights."""

from __future__ import annotations

import copy

import torch
from torch import nn
from torch.nn.modules.batchnorm import _BatchNorm


class ModelEma:
    """Keeps ``module``, an averaged copy of a model.

    Parameters and BatchNorm running statistics are averaged; every other buffer is copied
    from the live model, so structural state such as CondenseNetV2's condensation masks
    follows the model exactly instead of being blurred. The decay warms up as
    ``min(decay, (1 + step) / (10 + step))`` so short runs are not dominated by the
    random initialisation.
    """

    def __init__(self, model: nn.Module, decay: float = 0.9998, warmup: bool = True) -> None:
        self.module = copy.deepcopy(model).eval()
        self.module.requires_grad_(False)
        self.decay = decay
        self.warmup = warmup

    def decay_at(self, step: int) -> float:
        return min(self.decay, (1 + step) / (10 + step)) if self.warmup else self.decay

    @torch.no_grad()
    def update(self, model: nn.Module, step: int) -> None:
        """Average in the live ``model``'s weights after optimiser step ``step``."""
        weight = 1.0 - self.decay_at(step)
        for ema_param, param in zip(self.module.parameters(), model.parameters()):
            ema_param.lerp_(param.detach(), weight)
        self._update_buffers(model, weight)

    @torch.no_grad()
    def sync_buffers(self, model: nn.Module) -> None:
        """Copy the structural buffers (masks, ...) now, without averaging anything."""
        self._update_buffers(model, 0.0)

    def _update_buffers(self, model: nn.Module, weight: float) -> None:
        for ema_module, module in zip(self.module.modules(), model.modules()):
            averaged = {"running_mean", "running_var"} if isinstance(module, _BatchNorm) else set()
            for name, buffer in module.named_buffers(recurse=False):
                ema_buffer = getattr(ema_module, name)
                if name in averaged:
                    ema_buffer.lerp_(buffer, weight)
                else:
                    ema_buffer.copy_(buffer)

    def state_dict(self) -> dict:
        return self.module.state_dict()

    def load_state_dict(self, state: dict) -> None:
        self.module.load_state_dict(state)
