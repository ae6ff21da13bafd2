"""The authors' CondenseNetV2 checkpoints (jianghaojun/CondenseNetV2), onto our CondenseNetV2.

Two forms, both imported into our **training form with its condensation complete** (the form
``create_model`` builds, so ``--weights`` and AdaFocus's networks load it; ``convert()``
gives the inference form):

* **converted** (the released A/B/C files, ``convert_and_eval.py`` output:
  ``{'state_dict': ...}``): ``conv_1`` (LGC) holds ``index``, the kept input channels
  group by group, a gathered BatchNorm and a grouped 1x1 conv; ``sfr`` holds a grouped 1x1
  conv whose output rows are moved to their target channels by a product with ``index``, a
  dense CxC 0/1 matrix. Each of its rows must select exactly one channel, and the rows of
  one group distinct channels (what the authors' conversion makes); anything else is
  refused, naming the key. The grouped weights are put back in their dense positions with
  the masks they imply (weights outside the masks are zero).
* **training form** (a timm ``CheckpointSaver`` file of ``train.py``: ``state_dict``,
  ``state_dict_ema``, ``optimizer``, ``args`` as a pickled ``argparse.Namespace``, ...):
  the dense 1x1 convs with their ``_mask``, ``_stage`` and ``_count`` buffers. The EMA
  weights are preferred when present, as the authors' ``convert_and_eval.py`` does. A file
  saved before condensation finished imports at the step it had reached.

The architecture (blocks, growth, groups, bottleneck, SE blocks, head widths, classes) is
read from the shapes; where h-swish starts and the stem stride come from ``args`` when the
file has it (else the authors' ImageNet builders: h-swish from block 3, stride 2).
Key mapping: ``features.init_conv`` -> ``stem``; ``features.denseblock_B.denselayer_L`` ->
``blocks.I`` (``I`` counts the pooling layers between blocks); ``conv_1`` -> ``lgc``;
``conv_2.{norm,conv}`` -> ``{norm,conv}``; ``se.fc.{0,2}`` -> ``se.fc{1,2}``; ``sfr`` ->
``sfr``; ``features.norm_last`` -> ``final_norm``; ``features.se_last.fc.{0,2}`` ->
``head_se.fc{1,2}``; ``fc`` and ``classifier`` keep their names.
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from pipeline.frames.transform import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from training.models import create_model
from training.models.condensenetv2 import PRESETS

from .formats import ImportedModel, ImportFormat, ImportOptions
from .reader import CheckpointError, TensorReader, load_mapped

LAYER_KEY = re.compile(r"features\.denseblock_(\d+)\.denselayer_(\d+)\.")
BN_ENTRIES = ("weight", "bias", "running_mean", "running_var", "num_batches_tracked")
# The authors' evaluation: resize the shorter side to 256 (bicubic for A and B, bilinear for
# C: convert_and_eval.py), centre crop 224, ImageNet mean and std.
IMAGENET_PREPROCESSING = {
    "input_size": 224,
    "resize": 256,
    "mean": list(IMAGENET_MEAN_RGB),
    "std": list(IMAGENET_STD_RGB),
}


@dataclass
class _Layout:
    """The architecture a file's shapes (and its ``args``) describe, in our builder's terms."""

    stages: tuple[int, ...]
    growth: tuple[int, ...]
    groups: int
    bottleneck: int
    hidden_features: int
    num_classes: int
    stem_stride: int
    hswish_from_stage: int
    se_stages: tuple[int, ...]
    head_se_reduction: int
    converted: bool

    def builder_kwargs(self) -> dict[str, Any]:
        return {
            "stages": self.stages,
            "growth": self.growth,
            "groups": self.groups,
            "bottleneck": self.bottleneck,
            "hidden_features": self.hidden_features,
            "stem_stride": self.stem_stride,
            "hswish_from_stage": self.hswish_from_stage,
            "se_stages": self.se_stages,
            "head_se_reduction": self.head_se_reduction,
        }

    def model_name_and_kwargs(self) -> tuple[str, dict[str, Any]]:
        """A preset when the file is one (A, B, C), else ``condensenetv2_a`` with every field given."""
        kwargs = self.builder_kwargs()
        for name, preset in PRESETS.items():
            defaults = {"bottleneck": 4, "stem_stride": 2, "hswish_from_stage": 2, "se_stages": (3, 4)}
            defaults["head_se_reduction"] = 16
            full = {**defaults, **{k: v for k, v in preset.items() if k != "num_classes"}}
            if all(_same(full.get(key), value) for key, value in kwargs.items()):
                return name, {}
        return "condensenetv2_a", kwargs


def _same(a: Any, b: Any) -> bool:
    return tuple(a) == tuple(b) if isinstance(a, (tuple, list)) and isinstance(b, (tuple, list)) else a == b


def _looks_like_condensenetv2(state: Mapping[str, Tensor]) -> bool:
    return "features.init_conv.weight" in state and "features.denseblock_1.denselayer_1.conv_1.conv.weight" in state


def _args(reader: TensorReader) -> argparse.Namespace | None:
    payload = reader.payload
    args = payload.get("args") if isinstance(payload, Mapping) else None
    return args if isinstance(args, argparse.Namespace) else None


def _read_layout(reader: TensorReader) -> _Layout:
    """The architecture from the shapes; a :class:`CheckpointError` naming what does not fit ours."""
    src = reader.source
    depth: dict[int, int] = {}
    for key in reader.keys():
        match = LAYER_KEY.match(key)
        if match:
            block, layer = int(match.group(1)), int(match.group(2))
            depth[block] = max(depth.get(block, 0), layer)
    if not depth or sorted(depth) != list(range(1, len(depth) + 1)):
        raise CheckpointError(f"{src}: dense blocks {sorted(depth)} are not numbered 1..N: not a CondenseNetV2 file")
    stages = tuple(depth[b] for b in sorted(depth))
    first = "features.denseblock_{}.denselayer_1."
    converted = f"{first.format(1)}conv_1.index" in reader
    if not converted and f"{first.format(1)}conv_1._mask" not in reader:
        raise CheckpointError(
            f"{src}: {first.format(1)}conv_1 has neither index (converted form) nor _mask (training form)"
        )
    growth, widths = [], []
    for block in range(1, len(stages) + 1):
        conv_2 = reader.shape(f"{first.format(block)}conv_2.conv.weight")  # (k, 4k / G, 3, 3)
        growth.append(conv_2[0])
        widths.append(reader.shape(f"{first.format(block)}conv_2.norm.weight")[0])
    groups = widths[0] // reader.shape(f"{first.format(1)}conv_2.conv.weight")[1]
    bottleneck = widths[0] // growth[0]
    if any(w != bottleneck * k for w, k in zip(widths, growth)):
        raise CheckpointError(f"{src}: the bottleneck width is not the same multiple of the growth in every block")
    stem = reader.shape("features.init_conv.weight")
    if stem[0] != 2 * growth[0]:
        raise CheckpointError(
            f"{src}: features.init_conv.weight has {stem[0]} outputs; "
            f"our CondenseNetV2 needs 2 x growth = {2 * growth[0]}"
        )
    se_stages = tuple(b - 1 for b in range(1, len(stages) + 1) if f"{first.format(b)}se.fc.0.weight" in reader)
    channels = reader.shape("features.norm_last.weight")[0]
    head_se = reader.shape("features.se_last.fc.0.weight")[0]
    reduction = channels // head_se
    if max(1, channels // reduction) != head_se:
        raise CheckpointError(f"{src}: features.se_last.fc.0.weight has {head_se} rows for {channels} channels")
    args = _args(reader)
    cifar = args is not None and str(getattr(args, "dataset", "imagenet")).startswith("cifar")
    return _Layout(
        stages=stages,
        growth=tuple(growth),
        groups=groups,
        bottleneck=bottleneck,
        hidden_features=reader.shape("fc.weight")[0],
        num_classes=reader.shape("classifier.weight")[0],
        stem_stride=1 if cifar else 2,
        hswish_from_stage=int(getattr(args, "HS_start_block", 2)) if args is not None else 2,
        se_stages=se_stages,
        head_se_reduction=reduction,
        converted=converted,
    )


class _Mapper:
    """Builds our-key -> tensor for one model, each shape checked against it."""

    def __init__(self, reader: TensorReader, expected: Mapping[str, tuple[int, ...]], groups: int) -> None:
        self.reader = reader
        self.expected = expected
        self.groups = groups
        self.mapping: dict[str, Tensor] = {}

    def tensor(self, ours: str, theirs: str) -> None:
        self.mapping[ours] = self.reader.take(theirs, self.expected[ours])

    def batchnorm(self, ours: str, theirs: str) -> None:
        for entry in BN_ENTRIES:
            self.tensor(f"{ours}.{entry}", f"{theirs}.{entry}")

    # -- training form -------------------------------------------------------------------
    def masked(self, ours: str, theirs: str, kind: str) -> None:
        """A training-form LGC or SFR: dense conv, BN, and the mask as our ``(G, N)`` group mask."""
        self.batchnorm(f"{ours}.norm", f"{theirs}.norm")
        self.tensor(f"{ours}.conv.weight", f"{theirs}.conv.weight")
        groups, prunable = self.expected[f"{ours}.group_mask"]
        mask_key = f"{theirs}._mask"
        mask = self.reader.take(mask_key, self.expected[f"{ours}.conv.weight"])[:, :, 0, 0]
        if not bool(((mask == 0) | (mask == 1)).all()):
            raise CheckpointError(f"{self.reader.source}: {mask_key} holds values other than 0 and 1")
        # LGC: row r * G + g is group g's input mask; SFR: column j * G + g is group g's output mask.
        per_group = mask.view(-1, groups, prunable) if kind == "lgc" else mask.t().reshape(-1, groups, prunable)
        if not bool((per_group == per_group[0]).all()):
            raise CheckpointError(f"{self.reader.source}: {mask_key} differs between the rows of one group")
        group_mask = per_group[0]
        step = prunable // groups
        dropped = prunable - group_mask.sum(1)
        count = int(self.reader.take(f"{theirs}._count", (1,))[0])
        their_stage = int(self.reader.take(f"{theirs}._stage", (1,))[0])
        if not bool((dropped == count).all()) or count % step or count // step > their_stage:
            raise CheckpointError(
                f"{self.reader.source}: {mask_key} drops {dropped.tolist()} channels per group, "
                f"{theirs}._count says {count} (steps of {step}, _stage {their_stage})"
            )
        self.mapping[f"{ours}.group_mask"] = group_mask.float()
        self.mapping[f"{ours}.stage"] = torch.tensor(count // step, dtype=torch.long)

    # -- converted form ------------------------------------------------------------------
    def condensed_lgc(self, ours: str, theirs: str) -> None:
        """A converted LGC back to its dense form: index -> group mask, grouped conv -> dense rows."""
        src, groups = self.reader.source, self.groups
        out_channels, in_channels = self.expected[f"{ours}.conv.weight"][:2]
        index_key = f"{theirs}.index"
        index = self.reader.take(index_key, (in_channels,))
        per_group = in_channels // groups
        grouped = self.reader.take(f"{theirs}.conv.weight", (out_channels, per_group, 1, 1))[:, :, 0, 0]
        _check_index(src, index_key, index, in_channels)
        kept = index.long().view(groups, per_group)
        group_mask = torch.zeros(groups, in_channels)
        for g in range(groups):
            if len(set(kept[g].tolist())) != per_group:
                raise CheckpointError(f"{src}: {index_key} keeps a channel twice in group {g}: {kept[g].tolist()}")
            group_mask[g, kept[g]] = 1.0
        rows = out_channels // groups
        dense = torch.zeros(out_channels, in_channels)
        for g in range(groups):
            # Converted row g * rows + r is original row r * G + g, on group g's inputs.
            dense[g::groups, kept[g]] = grouped[g * rows : (g + 1) * rows]
        self.mapping[f"{ours}.conv.weight"] = dense[:, :, None, None]
        self.mapping[f"{ours}.group_mask"] = group_mask
        self.mapping[f"{ours}.stage"] = torch.tensor(groups - 1, dtype=torch.long)
        self._scattered_batchnorm(f"{ours}.norm", f"{theirs}.norm", index.long(), in_channels)

    def _scattered_batchnorm(self, ours: str, theirs: str, index: Tensor, channels: int) -> None:
        """The converted LGC's BN holds channel ``index[i]``'s statistics at ``i``: put them back.

        A channel kept by several groups appears once per group, with the same statistics (the
        authors copy them); a channel kept by none is never read and gets BN's defaults.
        """
        defaults = {"weight": 1.0, "bias": 0.0, "running_mean": 0.0, "running_var": 1.0}
        for entry, default in defaults.items():
            key = f"{theirs}.{entry}"
            gathered = self.reader.take(key, (len(index),))
            full = torch.full((channels,), default)
            full[index] = gathered
            if not torch.equal(full[index], gathered):
                raise CheckpointError(f"{self.reader.source}: {key} differs between copies of one input channel")
            self.mapping[f"{ours}.{entry}"] = full
        self.tensor(f"{ours}.num_batches_tracked", f"{theirs}.num_batches_tracked")

    def condensed_sfr(self, ours: str, theirs: str) -> None:
        """A converted SFR back to its dense form; its dense ``index`` must be a selection."""
        groups = self.groups
        out_channels, in_channels = self.expected[f"{ours}.conv.weight"][:2]
        self.batchnorm(f"{ours}.norm", f"{theirs}.norm")
        inputs = in_channels // groups
        grouped = self.reader.take(f"{theirs}.conv.weight", (out_channels, inputs, 1, 1))[:, :, 0, 0]
        targets = selection_targets(self.reader, f"{theirs}.index", out_channels, groups)
        rows = out_channels // groups
        dense = torch.zeros(out_channels, in_channels)
        group_mask = torch.zeros(groups, out_channels)
        for g in range(groups):
            mine = targets[g * rows : (g + 1) * rows]
            group_mask[g, mine] = 1.0
            # Group g reads inputs g, g + G, ... (made contiguous by the shuffle) and writes ``mine``.
            dense[mine.unsqueeze(1), torch.arange(g, in_channels, groups)] = grouped[g * rows : (g + 1) * rows]
        self.mapping[f"{ours}.conv.weight"] = dense[:, :, None, None]
        self.mapping[f"{ours}.group_mask"] = group_mask
        self.mapping[f"{ours}.stage"] = torch.tensor(groups - 1, dtype=torch.long)


def _check_index(source: str, key: str, index: Tensor, channels: int) -> None:
    if index.dtype.is_floating_point or index.dtype == torch.bool:
        raise CheckpointError(f"{source}: {key} is {index.dtype}, not integer channel indices")
    if len(index) and (int(index.min()) < 0 or int(index.max()) >= channels):
        raise CheckpointError(f"{source}: {key} holds channels outside 0..{channels - 1}")


def selection_targets(reader: TensorReader, key: str, channels: int, groups: int) -> Tensor:
    """The target channel of each row of a converted SFR's dense ``index`` (rows x channels).

    The authors' forward multiplies the conv's output by this matrix; it is our scatter only
    if every row is one-hot (one entry 1, the others 0) and the rows of a group select
    distinct channels. Anything else is refused with a message naming ``key``.
    """
    matrix = reader.take(key, (channels, channels))
    src = reader.source
    if not matrix.dtype.is_floating_point:
        matrix = matrix.float()
    not_binary = ~((matrix == 0) | (matrix == 1))
    if bool(not_binary.any()):
        row, col = (int(i) for i in not_binary.nonzero()[0])
        raise CheckpointError(
            f"{src}: {key} is not a selection: entry [{row}, {col}] is {float(matrix[row, col])!r} "
            "(a converted SFR index holds only 0 and 1)"
        )
    ones = (matrix == 1).sum(1)
    bad = (ones != 1).nonzero().flatten()
    if len(bad):
        row = int(bad[0])
        raise CheckpointError(
            f"{src}: {key} is not a selection: row {row} selects {int(ones[row])} channels "
            f"({len(bad)} rows do not select exactly one; each row must hold a single 1)"
        )
    targets = matrix.argmax(1)
    rows = channels // groups
    for g in range(groups):
        mine = targets[g * rows : (g + 1) * rows].tolist()
        if len(set(mine)) != rows:
            raise CheckpointError(
                f"{src}: {key} is not a selection the authors' conversion makes: two rows of group {g} "
                "select the same channel"
            )
    return targets


def _map_layers(mapper: _Mapper, layout: _Layout) -> None:
    block_start = 0
    for b, depth in enumerate(layout.stages):
        for layer in range(depth):
            ours, theirs = f"blocks.{block_start + layer}", f"features.denseblock_{b + 1}.denselayer_{layer + 1}"
            if layout.converted:
                mapper.condensed_lgc(f"{ours}.lgc", f"{theirs}.conv_1")
                mapper.condensed_sfr(f"{ours}.sfr", f"{theirs}.sfr")
            else:
                mapper.masked(f"{ours}.lgc", f"{theirs}.conv_1", "lgc")
                mapper.masked(f"{ours}.sfr", f"{theirs}.sfr", "sfr")
            mapper.batchnorm(f"{ours}.norm", f"{theirs}.conv_2.norm")
            mapper.tensor(f"{ours}.conv.weight", f"{theirs}.conv_2.conv.weight")
            if b in layout.se_stages:
                mapper.tensor(f"{ours}.se.fc1.weight", f"{theirs}.se.fc.0.weight")
                mapper.tensor(f"{ours}.se.fc2.weight", f"{theirs}.se.fc.2.weight")
        block_start += depth + 1  # the pooling layer after the block


def build_condensenetv2(reader: TensorReader, options: ImportOptions) -> ImportedModel:
    """An authors' CondenseNetV2 state dict (converted or training form) as our CondenseNetV2."""
    if options.patch_size is not None:
        raise CheckpointError(
            "--patch-size applies to the AdaFocus formats, not to condensenetv2 (an image classifier)"
        )
    layout = _read_layout(reader)
    name, kwargs = layout.model_name_and_kwargs()
    try:
        model = create_model(name, num_classes=layout.num_classes, **kwargs)
    except ValueError as error:  # channels our layers cannot split into the groups the file has
        raise CheckpointError(f"{reader.source}: this CondenseNetV2 does not fit ours: {error}") from None
    expected = {key: tuple(value.shape) for key, value in model.state_dict().items()}
    mapper = _Mapper(reader, expected, layout.groups)
    mapper.tensor("stem.weight", "features.init_conv.weight")
    _map_layers(mapper, layout)
    mapper.batchnorm("final_norm", "features.norm_last")
    mapper.tensor("head_se.fc1.weight", "features.se_last.fc.0.weight")
    mapper.tensor("head_se.fc2.weight", "features.se_last.fc.2.weight")
    for linear in ("fc", "classifier"):
        mapper.tensor(f"{linear}.weight", f"{linear}.weight")
        mapper.tensor(f"{linear}.bias", f"{linear}.bias")
    load_mapped(model, mapper.mapping, reader.source)
    return ImportedModel(
        kind="image",
        model=model.eval(),
        model_name=name,
        model_kwargs=kwargs,
        num_classes=layout.num_classes,
        preprocessing=dict(IMAGENET_PREPROCESSING),
        notes=_notes(reader, layout),
    )


def _notes(reader: TensorReader, layout: _Layout) -> list[str]:
    form = "converted form (dense SFR index turned into our scatter)" if layout.converted else "training form"
    notes = [f"CondenseNetV2 {form}, imported into our training form with its masks"]
    payload = reader.payload
    if isinstance(payload, Mapping) and "state_dict_ema" in payload and "state_dict" in payload:
        notes.append(
            "imported state_dict_ema (the EMA weights, as the authors' convert_and_eval.py does); "
            "state_dict not imported"
        )
    if not layout.converted and _args(reader) is None:
        notes.append("no args in the file: h-swish from block 3 and stem stride 2 assumed (the ImageNet builders)")
    return notes


FORMATS = [
    ImportFormat(
        "condensenetv2",
        "CondenseNetV2 (jianghaojun/CondenseNetV2): the released converted A/B/C files and train.py checkpoints",
        build=build_condensenetv2,
        matches=_looks_like_condensenetv2,
        safe_globals=(argparse.Namespace,),
        entries=("state_dict_ema", "state_dict"),
    ),
]
