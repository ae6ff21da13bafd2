"""ImageNet state dicts in torchvision's layout, onto our backbones (no torchvision import).

``torchvision-resnet``: ``torchvision.models.resnet18/34/50/101/152`` (``conv1, bn1,
layerL.N.{conv,bn}{1,2,3}, layerL.N.downsample.{0,1}, fc``). Our ResNet is the same network
(7x7 stem and max-pool, ResNet-50 and deeper with the stride on the 3x3 conv as in
torchvision's V1.5, BatchNorm eps 1e-5 / momentum 0.1), with other key names. Depth (blocks
per stage, basic or bottleneck) and width are read from the file's shapes; ResNeXt and wide
ResNets (grouped or wider 3x3 convs) have other shapes and are refused by name.

``torchvision-mobilenetv2``: ``torchvision.models.mobilenet_v2`` (``features.0`` stem,
``features.N.conv.M`` inverted residuals, ``features.18`` last 1x1, ``classifier.1``),
onto our :class:`~training.models.mobilenetv2.MobileNetV2` with the width multiplier read
from the shapes.

Files from before torchvision stored BatchNorm's ``num_batches_tracked`` (the original
``resnet50-19c8e357.pth``, say) lack those counters: they are set to 0 and a note says so
(they only matter for BatchNorm with ``momentum=None``, which neither network uses).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from pipeline.frames.transform import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from training.models import create_model
from training.models.layers import make_divisible
from training.models.mobilenetv2 import INVERTED_RESIDUAL_SETTING

from .formats import ImportedModel, ImportFormat, ImportOptions
from .reader import CheckpointError, TensorReader, load_mapped

# torchvision's ImageNet evaluation transform: resize the shorter side to 256, centre crop 224.
IMAGENET_PREPROCESSING = {
    "input_size": 224,
    "resize": 256,
    "mean": list(IMAGENET_MEAN_RGB),
    "std": list(IMAGENET_STD_RGB),
}
RESNET_DEPTHS = {
    ("basic", (2, 2, 2, 2)): "resnet18",
    ("basic", (3, 4, 6, 3)): "resnet34",
    ("bottleneck", (3, 4, 6, 3)): "resnet50",
    ("bottleneck", (3, 4, 23, 3)): "resnet101",
    ("bottleneck", (3, 8, 36, 3)): "resnet152",
}
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")


class KeyMapper:
    """Builds our-key -> tensor from the reader, each shape checked against our model."""

    def __init__(self, reader: TensorReader, model: nn.Module) -> None:
        self.reader = reader
        self.expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
        self.mapping: dict[str, Tensor] = {}
        self.defaulted: list[str] = []

    def tensor(self, ours: str, theirs: str) -> None:
        self.mapping[ours] = self.reader.take(theirs, self.expected[ours])

    def conv(self, ours: str, theirs: str) -> None:
        self.tensor(f"{ours}.weight", f"{theirs}.weight")

    def linear(self, ours: str, theirs: str) -> None:
        self.tensor(f"{ours}.weight", f"{theirs}.weight")
        self.tensor(f"{ours}.bias", f"{theirs}.bias")

    def batchnorm(self, ours: str, theirs: str) -> None:
        for entry in BN_ENTRIES[:4]:
            self.tensor(f"{ours}.{entry}", f"{theirs}.{entry}")
        counter = self.reader.take_optional(f"{theirs}.num_batches_tracked", ())
        if counter is None:
            counter = torch.zeros((), dtype=torch.long)
            self.defaulted.append(f"{theirs}.num_batches_tracked")
        self.mapping[f"{ours}.num_batches_tracked"] = counter

    def notes(self) -> list[str]:
        if not self.defaulted:
            return []
        return [
            f"no BatchNorm num_batches_tracked in the file (an older torchvision file): {len(self.defaulted)} set to 0"
        ]


def map_resnet(mapper: KeyMapper, ours: str, theirs: str, block: str, layers: tuple[int, ...]) -> None:
    """Map a torchvision-layout ResNet under the key prefix ``theirs`` onto ours under ``ours``
    (prefixes end with a dot, or are empty); the ``fc`` head is left to the caller."""
    mapper.conv(f"{ours}stem.0.0", f"{theirs}conv1")
    mapper.batchnorm(f"{ours}stem.0.1", f"{theirs}bn1")
    convs = 3 if block == "bottleneck" else 2
    for stage, repeats in enumerate(layers):
        for index in range(repeats):
            our_block, their_block = f"{ours}stages.{stage}.{index}", f"{theirs}layer{stage + 1}.{index}"
            for k in range(1, convs + 1):
                mapper.conv(f"{our_block}.conv{k}.0", f"{their_block}.conv{k}")
                mapper.batchnorm(f"{our_block}.conv{k}.1", f"{their_block}.bn{k}")
            if f"{our_block}.shortcut.0.weight" in mapper.expected:
                mapper.conv(f"{our_block}.shortcut.0", f"{their_block}.downsample.0")
                mapper.batchnorm(f"{our_block}.shortcut.1", f"{their_block}.downsample.1")


def map_mobilenetv2(mapper: KeyMapper, ours: str, theirs: str, blocks: int, layout: str) -> None:
    """Map a MobileNetV2 under ``theirs`` onto ours under ``ours`` (the head is left to the caller).

    ``layout`` "torchvision": ``features.N.conv`` holds [expand ConvBNReLU6 (``.0.0``/``.0.1``),]
    the depthwise ConvBNReLU6, then the projection as a bare conv and BN; "tonylins" (the
    pytorch-mobilenet-v2 code the AdaFocus authors use): one flat Sequential, conv / BN /
    ReLU6 per part, so part ``p``'s conv is ``conv.{3p}`` and its BN ``conv.{3p+1}``. Ours:
    every part a ConvBnAct (conv ``.0``, BN ``.1``). The stem (``features.0``) and the last
    1x1 (``features.{blocks+1}``) are conv ``.0`` + BN ``.1`` in all three.
    """
    if layout not in ("torchvision", "tonylins"):
        raise ValueError(f"unknown MobileNetV2 layout {layout!r}")
    for index in (0, blocks + 1):
        mapper.conv(f"{ours}features.{index}.0", f"{theirs}features.{index}.0")
        mapper.batchnorm(f"{ours}features.{index}.1", f"{theirs}features.{index}.1")
    for index in range(1, blocks + 1):
        our_block, their_block = f"{ours}features.{index}.block", f"{theirs}features.{index}.conv"
        parts = 3 if f"{our_block}.2.0.weight" in mapper.expected else 2
        for part in range(parts):
            if layout == "tonylins":
                conv, norm = f"{their_block}.{3 * part}", f"{their_block}.{3 * part + 1}"
            elif part < parts - 1:
                conv, norm = f"{their_block}.{part}.0", f"{their_block}.{part}.1"
            else:
                conv, norm = f"{their_block}.{part}", f"{their_block}.{part + 1}"
            mapper.conv(f"{our_block}.{part}.0", conv)
            mapper.batchnorm(f"{our_block}.{part}.1", norm)


# -- ResNet ------------------------------------------------------------------------------
def _looks_like_resnet(state: Mapping[str, Tensor]) -> bool:
    return "conv1.weight" in state and "layer1.0.conv1.weight" in state


def resnet_layout(reader: TensorReader, prefix: str = "") -> tuple[str, tuple[int, ...]]:
    """(``basic`` or ``bottleneck``, blocks per stage) of the torchvision ResNet under ``prefix``."""
    blocks = [0, 0, 0, 0]
    pattern = re.compile(re.escape(prefix) + r"layer([1-4])\.(\d+)\.conv1\.weight$")
    for key in reader.keys():
        match = pattern.match(key)
        if match:
            stage = int(match.group(1)) - 1
            blocks[stage] = max(blocks[stage], int(match.group(2)) + 1)
    if min(blocks) == 0:
        where = f" under {prefix!r}" if prefix else ""
        raise CheckpointError(f"{reader.source}: not a torchvision ResNet{where} (stages with blocks: {blocks})")
    return ("bottleneck" if f"{prefix}layer1.0.conv3.weight" in reader else "basic"), tuple(blocks)


def resnet_name(reader: TensorReader, prefix: str = "") -> tuple[str, str, tuple[int, ...]]:
    """Our registry name of the ResNet under ``prefix``, with its block kind and blocks per stage."""
    block, layers = resnet_layout(reader, prefix)
    name = RESNET_DEPTHS.get((block, layers))
    if name is None:
        known = ", ".join(f"{n} ({b}, {list(d)})" for (b, d), n in RESNET_DEPTHS.items())
        raise CheckpointError(f"{reader.source}: a {block} ResNet with {list(layers)} blocks per stage; known: {known}")
    return name, block, layers


def build_resnet(reader: TensorReader, options: ImportOptions) -> ImportedModel:
    """A torchvision ResNet state dict as our ResNet of the same depth, width and classes."""
    _no_patch_size(options, "torchvision-resnet")
    name, block, layers = resnet_name(reader)
    width = reader.shape("conv1.weight")[0]
    num_classes = reader.shape("fc.weight")[0] if "fc.weight" in reader else 0
    kwargs = {"width": width} if width != 64 else {}
    # drop_rate 0: torchvision's ResNet has no dropout before fc.
    model = create_model(name, num_classes=num_classes, zero_init_residual=False, **kwargs)
    mapper = KeyMapper(reader, model)
    map_resnet(mapper, "", "", block, layers)
    if num_classes:
        mapper.linear("classifier", "fc")
    load_mapped(model, mapper.mapping, reader.source)
    return ImportedModel(
        kind="image",
        model=model.eval(),
        model_name=name,
        model_kwargs={"zero_init_residual": False, **kwargs},
        num_classes=num_classes,
        preprocessing=dict(IMAGENET_PREPROCESSING),
        notes=mapper.notes(),
    )


# -- MobileNetV2 -------------------------------------------------------------------------
def _looks_like_mobilenetv2(state: Mapping[str, Tensor]) -> bool:
    return "features.0.0.weight" in state and any(re.match(r"features\.\d+\.conv\.", key) for key in state)


MOBILENETV2_BLOCKS = sum(n for _, _, n, _ in INVERTED_RESIDUAL_SETTING)  # 17 inverted residuals


def mobilenetv2_kwargs(reader: TensorReader, prefix: str = "", layout: str = "torchvision") -> dict:
    """Our MobileNetV2 builder arguments (``width_mult``, ``last_channels``) for the network
    under ``prefix`` (layouts as in :func:`map_mobilenetv2`), read from the channel counts of
    its stem, last block and last 1x1 conv."""
    stem = reader.shape(f"{prefix}features.0.0.weight")[0]
    last = INVERTED_RESIDUAL_SETTING[-1][1]
    # The last block expands (t = 6): its projection is part 2.
    project = f"{prefix}features.{MOBILENETV2_BLOCKS}.conv." + ("6" if layout == "tonylins" else "2") + ".weight"
    if project not in reader:
        raise CheckpointError(f"{reader.source}: no {project}: not a {layout} MobileNetV2 layout (17 blocks)")
    out = reader.shape(project)[0]
    width_mult = None
    # The usual multipliers first, then the one the last block's width implies.
    for candidate in (1.0, 0.35, 0.5, 0.75, 1.3, 1.4, out / last):
        if make_divisible(32 * candidate) == stem and make_divisible(last * candidate) == out:
            width_mult = candidate
            break
    if width_mult is None:
        raise CheckpointError(
            f"{reader.source}: no width multiplier gives a {stem}-channel stem and {out}-channel last block"
        )
    kwargs: dict = {"width_mult": width_mult} if width_mult != 1.0 else {}
    last_channels = reader.shape(f"{prefix}features.{MOBILENETV2_BLOCKS + 1}.0.weight")[0]
    if last_channels != make_divisible(1280 * max(1.0, width_mult)):
        kwargs["last_channels"] = last_channels
    return kwargs


def build_mobilenetv2(reader: TensorReader, options: ImportOptions) -> ImportedModel:
    """A torchvision ``mobilenet_v2`` state dict as our MobileNetV2."""
    _no_patch_size(options, "torchvision-mobilenetv2")
    kwargs = mobilenetv2_kwargs(reader)
    num_classes = reader.shape("classifier.1.weight")[0] if "classifier.1.weight" in reader else 0
    model = create_model("mobilenetv2", num_classes=num_classes, **kwargs)
    mapper = KeyMapper(reader, model)
    map_mobilenetv2(mapper, "", "", MOBILENETV2_BLOCKS, "torchvision")
    if num_classes:
        mapper.linear("classifier", "classifier.1")
    load_mapped(model, mapper.mapping, reader.source)
    return ImportedModel(
        kind="image",
        model=model.eval(),
        model_name="mobilenetv2",
        model_kwargs=kwargs,
        num_classes=num_classes,
        preprocessing=dict(IMAGENET_PREPROCESSING),
        notes=mapper.notes(),
    )


def _no_patch_size(options: ImportOptions, name: str) -> None:
    if options.patch_size is not None:
        raise CheckpointError(f"--patch-size applies to the AdaFocus formats, not to {name} (an image classifier)")


FORMATS = [
    ImportFormat(
        "torchvision-resnet",
        "torchvision ImageNet ResNet-18/34/50/101/152 state dicts (resnet50-*.pth, ...)",
        build=build_resnet,
        matches=_looks_like_resnet,
    ),
    ImportFormat(
        "torchvision-mobilenetv2",
        "torchvision ImageNet MobileNetV2 state dicts (mobilenet_v2-*.pth)",
        build=build_mobilenetv2,
        matches=_looks_like_mobilenetv2,
    ),
]
