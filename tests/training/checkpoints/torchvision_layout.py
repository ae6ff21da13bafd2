"""torchvision's state-dict layouts written out by hand (no torchvision import), and the
seeded formula that fills them; the parity data in tests/data/checkpoints was made by the
same formula over torchvision's own models (see test_torchvision_parity.py).

Formula: over the keys in sorted order, key number ``k`` gets ``g = torch.Generator().manual_seed(k)``
and, by the key's last part and the tensor's rank,
- conv / linear ``weight``: ``randn(shape, generator=g) * sqrt(1 / fan_in)`` (fan_in: the product of shape[1:]),
- BatchNorm ``weight``: ``1 + 0.1 * randn``; ``bias`` (BN and linear): ``0.1 * randn``;
- ``running_mean``: ``0.1 * randn``; ``running_var``: ``0.5 + rand``; ``num_batches_tracked``: ``tensor(k)``.
"""

from __future__ import annotations

import math

import torch

BN = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


def _bn(prefix: str, channels: int) -> dict[str, tuple[int, ...]]:
    return {f"{prefix}.{e}": (() if e == "num_batches_tracked" else (channels,)) for e in BN}


def resnet_shapes(
    block: str, layers: tuple[int, ...], num_classes: int = 1000, width: int = 64
) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``torchvision.models.resnet`` (V1.5 bottleneck) with ``block`` basic/bottleneck
    (``width`` other than 64: the same layout, narrower, as no torchvision builder makes it)."""
    expansion = 4 if block == "bottleneck" else 1
    shapes: dict[str, tuple[int, ...]] = {"conv1.weight": (width, 3, 7, 7), **_bn("bn1", width)}
    inplanes = width
    for stage, repeats in enumerate(layers):
        planes = width * 2**stage
        for index in range(repeats):
            p = f"layer{stage + 1}.{index}"
            stride = 2 if stage > 0 and index == 0 else 1
            if block == "bottleneck":
                convs = [(planes, inplanes, 1), (planes, planes, 3), (planes * 4, planes, 1)]
            else:
                convs = [(planes, inplanes, 3), (planes, planes, 3)]
            for k, (out, inp, size) in enumerate(convs, 1):
                shapes[f"{p}.conv{k}.weight"] = (out, inp, size, size)
                shapes.update(_bn(f"{p}.bn{k}", out))
            if stride != 1 or inplanes != planes * expansion:
                shapes[f"{p}.downsample.0.weight"] = (planes * expansion, inplanes, 1, 1)
                shapes.update(_bn(f"{p}.downsample.1", planes * expansion))
            inplanes = planes * expansion
    shapes["fc.weight"] = (num_classes, inplanes)
    shapes["fc.bias"] = (num_classes,)
    return shapes


MOBILENETV2_SETTING = (
    (1, 16, 1, 1),
    (6, 24, 2, 2),
    (6, 32, 3, 2),
    (6, 64, 4, 2),
    (6, 96, 3, 1),
    (6, 160, 3, 2),
    (6, 320, 1, 1),
)


def _divisible(value: float, divisor: int = 8) -> int:
    """torchvision's channel rounding (``_make_divisible``), written out."""
    rounded = max(divisor, int(value + divisor / 2) // divisor * divisor)
    return rounded + divisor if rounded < 0.9 * value else rounded


def mobilenetv2_shapes(num_classes: int = 1000, width_mult: float = 1.0) -> dict[str, tuple[int, ...]]:
    """Key -> shape of ``torchvision.models.mobilenet_v2(width_mult=...)``."""
    stem, last = _divisible(32 * width_mult), _divisible(1280 * max(1.0, width_mult))
    shapes: dict[str, tuple[int, ...]] = {"features.0.0.weight": (stem, 3, 3, 3), **_bn("features.0.1", stem)}
    inp, index = stem, 1
    for t, c, n, _ in MOBILENETV2_SETTING:
        c = _divisible(c * width_mult)
        for _ in range(n):
            hidden, p, part = inp * t, f"features.{index}.conv", 0
            if t != 1:
                shapes[f"{p}.0.0.weight"] = (hidden, inp, 1, 1)
                shapes.update(_bn(f"{p}.0.1", hidden))
                part = 1
            shapes[f"{p}.{part}.0.weight"] = (hidden, 1, 3, 3)
            shapes.update(_bn(f"{p}.{part}.1", hidden))
            shapes[f"{p}.{part + 1}.weight"] = (c, hidden, 1, 1)
            shapes.update(_bn(f"{p}.{part + 2}", c))
            inp, index = c, index + 1
    shapes[f"features.{index}.0.weight"] = (last, inp, 1, 1)
    shapes.update(_bn(f"features.{index}.1", last))
    shapes["classifier.1.weight"] = (num_classes, last)
    shapes["classifier.1.bias"] = (num_classes,)
    return shapes


def seeded_state_dict(shapes: dict[str, tuple[int, ...]]) -> dict[str, torch.Tensor]:
    """The formula of the module docstring over ``shapes`` (any key order in, same tensors out)."""
    state = {}
    for k, key in enumerate(sorted(shapes)):
        shape, last = shapes[key], key.rsplit(".", 1)[-1]
        g = torch.Generator().manual_seed(k)
        if last == "num_batches_tracked":
            state[key] = torch.tensor(k)
        elif last == "running_var":
            state[key] = 0.5 + torch.rand(shape, generator=g)
        elif last == "running_mean" or last == "bias":
            state[key] = 0.1 * torch.randn(shape, generator=g)
        elif len(shape) == 1:  # BatchNorm weight
            state[key] = 1 + 0.1 * torch.randn(shape, generator=g)
        else:
            state[key] = torch.randn(shape, generator=g) * math.sqrt(1 / math.prod(shape[1:]))
    return state


def smooth_input(size: int = 64) -> torch.Tensor:
    """A (1, 3, size, size) smooth image, roughly ImageNet-normalised in range."""
    i = torch.arange(size, dtype=torch.float64)
    c = torch.arange(3, dtype=torch.float64)[:, None, None]
    x = torch.sin(0.11 * (c + 1) * i[:, None] + 0.3 * c) * torch.cos(0.07 * i[None, :] - 0.5 * c)
    return (1.5 * x).float()[None]
