"""The AdaFocusV2 policy: a recurrent network that picks one patch location per frame."""

from __future__ import annotations

import torch
from torch import Tensor, nn


class PatchPolicy(nn.Module):
    """Global feature map -> patch location in ``(0, 1)^2``, one frame at a time.

    Conv1x1 (no bias) -> BN -> Tanh -> flatten -> Linear -> BN1d -> Tanh -> GRU cell ->
    Linear(2) -> Sigmoid, as in the AdaFocusV2 reference configuration. The GRU state
    carries what earlier frames showed, so the policy can follow a moving object.
    The location is ``(x, y)``: ``x`` along the width, ``y`` along the height.
    """

    def __init__(
        self,
        in_channels: int,
        map_size: tuple[int, int],
        conv_channels: int = 64,
        hidden_size: int = 2048,
    ) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.reduce = nn.Sequential(
            nn.Conv2d(in_channels, conv_channels, 1, bias=False),
            nn.BatchNorm2d(conv_channels),
            nn.Tanh(),
        )
        self.embed = nn.Sequential(
            nn.Linear(conv_channels * map_size[0] * map_size[1], hidden_size),
            nn.BatchNorm1d(hidden_size),
            nn.Tanh(),
        )
        self.rnn = nn.GRUCell(hidden_size, hidden_size)
        self.head = nn.Linear(hidden_size, 2)
        # Start every patch at the centre: a random head can saturate the sigmoid at a
        # corner, where its gradient vanishes and the policy never recovers.
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)
        self.map_size = tuple(map_size)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.zeros(batch, self.hidden_size, device=device)

    def forward(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """One step: ``(location (N, 2), next state (N, hidden))``."""
        if tuple(features.shape[-2:]) != self.map_size:
            raise ValueError(f"policy expects {self.map_size} feature maps, got {tuple(features.shape[-2:])}")
        embedded = self.embed(self.reduce(features).flatten(1))
        state = self.rnn(embedded, state)
        return torch.sigmoid(self.head(state)), state
