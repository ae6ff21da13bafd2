"""Building blocks shared by the backbones, and the common ``Backbone`` contract."""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

ActLayer = Callable[[], nn.Module]


class BackboneOutput(NamedTuple):
    """What every backbone returns.

    features: the final feature map ``(N, feature_channels, h, w)``.
    pooled: the pooled vector ``(N, num_features)`` (the input of the classifier).
    logits: ``(N, num_classes)``, or ``None`` when the backbone has no classifier head.
    """

    features: Tensor
    pooled: Tensor
    logits: Tensor | None


class Backbone(nn.Module):
    """Base class: a feature extractor, a pooling stage and an optional linear head.

    Subclasses build their layers, implement :meth:`forward_features`, and call
    :meth:`init_head` last. Any input size works: pooling is global.
    """

    feature_channels: int
    num_features: int

    def init_head(self, num_features: int, num_classes: int, drop_rate: float) -> None:
        """Create the classifier (``num_classes=0`` for none) on ``num_features`` inputs."""
        self.num_features = num_features
        self.num_classes = num_classes
        self.drop_rate = drop_rate
        self.dropout = nn.Dropout(drop_rate) if drop_rate > 0 else nn.Identity()
        self.classifier = nn.Linear(num_features, num_classes) if num_classes > 0 else None

    def reset_classifier(self, num_classes: int) -> None:
        """Replace the head with a freshly initialised one for ``num_classes`` classes."""
        self.num_classes = num_classes
        self.classifier = nn.Linear(self.num_features, num_classes) if num_classes > 0 else None
        if self.classifier is not None:
            init_linear(self.classifier)

    def forward_features(self, x: Tensor) -> Tensor:
        raise NotImplementedError

    def forward_pool(self, features: Tensor) -> Tensor:
        """Global average pooling; subclasses with a richer pooling stage override it."""
        return F.adaptive_avg_pool2d(features, 1).flatten(1)

    def forward_head(self, pooled: Tensor) -> Tensor | None:
        if self.classifier is None:
            return None
        return self.classifier(self.dropout(pooled))

    def forward(self, x: Tensor) -> BackboneOutput:
        features = self.forward_features(x)
        pooled = self.forward_pool(features)
        return BackboneOutput(features, pooled, self.forward_head(pooled))


class ConvBnAct(nn.Sequential):
    """Conv2d (no bias) -> BatchNorm2d -> activation (none when ``act_layer`` is None)."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 1,
        stride: int = 1,
        groups: int = 1,
        act_layer: ActLayer | None = nn.ReLU,
    ) -> None:
        layers: list[nn.Module] = [
            nn.Conv2d(
                in_channels,
                out_channels,
                kernel_size,
                stride=stride,
                padding=kernel_size // 2,
                groups=groups,
                bias=False,
            ),
            nn.BatchNorm2d(out_channels),
        ]
        if act_layer is not None:
            layers.append(act_layer())
        super().__init__(*layers)


class SqueezeExcite(nn.Module):
    """Squeeze-and-excitation: global pool -> Linear -> ReLU -> Linear -> sigmoid gate.

    The linears have no bias by default, as in CondenseNetV2 (its published parameter
    counts are matched only that way).
    """

    def __init__(self, channels: int, reduction: int = 4, bias: bool = False) -> None:
        super().__init__()
        hidden = max(1, channels // reduction)
        self.fc1 = nn.Linear(channels, hidden, bias=bias)
        self.act = nn.ReLU()
        self.fc2 = nn.Linear(hidden, channels, bias=bias)
        self.gate = nn.Sigmoid()

    def forward(self, x: Tensor) -> Tensor:
        scale = F.adaptive_avg_pool2d(x, 1).flatten(1)
        scale = self.gate(self.fc2(self.act(self.fc1(scale))))
        return x * scale[:, :, None, None]


def channel_shuffle(x: Tensor, groups: int) -> Tensor:
    """Move channel ``g * (C // groups) + r`` to position ``r * groups + g``."""
    n, c, h, w = x.shape
    if groups == 1 or groups == c:
        return x
    return x.view(n, groups, c // groups, h, w).transpose(1, 2).reshape(n, c, h, w)


def make_divisible(value: float, divisor: int = 8, min_value: int | None = None) -> int:
    """Round ``value`` to a multiple of ``divisor`` without going below 90% of it."""
    min_value = min_value or divisor
    rounded = max(min_value, int(value + divisor / 2) // divisor * divisor)
    if rounded < 0.9 * value:
        rounded += divisor
    return rounded


def init_linear(layer: nn.Linear) -> None:
    nn.init.normal_(layer.weight, 0, 0.01)
    if layer.bias is not None:
        nn.init.zeros_(layer.bias)


def init_weights(module: nn.Module, small_linears: bool = True) -> None:
    """Kaiming-normal (fan_out) convs, unit BatchNorm; linears small-normal (torchvision's
    choice) or, with ``small_linears=False``, PyTorch's default init."""
    for m in module.modules():
        if isinstance(m, nn.Conv2d):
            nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, (nn.BatchNorm2d, nn.BatchNorm1d)):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)
        elif isinstance(m, nn.Linear):
            init_linear(m) if small_linears else m.reset_parameters()


@torch.no_grad()
def gather_batchnorm(norm: nn.BatchNorm2d, index: Tensor) -> nn.BatchNorm2d:
    """A BatchNorm2d over the channels ``index`` of ``norm`` (repeats allowed)."""
    gathered = nn.BatchNorm2d(len(index), eps=norm.eps, momentum=norm.momentum)
    gathered.weight.copy_(norm.weight[index])
    gathered.bias.copy_(norm.bias[index])
    gathered.running_mean.copy_(norm.running_mean[index])
    gathered.running_var.copy_(norm.running_var[index])
    gathered.num_batches_tracked.copy_(norm.num_batches_tracked)
    return gathered
