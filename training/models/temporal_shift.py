"""Temporal shift (TSM, Lin et al., 2019) and its insertion into our ResNet and MobileNetV2.

A 2D backbone run over the ``N * T`` frames of ``N`` clips (frames of a clip consecutive in
the batch) exchanges information between neighbouring frames by shifting part of the
channels along time before a convolution: the first ``C // n_div`` channels take the *next*
frame's values, the following ``C // n_div`` the *previous* frame's, the rest stay; a frame
without a neighbour on that side gets zeros. That is TSM's bidirectional, zero-padded
("offline") shift, which the AdaFocusV2 Something-Something and Jester models use: every
frame's output depends on its neighbours, so a clip must be complete before any answer.

The shift is plain slicing and concatenation (no in-place index assignment): it traces to
ONNX as Slice/Concat, and the clip count is the one dynamic dimension (``-1`` in a reshape).

The helpers wrap a block's first convolution in :class:`TemporalShift` (``net`` holds the
wrapped module, as in TSM: ``conv1`` becomes ``conv1.net``), so load ImageNet weights into
the plain backbone *before* inserting the shifts, or map the keys.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .mobilenetv2 import InvertedResidual, MobileNetV2
from .resnet import ResNet


def temporal_shift(x: Tensor, num_segments: int, n_div: int = 8) -> Tensor:
    """Shift ``(N * T, C, H, W)`` frames along time (``T = num_segments``).

    ``out[n, t, :f] = x[n, t + 1, :f]`` (zeros at ``t = T - 1``), ``out[n, t, f:2f] =
    x[n, t - 1, f:2f]`` (zeros at ``t = 0``), the other channels unchanged; ``f = C // n_div``.
    """
    if x.dim() != 4:
        raise ValueError(f"temporal_shift takes (N*T, C, H, W) frames, got shape {tuple(x.shape)}")
    _, channels, height, width = x.shape
    fold = channels // n_div
    if fold == 0:  # fewer channels than n_div: nothing moves (TSM's slices are empty too)
        return x
    clips = x.reshape(-1, num_segments, channels, height, width)
    if num_segments == 1:  # both shifted groups have no neighbour: zeros
        moved = torch.zeros_like(clips[:, :, : 2 * fold])
        return torch.cat((moved, clips[:, :, 2 * fold :]), dim=2).reshape(x.shape)
    backward = clips[:, :, :fold]  # channels that read the next frame
    forward = clips[:, :, fold : 2 * fold]  # channels that read the previous frame
    from_next = torch.cat((backward[:, 1:], torch.zeros_like(backward[:, :1])), dim=1)
    from_previous = torch.cat((torch.zeros_like(forward[:, :1]), forward[:, :-1]), dim=1)
    out = torch.cat((from_next, from_previous, clips[:, :, 2 * fold :]), dim=2)
    return out.reshape(x.shape)


class TemporalShift(nn.Module):
    """``net(temporal_shift(x))``: a module (a block's first conv) run on time-shifted frames."""

    def __init__(self, net: nn.Module, num_segments: int, n_div: int = 8) -> None:
        super().__init__()
        if num_segments < 1 or n_div < 1:
            raise ValueError(f"num_segments ({num_segments}) and n_div ({n_div}) must be positive")
        self.net = net
        self.num_segments = num_segments
        self.n_div = n_div

    def forward(self, x: Tensor) -> Tensor:
        return self.net(temporal_shift(x, self.num_segments, self.n_div))

    def extra_repr(self) -> str:
        return f"num_segments={self.num_segments}, n_div={self.n_div}"


def shift_resnet(model: ResNet, num_segments: int, n_div: int = 8) -> ResNet:
    """Insert the shift before every residual block's first conv (TSM's ``blockres``), in place.

    As in TSM, a ResNet with 23 or more blocks in its third stage (ResNet-101, -152) shifts
    every other block only. Returns ``model``.
    """
    stages = list(model.stages)
    every = 2 if len(stages[2]) >= 23 else 1
    for stage in stages:
        for index, block in enumerate(stage):
            if index % every == 0:
                _wrap_first(block, "conv1", num_segments, n_div)
    return model


def shift_mobilenetv2(model: MobileNetV2, num_segments: int, n_div: int = 8) -> MobileNetV2:
    """Insert the shift before the expansion conv of every residual inverted-residual block, in place.

    TSM's MobileNetV2 placement: blocks with an expansion layer and a residual connection
    (10 of the 17 blocks at width 1.0). Returns ``model``.
    """
    for module in model.features:
        if isinstance(module, InvertedResidual) and module.use_residual and len(module.block) == 3:
            _wrap_first(module.block, "0", num_segments, n_div)
    return model


def _wrap_first(parent: nn.Module, name: str, num_segments: int, n_div: int) -> None:
    child = getattr(parent, name) if not name.isdigit() else parent[int(name)]
    if isinstance(child, TemporalShift):
        raise ValueError("the block is already temporally shifted")
    wrapped = TemporalShift(child, num_segments, n_div)
    if name.isdigit():
        parent[int(name)] = wrapped
    else:
        setattr(parent, name, wrapped)


def count_shifts(model: nn.Module) -> int:
    """How many :class:`TemporalShift` modules ``model`` holds."""
    return sum(isinstance(m, TemporalShift) for m in model.modules())
