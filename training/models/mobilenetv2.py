"""MobileNetV2 (Sandler et al., 2018) with a width multiplier."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import Backbone, ConvBnAct, init_weights, make_divisible
from .registry import register_model

# (expansion t, output channels c, repeats n, first stride s), as in the paper's Table 2.
INVERTED_RESIDUAL_SETTING: tuple[tuple[int, int, int, int], ...] = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


class InvertedResidual(nn.Module):
    """1x1 expand -> 3x3 depthwise -> 1x1 linear projection, residual when shapes match."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, expansion: int) -> None:
        super().__init__()
        hidden = in_channels * expansion
        self.use_residual = stride == 1 and in_channels == out_channels
        layers: list[nn.Module] = []
        if expansion != 1:
            layers.append(ConvBnAct(in_channels, hidden, 1, act_layer=nn.ReLU6))
        layers += [
            ConvBnAct(hidden, hidden, 3, stride=stride, groups=hidden, act_layer=nn.ReLU6),
            ConvBnAct(hidden, out_channels, 1, act_layer=None),
        ]
        self.block = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        out = self.block(x)
        return x + out if self.use_residual else out


class MobileNetV2(Backbone):
    """MobileNetV2; ``features`` is the 1280-channel (scaled) map, ``pooled`` its average.

    ``output_stride`` (8, 16 or 32) keeps the feature map finer for small inputs: strides
    that would take the total past it become 1 (no dilation; the compute grows accordingly).
    A glance network on a 32x32 frame needs this to leave the policy a spatial map to read.
    ``last_channels`` overrides the width of the final 1x1 layer (1280 times the width
    multiplier when wider than 1).
    """

    def __init__(
        self,
        num_classes: int = 1000,
        width_mult: float = 1.0,
        drop_rate: float = 0.2,
        round_nearest: int = 8,
        output_stride: int = 32,
        last_channels: int | None = None,
    ) -> None:
        super().__init__()
        if output_stride not in (8, 16, 32):
            raise ValueError(f"output_stride must be 8, 16 or 32, not {output_stride}")
        in_channels = make_divisible(32 * width_mult, round_nearest)
        if last_channels is None:
            last_channels = make_divisible(1280 * max(1.0, width_mult), round_nearest)
        layers: list[nn.Module] = [ConvBnAct(3, in_channels, 3, stride=2, act_layer=nn.ReLU6)]
        total_stride = 2
        for expansion, channels, repeats, first_stride in INVERTED_RESIDUAL_SETTING:
            out_channels = make_divisible(channels * width_mult, round_nearest)
            if total_stride * first_stride > output_stride:
                first_stride = 1
            total_stride *= first_stride
            for i in range(repeats):
                stride = first_stride if i == 0 else 1
                layers.append(InvertedResidual(in_channels, out_channels, stride, expansion))
                in_channels = out_channels
        layers.append(ConvBnAct(in_channels, last_channels, 1, act_layer=nn.ReLU6))
        self.features = nn.Sequential(*layers)
        self.feature_channels = last_channels
        self.init_head(last_channels, num_classes, drop_rate)
        init_weights(self)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.features(x)


@register_model
def mobilenetv2(**kwargs) -> MobileNetV2:
    """MobileNetV2; pass ``width_mult`` for the narrower or wider variants."""
    return MobileNetV2(**kwargs)


@register_model
def mobilenetv2_050(**kwargs) -> MobileNetV2:
    return MobileNetV2(width_mult=0.5, **kwargs)


@register_model
def mobilenetv2_035(**kwargs) -> MobileNetV2:
    return MobileNetV2(width_mult=0.35, **kwargs)


@register_model
def mobilenetv2_075(**kwargs) -> MobileNetV2:
    return MobileNetV2(width_mult=0.75, **kwargs)
