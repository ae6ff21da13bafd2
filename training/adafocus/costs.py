"""Per-frame compute of an AdaFocus model, counted from the model itself.

Each part of one step (glance, policy, focus, classifier) runs once on a single frame
under ``training.macs.count_macs``; nothing is typed in. Costs are MACs (what the papers
call FLOPs). The auxiliary heads are training-only and not counted.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import Tensor, nn

from training.models.macs import count_macs

from .model import AdaFocusV2


@dataclass(frozen=True)
class StepCosts:
    """MACs per frame of each part of one step."""

    glance: int
    policy: int
    focus: int
    classifier: int

    @property
    def total(self) -> int:
        return self.glance + self.policy + self.focus + self.classifier

    def as_dict(self) -> dict[str, int]:
        return {**asdict(self), "total": self.total}

    def video_gmacs(self, frames: int) -> float:
        """GMACs of a video that processes ``frames`` frames."""
        return self.total * frames / 1e9


class _Call(nn.Module):
    """Wrap a function so ``count_macs`` can run it (the caller has put the model in eval mode;
    the model is not a submodule, so ``count_macs`` cannot switch it back to training)."""

    def __init__(self, function) -> None:
        super().__init__()
        self.function = (function,)  # in a tuple: a module here would become a submodule

    def forward(self, *inputs: Tensor):
        return self.function[0](*inputs)


@torch.no_grad()
def step_costs(model: AdaFocusV2) -> StepCosts:
    """MACs of each part of one step of ``model`` (per frame, batch of one)."""
    config = model.config
    was_training = model.training
    model.eval()
    device = next(model.parameters()).device
    frame = torch.zeros(1, 3, config.frame_size, config.frame_size, device=device)
    glance = policy = focus = 0
    features = global_pooled = local_pooled = locations = None
    try:
        if model.uses_global:
            glance = count_macs(_Call(model.glance), frame).total
            features, global_pooled = model.glance(frame)
        if model.policy is not None:
            state = model.policy.initial_state(1, device)
            policy = count_macs(_Call(model.policy), (features, state)).total
            locations, _ = model.policy(features, state)
        elif model.crop is not None:
            locations = torch.full((1, 2), 0.5, device=device)
        if model.uses_local:
            focus = count_macs(_Call(model.focus), (frame, locations) if locations is not None else frame).total
            local_pooled = model.focus(frame, locations)
        fused = model.fuse(global_pooled, local_pooled)
        state = model.classifier.initial_state(1, device)
        classifier = count_macs(_Call(lambda x, s: model.classifier(x, s, 0)), (fused, state)).total
    finally:
        model.train(was_training)
    return StepCosts(glance, policy, focus, classifier)
