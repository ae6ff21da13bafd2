"""Proximal policy optimisation for AdaFocus V1's stage 2.

One rollout per batch of clips: the policy acts frame by frame, each action earns a reward,
and the discounted returns minus the critic's values are the advantages. The update maximises
PPO's clipped surrogate, fits the critic to the returns and keeps some entropy:

    L = -E[min(r A, clip(r, 1 - e, 1 + e) A)] + c_v E[(R - V)^2] - c_e E[H],   r = pi / pi_old
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor


@dataclass(frozen=True)
class PPOSettings:
    """The paper's values: Adam 3e-4, gamma 0.7, clip 0.2, value 0.5, entropy 0.01, 1 epoch."""

    lr: float = 3e-4
    gamma: float = 0.7
    clip: float = 0.2
    value_coef: float = 0.5
    entropy_coef: float = 0.01
    epochs: int = 1


def discounted_returns(rewards: Tensor, gamma: float) -> Tensor:
    """``R_t = r_t + gamma R_{t+1}`` along the last axis of ``(..., T)`` rewards."""
    returns = torch.zeros_like(rewards)
    running = torch.zeros_like(rewards[..., 0])
    for t in range(rewards.shape[-1] - 1, -1, -1):
        running = rewards[..., t] + gamma * running
        returns[..., t] = running
    return returns


def ppo_loss(
    log_prob: Tensor,
    old_log_prob: Tensor,
    advantages: Tensor,
    values: Tensor,
    returns: Tensor,
    entropy: Tensor,
    settings: PPOSettings,
) -> tuple[Tensor, dict[str, float]]:
    """The PPO objective to minimise, and its terms for logging (all inputs of one shape)."""
    ratio = torch.exp(log_prob - old_log_prob)
    clipped = ratio.clamp(1 - settings.clip, 1 + settings.clip)
    policy_loss = -torch.minimum(ratio * advantages, clipped * advantages).mean()
    value_loss = (returns - values).pow(2).mean()
    entropy_mean = entropy.mean()
    loss = policy_loss + settings.value_coef * value_loss - settings.entropy_coef * entropy_mean
    return loss, {
        "policy": float(policy_loss.detach()),
        "value": float(value_loss.detach()),
        "entropy": float(entropy_mean.detach()),
    }


def normalise_advantages(advantages: Tensor) -> Tensor:
    """Zero mean, unit variance (a common PPO stabiliser; left alone for a single value)."""
    if advantages.numel() < 2:
        return advantages
    return (advantages - advantages.mean()) / (advantages.std() + 1e-8)
