"""ResNet-18/34 (basic blocks) and ResNet-50/101/152 (bottleneck v1.5: stride on the 3x3 conv)."""

from __future__ import annotations

from torch import Tensor, nn

from .layers import Backbone, ConvBnAct, init_weights
from .registry import register_model


class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = ConvBnAct(in_channels, channels, 3, stride=stride)
        self.conv2 = ConvBnAct(channels, out_channels, 3, act_layer=None)
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv2(self.conv1(x)) + self.shortcut(x))


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, in_channels: int, channels: int, stride: int = 1) -> None:
        super().__init__()
        out_channels = channels * self.expansion
        self.conv1 = ConvBnAct(in_channels, channels, 1)
        self.conv2 = ConvBnAct(channels, channels, 3, stride=stride)
        self.conv3 = ConvBnAct(channels, out_channels, 1, act_layer=None)
        self.shortcut = _shortcut(in_channels, out_channels, stride)
        self.act = nn.ReLU()

    def forward(self, x: Tensor) -> Tensor:
        return self.act(self.conv3(self.conv2(self.conv1(x))) + self.shortcut(x))


def _shortcut(in_channels: int, out_channels: int, stride: int) -> nn.Module:
    if stride == 1 and in_channels == out_channels:
        return nn.Identity()
    return ConvBnAct(in_channels, out_channels, 1, stride=stride, act_layer=None)


class ResNet(Backbone):
    """ResNet with the 7x7 stem and max-pool; ``features`` is the last stage's map.

    ``width`` is the first stage's channel count (64 in the paper; each stage doubles it):
    narrow ResNets are cheap local networks that still learn fast from scratch.
    """

    def __init__(
        self,
        block: type[BasicBlock] | type[Bottleneck],
        layers: tuple[int, int, int, int],
        num_classes: int = 1000,
        drop_rate: float = 0.0,
        zero_init_residual: bool = True,
        width: int = 64,
    ) -> None:
        super().__init__()
        self.stem = nn.Sequential(
            ConvBnAct(3, width, 7, stride=2),
            nn.MaxPool2d(kernel_size=3, stride=2, padding=1),
        )
        stages: list[nn.Module] = []
        in_channels = width
        for i, repeats in enumerate(layers):
            channels = width * 2**i
            blocks = []
            for j in range(repeats):
                stride = 2 if (i > 0 and j == 0) else 1
                blocks.append(block(in_channels, channels, stride))
                in_channels = channels * block.expansion
            stages.append(nn.Sequential(*blocks))
        self.stages = nn.Sequential(*stages)
        self.feature_channels = in_channels
        self.init_head(in_channels, num_classes, drop_rate)
        init_weights(self)
        if zero_init_residual:
            # Each residual branch starts as identity: the last BN's gamma is zero.
            for m in self.modules():
                if isinstance(m, (BasicBlock, Bottleneck)):
                    last = m.conv3 if isinstance(m, Bottleneck) else m.conv2
                    nn.init.zeros_(last[1].weight)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.stages(self.stem(x))


@register_model
def resnet18(**kwargs) -> ResNet:
    return ResNet(BasicBlock, (2, 2, 2, 2), **kwargs)


@register_model
def resnet34(**kwargs) -> ResNet:
    return ResNet(BasicBlock, (3, 4, 6, 3), **kwargs)


@register_model
def resnet50(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 6, 3), **kwargs)


@register_model
def resnet101(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 4, 23, 3), **kwargs)


@register_model
def resnet152(**kwargs) -> ResNet:
    return ResNet(Bottleneck, (3, 8, 36, 3), **kwargs)
