"""Video classifiers that predict after every frame, with their running state explicit.

Each classifier is called once per frame with the pooled features of that frame, its
state from the previous frame and the step index; it returns the logits after this frame
and the new state. Keeping the state explicit lets the same module train on whole clips,
evaluate with early exit, and export as a single-step graph for the service, where frames
of different videos (at different steps) share a batch.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class PoolingClassifier(nn.Module):
    """Per-frame MLP, element-wise running max over frames, and a linear head per step.

    ``z_t = ReLU(BN(Linear(x_t)))``, ``m_t = max(m_{t-1}, z_t)`` (``m_{-1} = 0``, exact since
    ``z >= 0``), ``logits_t = head_t(dropout(m_t))``. With ``shared_head`` one head serves every
    step, which frees the model from a fixed number of frames.
    """

    def __init__(
        self,
        in_features: int,
        width: int,
        num_classes: int,
        num_steps: int,
        dropout: float = 0.2,
        shared_head: bool = False,
    ) -> None:
        super().__init__()
        self.width = width
        self.num_steps = num_steps
        self.shared_head = shared_head
        self.embed = nn.Sequential(nn.Linear(in_features, width), nn.BatchNorm1d(width), nn.ReLU(inplace=True))
        self.dropout = nn.Dropout(dropout)
        heads = 1 if shared_head else num_steps
        # Heads as stacked tensors so a batch can mix steps (one gather, exportable to ONNX).
        self.head_weight = nn.Parameter(torch.empty(heads, num_classes, width))
        self.head_bias = nn.Parameter(torch.empty(heads, num_classes))
        self.reset_heads()

    @property
    def state_size(self) -> int:
        return self.width

    def reset_heads(self) -> None:
        bound = 1 / math.sqrt(self.width)  # nn.Linear's default, per head
        nn.init.uniform_(self.head_weight, -bound, bound)
        nn.init.uniform_(self.head_bias, -bound, bound)

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.zeros(batch, self.width, device=device)

    def forward(self, features: Tensor, state: Tensor, step: int | Tensor) -> tuple[Tensor, Tensor]:
        pooled = torch.maximum(state, self.embed(features))
        hidden = self.dropout(pooled)
        if self.shared_head:
            step = 0
        if isinstance(step, int):
            logits = F.linear(hidden, self.head_weight[step], self.head_bias[step])
        else:  # one step index per sample
            weight, bias = self.head_weight[step], self.head_bias[step]  # (N, K, W), (N, K)
            logits = torch.bmm(weight, hidden.unsqueeze(-1)).squeeze(-1) + bias
        return logits, pooled


class RecurrentClassifier(nn.Module):
    """A GRU over the per-frame features and a linear head (AdaFocus V1's classifier)."""

    def __init__(self, in_features: int, width: int, num_classes: int, dropout: float = 0.2) -> None:
        super().__init__()
        self.width = width
        self.rnn = nn.GRUCell(in_features, width)
        self.dropout = nn.Dropout(dropout)
        self.head = nn.Linear(width, num_classes)

    @property
    def state_size(self) -> int:
        return self.width

    def initial_state(self, batch: int, device: torch.device | str = "cpu") -> Tensor:
        return torch.zeros(batch, self.width, device=device)

    def forward(self, features: Tensor, state: Tensor, step: int | Tensor) -> tuple[Tensor, Tensor]:
        state = self.rnn(features, state)
        return self.head(self.dropout(state)), state


def build_classifier(
    kind: str, in_features: int, width: int, num_classes: int, num_steps: int, dropout: float, shared_head: bool
) -> nn.Module:
    if kind == "pooling":
        return PoolingClassifier(in_features, width, num_classes, num_steps, dropout, shared_head)
    if kind == "gru":
        return RecurrentClassifier(in_features, width, num_classes, dropout)
    raise ValueError(f"unknown classifier {kind!r}; use 'pooling' or 'gru'")
