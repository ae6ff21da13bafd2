"""AdaFocus (V1) policies: recurrent actor-critics trained with PPO (stage 2).

Both read the global network's feature map one frame at a time, as AdaFocusV2's policy does,
and share its interface for inference: ``policy(features, state) -> (location, next_state)``
with the location in ``(0, 1)^2`` (``(x, y)``; the patch's top-left corner is
``location * (frame - patch)``). So a trained V1 model evaluates, exits early and exports
exactly like a V2 model. For training they also expose ``act`` (sample an action, with its
log-probability, the critic's value and the entropy) and ``evaluate`` (the same for given
actions: PPO's second pass).

* :class:`GridPolicy`: a categorical distribution over a ``g x g`` grid of patch corners
  (the paper's 7x7, corners ``{0, 1/6, ..., 1}^2 * (W - P)``); inference takes the argmax.
* :class:`GaussianPolicy`: a Gaussian over the location (fixed std, the paper's 0.25 in
  location units); inference takes the mean.

Frame skipping (the V1 paper's temporal extension, ``skip=True`` on the grid policy) is a second,
separate decision per frame: a Bernoulli "skip the focus" head beside the corner's categorical.
It reads the GRU state *and the classifier's confidence so far* (its top probability after the
previous frame): the glance alone cannot tell whether a patch would still change the prediction,
and a skip action that sees only the glance ends all-or-nothing (it skipped every frame or none,
whatever the cost; docs/results/v1-vs-v2.md).
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor, nn
from torch.distributions import Bernoulli, Categorical, Normal


class PolicyStep(NamedTuple):
    """One step of an actor-critic for a batch of frames."""

    action: Tensor  # (N,) grid index, (N, 2) [grid index, skipped] with skipping, (N, 2) location (Gaussian)
    log_prob: Tensor  # (N,)
    value: Tensor  # (N,) the critic's estimate of the return from here
    entropy: Tensor  # (N,)
    location: Tensor  # (N, 2) in [0, 1]^2
    state: Tensor  # (N, hidden) the GRU state after this frame


class _RecurrentActorCritic(nn.Module):
    """Conv1x1 -> ReLU -> flatten -> Linear -> ReLU -> GRU cell, then an actor and a critic head."""

    def __init__(self, in_channels: int, map_size: tuple[int, int], conv_channels: int, hidden_size: int) -> None:
        super().__init__()
        self.hidden_size = hidden_size
        self.map_size = tuple(map_size)
        self.encode = nn.Sequential(
            nn.Conv2d(in_channels, conv_channels, 1),
            nn.ReLU(inplace=True),
            nn.Flatten(),
            nn.Linear(conv_channels * map_size[0] * map_size[1], hidden_size),
            nn.ReLU(inplace=True),
        )
        self.rnn = nn.GRUCell(hidden_size, hidden_size)
        self.critic = nn.Linear(hidden_size, 1)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.zeros(batch, self.hidden_size, device=device)

    def _hidden(self, features: Tensor, state: Tensor) -> Tensor:
        if tuple(features.shape[-2:]) != self.map_size:
            raise ValueError(f"policy expects {self.map_size} feature maps, got {tuple(features.shape[-2:])}")
        return self.rnn(self.encode(features), state)

    def distribution(self, hidden: Tensor, confidence: Tensor | None = None):
        raise NotImplementedError

    def location_of(self, action: Tensor) -> Tensor:
        raise NotImplementedError

    def act(
        self,
        features: Tensor,
        state: Tensor,
        generator: torch.Generator | None = None,
        greedy: bool = False,
        confidence: Tensor | None = None,
    ) -> PolicyStep:
        """Sample an action (or take the most likely one with ``greedy``) for one frame.
        ``confidence`` ``(N,)``: the classifier's top probability so far (a skipping policy's input)."""
        hidden = self._hidden(features, state)
        distribution = self.distribution(hidden, confidence)
        action = self.greedy_action(distribution) if greedy else self.sample(distribution, generator)
        return self._step(hidden, distribution, action)

    def evaluate(self, features: Tensor, state: Tensor, action: Tensor, confidence: Tensor | None = None) -> PolicyStep:
        """Log-probability, value and entropy of a given action (PPO's update pass)."""
        hidden = self._hidden(features, state)
        return self._step(hidden, self.distribution(hidden, confidence), action)

    def _step(self, hidden: Tensor, distribution, action: Tensor) -> PolicyStep:
        return PolicyStep(
            action,
            self.log_prob(distribution, action),
            self.critic(hidden).squeeze(-1),
            self.entropy(distribution),
            self.location_of(action),
            hidden,
        )

    def forward(self, features: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Inference: the most likely location ``(N, 2)`` and the next state (exportable: no
        distribution object, only tensor operations)."""
        hidden = self._hidden(features, state)
        return self.most_likely_location(hidden), hidden

    def most_likely_location(self, hidden: Tensor) -> Tensor:
        raise NotImplementedError


class FocusOrSkip(NamedTuple):
    """A skipping grid policy's distribution for one frame: skip the focus or not, and, if not,
    which corner. Actions are ``(N, 2)`` long tensors ``[corner, skipped]``."""

    corner: Categorical
    skip: Bernoulli

    def log_prob(self, action: Tensor) -> Tensor:
        skipped = action[:, 1].float()
        # A skipped frame's corner is never used, so it takes no part in the action's probability.
        return self.skip.log_prob(skipped) + (1 - skipped) * self.corner.log_prob(action[:, 0])

    def entropy(self) -> Tensor:
        return self.skip.entropy() + (1 - self.skip.probs) * self.corner.entropy()


class GridPolicy(_RecurrentActorCritic):
    """A categorical distribution among ``grid x grid`` patch corners.

    With ``skip``, a separate Bernoulli head decides per frame whether to skip the focus (the
    temporal extension the V1 paper describes): the local network does not run and the
    classifier sees zeros in its place. The head reads the GRU state and the classifier's
    confidence so far (``confidence``, its top probability after the previous frame; 0 before
    the first), so that it can skip where the prediction is already settled.
    """

    def __init__(
        self,
        in_channels: int,
        map_size: tuple[int, int],
        conv_channels: int = 32,
        hidden_size: int = 1024,
        grid: int = 7,
        skip: bool = False,
    ) -> None:
        super().__init__(in_channels, map_size, conv_channels, hidden_size)
        if grid < 2:
            raise ValueError("the grid needs at least 2 x 2 corners")
        self.grid = grid
        self.can_skip = skip
        self.actor = nn.Linear(hidden_size, grid * grid)
        self.skip_head = nn.Linear(hidden_size + 1, 1) if skip else None
        steps = torch.arange(grid, dtype=torch.float32) / (grid - 1)
        ys, xs = torch.meshgrid(steps, steps, indexing="ij")
        # Action k is row k // grid, column k % grid: location (x, y) = (column, row) / (grid - 1).
        self.register_buffer("corners", torch.stack([xs.flatten(), ys.flatten()], dim=1), persistent=False)

    def skip_logit(self, hidden: Tensor, confidence: Tensor | None) -> Tensor:
        """``(N,)`` logit of skipping the focus on this frame."""
        if confidence is None:
            confidence = hidden.new_zeros(hidden.shape[0])
        return self.skip_head(torch.cat([hidden, confidence.to(hidden.dtype)[:, None]], dim=1)).squeeze(1)

    def skips(self, action: Tensor) -> Tensor:
        """Per frame: did the action skip the focus (always False without skipping)."""
        return (
            action[:, 1].bool()
            if self.can_skip
            else torch.zeros(action.shape[0], dtype=torch.bool, device=action.device)
        )

    def decide(
        self, features: Tensor, state: Tensor, confidence: Tensor | None = None
    ) -> tuple[Tensor, Tensor, Tensor]:
        """Inference with skipping: ``(location, skipped (N,) bool, next state)``; a frame is skipped
        where skipping is the more likely decision."""
        hidden = self._hidden(features, state)
        skipped = self.skip_logit(hidden, confidence) > 0
        return self.most_likely_location(hidden), skipped, hidden

    def distribution(self, hidden: Tensor, confidence: Tensor | None = None) -> Categorical | FocusOrSkip:
        corner = Categorical(logits=self.actor(hidden).float())
        if not self.can_skip:
            return corner
        return FocusOrSkip(corner, Bernoulli(logits=self.skip_logit(hidden, confidence).float()))

    @staticmethod
    def sample(distribution: Categorical | FocusOrSkip, generator: torch.Generator | None) -> Tensor:
        # Categorical.sample takes no generator: draw through multinomial for reproducibility.
        if isinstance(distribution, Categorical):
            return torch.multinomial(distribution.probs, 1, generator=generator).squeeze(-1)
        corner = torch.multinomial(distribution.corner.probs, 1, generator=generator).squeeze(-1)
        draw = torch.rand(corner.shape, generator=generator, device=corner.device)
        return torch.stack([corner, (draw < distribution.skip.probs).long()], dim=1)

    @staticmethod
    def greedy_action(distribution: Categorical | FocusOrSkip) -> Tensor:
        if isinstance(distribution, Categorical):
            return distribution.logits.argmax(dim=-1)
        corner = distribution.corner.logits.argmax(dim=-1)
        return torch.stack([corner, (distribution.skip.logits > 0).long()], dim=1)

    @staticmethod
    def log_prob(distribution: Categorical | FocusOrSkip, action: Tensor) -> Tensor:
        return distribution.log_prob(action)

    @staticmethod
    def entropy(distribution: Categorical | FocusOrSkip) -> Tensor:
        return distribution.entropy()

    def location_of(self, action: Tensor) -> Tensor:
        return self.corners[action[:, 0] if self.can_skip else action]

    def most_likely_location(self, hidden: Tensor) -> Tensor:
        return self.corners[self.actor(hidden).argmax(dim=-1)]


class GaussianPolicy(_RecurrentActorCritic):
    """A Gaussian over the location with a fixed standard deviation; samples clipped to [0, 1]."""

    def __init__(
        self,
        in_channels: int,
        map_size: tuple[int, int],
        conv_channels: int = 32,
        hidden_size: int = 1024,
        std: float = 0.25,
    ) -> None:
        super().__init__(in_channels, map_size, conv_channels, hidden_size)
        self.std = std
        self.actor = nn.Linear(hidden_size, 2)

    def distribution(self, hidden: Tensor, confidence: Tensor | None = None) -> Normal:
        mean = torch.sigmoid(self.actor(hidden).float())
        return Normal(mean, torch.full_like(mean, self.std))

    @staticmethod
    def sample(distribution: Normal, generator: torch.Generator | None) -> Tensor:
        noise = torch.randn(distribution.mean.shape, generator=generator, device=distribution.mean.device)
        return distribution.mean + distribution.stddev * noise

    @staticmethod
    def greedy_action(distribution: Normal) -> Tensor:
        return distribution.mean

    @staticmethod
    def log_prob(distribution: Normal, action: Tensor) -> Tensor:
        return distribution.log_prob(action).sum(-1)

    @staticmethod
    def entropy(distribution: Normal) -> Tensor:
        return distribution.entropy().sum(-1)

    def location_of(self, action: Tensor) -> Tensor:
        return action.clamp(0.0, 1.0)

    def most_likely_location(self, hidden: Tensor) -> Tensor:
        return torch.sigmoid(self.actor(hidden))


def build_v1_policy(
    kind: str, in_channels: int, map_size: tuple[int, int], conv_channels: int, hidden_size: int, skip: bool = False
) -> _RecurrentActorCritic:
    if skip and kind != "grid":
        raise ValueError("frame skipping needs the grid policy (a discrete 'skip' action)")
    if kind == "grid":
        return GridPolicy(in_channels, map_size, conv_channels, hidden_size, skip=skip)
    if kind == "gaussian":
        return GaussianPolicy(in_channels, map_size, conv_channels, hidden_size)
    raise ValueError(f"unknown AdaFocus V1 policy {kind!r}; use 'grid' or 'gaussian'")
