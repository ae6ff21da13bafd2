"""CondenseNetV2 (Yang et al., CVPR 2021): learned group convolution + sparse feature reactivation.

Two forms of the same network:

* the **training form**: the 1x1 convs of learned group convolution (LGC) and sparse
  feature reactivation (SFR) are dense convs multiplied by a binary mask. The training loop
  calls ``model.condense(progress)`` (``progress`` = fraction of training iterations done);
  the masks lose ``1/G`` of their density at ``progress = s / (2 (G - 1))`` for
  ``s = 1 .. G-1``, so condensation is complete after the first half of training. Nothing
  changes inside ``forward``.
* the **inference form**, returned by ``model.convert()``: LGC becomes ``index_select`` of the
  kept inputs + a grouped 1x1 conv + channel shuffle; SFR becomes a grouped 1x1 conv whose
  output rows are scattered into their target channels with ``index_add``. MACs and
  parameters are those of the condensed network (dense / G for both).

Grouping conventions (see ``docs/condensenetv2.md``): LGC output channel ``r * G + g``
belongs to group ``g``; SFR input channel ``j * G + g`` belongs to group ``g``.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .layers import ActLayer, Backbone, SqueezeExcite, channel_shuffle, gather_batchnorm, init_weights
from .registry import register_model


class CondensationIncompleteError(RuntimeError):
    """``convert()`` was called on a model whose masks have not reached their final density."""


def _not_divisible(what: str, channels: int, groups: int) -> ValueError:
    return ValueError(f"{what}: {channels} channels cannot be split into {groups} groups (not divisible)")


class _GroupMaskedConv(nn.Module):
    """Shared mechanics of LGC and SFR in training form.

    ``group_mask`` has shape ``(G, N)``: which of the ``N`` prunable channels each of the
    ``G`` groups still uses. Every condensation step removes, in each group, the ``N // G``
    least important channels still active, so after ``G - 1`` steps each group keeps
    ``N // G``. ``stage`` (a buffer, so it travels in checkpoints) counts the steps done.
    """

    group_mask: Tensor
    stage: Tensor

    def __init__(self, groups: int, prunable: int) -> None:
        super().__init__()
        if prunable % groups:
            raise _not_divisible("condensation", prunable, groups)
        self.groups = groups
        self.register_buffer("group_mask", torch.ones(groups, prunable))
        self.register_buffer("stage", torch.zeros((), dtype=torch.long))

    @property
    def final_stage(self) -> int:
        return self.groups - 1

    def importance(self) -> Tensor:
        """``(G, N)`` importance of each prunable channel for each group."""
        raise NotImplementedError

    @torch.no_grad()
    def condense_step(self) -> None:
        """Zero, in every group, the ``N // G`` least important channels still active."""
        if int(self.stage) >= self.final_stage:
            raise RuntimeError("condensation is already complete")
        importance = self.importance().masked_fill(self.group_mask == 0, float("inf"))
        drop = self.group_mask.shape[1] // self.groups
        order = torch.sort(importance, dim=1, stable=True).indices[:, :drop]
        self.group_mask.scatter_(1, order, 0.0)
        self.stage += 1

    def condense_to(self, stage: int) -> int:
        """Take condensation steps until ``stage`` is reached; returns how many were taken."""
        steps = 0
        while int(self.stage) < min(stage, self.final_stage):
            self.condense_step()
            steps += 1
        return steps

    def kept_indices(self) -> list[Tensor]:
        """Per group, the sorted indices of the channels it keeps (needs full condensation)."""
        if int(self.stage) < self.final_stage:
            raise CondensationIncompleteError(
                f"{type(self).__name__} has taken {int(self.stage)} of {self.final_stage} "
                "condensation steps; finish training (or call condense(1.0)) before convert()"
            )
        return [row.nonzero().flatten() for row in self.group_mask]


class LearnedGroupConv(_GroupMaskedConv):
    """LGC, training form: BN -> act -> 1x1 conv ``Cin -> Cout`` with a learned input mask.

    Group ``g`` owns output rows ``g, g + G, ...``; its importance of input ``j`` is the sum of
    ``|W * M|`` over those rows.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, act_layer: ActLayer) -> None:
        super().__init__(groups, in_channels)
        if out_channels % groups:
            raise _not_divisible("LGC output", out_channels, groups)
        self.norm = nn.BatchNorm2d(in_channels)
        self.act = act_layer()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def weight_mask(self) -> Tensor:
        """``(Cout, Cin)`` mask: row ``r * G + g`` is group ``g``'s input mask."""
        rows_per_group = self.conv.out_channels // self.groups
        return self.group_mask.repeat(rows_per_group, 1)

    def forward(self, x: Tensor) -> Tensor:
        weight = self.conv.weight * self.weight_mask()[:, :, None, None]
        return F.conv2d(self.act(self.norm(x)), weight)

    def importance(self) -> Tensor:
        weight = (self.conv.weight[:, :, 0, 0] * self.weight_mask()).abs()
        rows_per_group = self.conv.out_channels // self.groups
        return weight.view(rows_per_group, self.groups, -1).sum(0)

    @torch.no_grad()
    def convert(self) -> CondensedLearnedGroupConv:
        kept = self.kept_indices()
        index = torch.cat(kept)
        weight = self.conv.weight[:, :, 0, 0]
        # Converted row g * rows_per_group + r holds original row r * G + g on group g's inputs.
        blocks = [weight[g :: self.groups][:, kept[g]] for g in range(self.groups)]
        grouped = nn.Conv2d(len(index), self.conv.out_channels, 1, groups=self.groups, bias=False)
        grouped.weight.copy_(torch.cat(blocks)[:, :, None, None])
        return CondensedLearnedGroupConv(index, gather_batchnorm(self.norm, index), copy.deepcopy(self.act), grouped)


class CondensedLearnedGroupConv(nn.Module):
    """LGC, inference form: gather kept inputs -> BN -> act -> grouped 1x1 conv -> shuffle."""

    index: Tensor

    def __init__(self, index: Tensor, norm: nn.BatchNorm2d, act: nn.Module, conv: nn.Conv2d) -> None:
        super().__init__()
        self.register_buffer("index", index.clone())
        self.norm = norm
        self.act = act
        self.conv = conv

    def forward(self, x: Tensor) -> Tensor:
        out = self.conv(self.act(self.norm(x.index_select(1, self.index))))
        return channel_shuffle(out, self.conv.groups)


class SparseFeatureReactivation(_GroupMaskedConv):
    """SFR, training form: BN -> act -> 1x1 conv ``k -> Cout`` with a learned output mask.

    Input ``j * G + g`` belongs to group ``g``; group ``g`` scores output ``o`` by the sum of
    ``|W * M|[o, group inputs]``. ``forward(features, new)`` returns the updated features.
    """

    def __init__(self, in_channels: int, out_channels: int, groups: int, act_layer: ActLayer) -> None:
        super().__init__(groups, out_channels)
        if in_channels % groups:
            raise _not_divisible("SFR input", in_channels, groups)
        self.norm = nn.BatchNorm2d(in_channels)
        self.act = act_layer()
        self.conv = nn.Conv2d(in_channels, out_channels, 1, bias=False)

    def weight_mask(self) -> Tensor:
        """``(Cout, k)`` mask: column ``j * G + g`` is group ``g``'s output mask."""
        inputs_per_group = self.conv.in_channels // self.groups
        return self.group_mask.t().repeat(1, inputs_per_group)

    def forward(self, features: Tensor, new: Tensor) -> Tensor:
        weight = self.conv.weight * self.weight_mask()[:, :, None, None]
        return features + F.conv2d(self.act(self.norm(new)), weight)

    def importance(self) -> Tensor:
        weight = (self.conv.weight[:, :, 0, 0] * self.weight_mask()).abs()
        inputs_per_group = self.conv.in_channels // self.groups
        return weight.view(-1, inputs_per_group, self.groups).sum(1).t()

    @torch.no_grad()
    def convert(self) -> CondensedSparseFeatureReactivation:
        kept = self.kept_indices()
        targets = torch.cat(kept)
        weight = self.conv.weight[:, :, 0, 0]
        # Group g reads inputs g, g + G, ... (made contiguous by a shuffle) and writes kept[g].
        blocks = [weight[kept[g]][:, g :: self.groups] for g in range(self.groups)]
        grouped = nn.Conv2d(self.conv.in_channels, len(targets), 1, groups=self.groups, bias=False)
        grouped.weight.copy_(torch.cat(blocks)[:, :, None, None])
        return CondensedSparseFeatureReactivation(targets, copy.deepcopy(self.norm), copy.deepcopy(self.act), grouped)


class CondensedSparseFeatureReactivation(nn.Module):
    """SFR, inference form: BN -> act -> shuffle to contiguous groups -> grouped 1x1 conv ->
    add each output row into its target channel (rows with the same target add up).

    The additions are ``index_add`` calls, split into rounds in which no target repeats:
    ONNX Runtime's ScatterND(add) races when several updates hit one channel (wrong results
    that change from run to run with more than one thread), so no exported scatter may
    repeat an index. ``order`` lists the conv's output rows round by round, ``targets`` the
    target of each of those rows, and ``round_bounds`` where each round starts and ends.
    """

    order: Tensor
    targets: Tensor

    def __init__(self, targets: Tensor, norm: nn.BatchNorm2d, act: nn.Module, conv: nn.Conv2d) -> None:
        super().__init__()
        order, round_bounds = _rounds_of_distinct_targets(targets)
        self.register_buffer("order", order)
        self.register_buffer("targets", targets[order].clone())
        self.round_bounds = round_bounds
        self.norm = norm
        self.act = act
        self.conv = conv

    def get_extra_state(self) -> dict:
        return {"round_bounds": list(self.round_bounds)}

    def set_extra_state(self, state: dict) -> None:
        self.round_bounds = list(state["round_bounds"])

    def forward(self, features: Tensor, new: Tensor) -> Tensor:
        inputs_per_group = self.conv.in_channels // self.conv.groups
        update = self.conv(channel_shuffle(self.act(self.norm(new)), inputs_per_group))
        update = update.index_select(1, self.order)
        for start, end in zip(self.round_bounds[:-1], self.round_bounds[1:]):
            features = features.index_add(1, self.targets[start:end], update[:, start:end])
        return features


def _rounds_of_distinct_targets(targets: Tensor) -> tuple[Tensor, list[int]]:
    """Order rows so that rows sharing a target fall in different, consecutive rounds.

    Row ``i`` goes to round ``r`` if it is the ``r``-th row (from 0) aimed at its target.
    Returns the row order and the round boundaries ``[0, ..., len(targets)]``.
    """
    seen: dict[int, int] = {}
    rounds = []
    for target in targets.tolist():
        rounds.append(seen.get(target, 0))
        seen[target] = rounds[-1] + 1
    round_of_row = torch.tensor(rounds, dtype=torch.long)
    order = torch.sort(round_of_row, stable=True).indices
    bounds = [0, *itertools.accumulate(torch.bincount(round_of_row).tolist())]
    return order, bounds


class DenseLayer(nn.Module):
    """LGC -> BN-act-3x3 group conv -> (SE) gives ``k`` new channels; SFR updates the old ones.

    Output: ``cat([SFR(x, new), new])`` with ``Cin + k`` channels.
    """

    def __init__(
        self,
        in_channels: int,
        growth: int,
        groups: int,
        bottleneck: int,
        act_layer: ActLayer,
        use_se: bool,
    ) -> None:
        super().__init__()
        if growth % groups:
            raise _not_divisible("growth", growth, groups)
        width = bottleneck * growth
        self.lgc: nn.Module = LearnedGroupConv(in_channels, width, groups, act_layer)
        self.norm = nn.BatchNorm2d(width)
        self.act = act_layer()
        self.conv = nn.Conv2d(width, growth, 3, padding=1, groups=groups, bias=False)
        self.se = SqueezeExcite(growth, reduction=1) if use_se else nn.Identity()
        self.sfr: nn.Module = SparseFeatureReactivation(growth, in_channels, groups, act_layer)

    def forward(self, x: Tensor) -> Tensor:
        new = self.se(self.conv(self.act(self.norm(self.lgc(x)))))
        return torch.cat([self.sfr(x, new), new], 1)


class CondenseNetV2(Backbone):
    """CondenseNetV2: a stem conv, dense blocks separated by 2x2 average pooling, and a head
    BN -> ReLU (the ``features`` map) -> global pool -> SE -> Linear -> h-swish (``pooled``)."""

    def __init__(
        self,
        stages: Sequence[int],
        growth: Sequence[int],
        groups: int = 8,
        bottleneck: int = 4,
        hidden_features: int = 1024,
        num_classes: int = 1000,
        stem_stride: int = 2,
        hswish_from_stage: int = 2,
        se_stages: Sequence[int] = (3, 4),
        head_se_reduction: int = 16,
        drop_rate: float = 0.0,
    ) -> None:
        super().__init__()
        if len(stages) != len(growth):
            raise ValueError("stages and growth must have the same length")
        self.groups = groups
        self.converted = False
        channels = 2 * growth[0]
        self.stem = nn.Conv2d(3, channels, 3, stride=stem_stride, padding=1, bias=False)
        blocks: list[nn.Module] = []
        for i, (depth, k) in enumerate(zip(stages, growth)):
            if i > 0:
                # ceil_mode keeps odd and tiny maps usable (any input size); even sizes are unaffected.
                blocks.append(nn.AvgPool2d(2, ceil_mode=True))
            act_layer: ActLayer = nn.Hardswish if i >= hswish_from_stage else nn.ReLU
            for _ in range(depth):
                blocks.append(DenseLayer(channels, k, groups, bottleneck, act_layer, i in se_stages))
                channels += k
        self.blocks = nn.Sequential(*blocks)
        self.final_norm = nn.BatchNorm2d(channels)
        self.final_act = nn.ReLU()
        self.head_se = SqueezeExcite(channels, reduction=head_se_reduction)
        self.fc = nn.Linear(channels, hidden_features)
        self.fc_act = nn.Hardswish()
        self.feature_channels = channels
        self.init_head(hidden_features, num_classes, drop_rate)
        # The reference initialises only convs and BN; its linears keep PyTorch's default.
        init_weights(self, small_linears=False)

    def forward_features(self, x: Tensor) -> Tensor:
        return self.final_act(self.final_norm(self.blocks(self.stem(x))))

    def forward_pool(self, features: Tensor) -> Tensor:
        pooled = self.head_se(F.adaptive_avg_pool2d(features, 1)).flatten(1)
        return self.fc_act(self.fc(pooled))

    def _masked_convs(self) -> list[_GroupMaskedConv]:
        return [m for m in self.modules() if isinstance(m, _GroupMaskedConv)]

    @staticmethod
    def stage_at(progress: float, groups: int) -> int:
        """Condensation steps due at ``progress``: one at each ``s / (2 (G - 1))``."""
        steps = int(progress * 2 * (groups - 1) + 1e-9)
        return max(0, min(groups - 1, steps))

    def condense(self, progress: float) -> bool:
        """Bring every mask to the density due at ``progress`` in [0, 1]; True if any changed.

        Called by the training loop (typically every iteration; a no-op between drops).
        """
        if self.converted:
            raise RuntimeError("this CondenseNetV2 is already converted to its inference form")
        stage = self.stage_at(progress, self.groups)
        return sum(m.condense_to(stage) for m in self._masked_convs()) > 0

    @property
    def condensation_complete(self) -> bool:
        return not self.converted and all(int(m.stage) >= m.final_stage for m in self._masked_convs())

    def convert(self) -> CondenseNetV2:
        """The inference form of this (fully condensed) model, as a new module."""
        if self.converted:
            return copy.deepcopy(self)
        incomplete = [m for m in self._masked_convs() if int(m.stage) < m.final_stage]
        if incomplete:
            stage = min(int(m.stage) for m in incomplete)
            raise CondensationIncompleteError(
                f"cannot convert: condensation is at step {stage} of {self.groups - 1} in "
                f"{len(incomplete)} layers; train through at least half of the schedule "
                "(or call condense(1.0)) first"
            )
        model = copy.deepcopy(self)
        for layer in model.modules():
            if isinstance(layer, DenseLayer):
                layer.lgc = layer.lgc.convert()
                layer.sfr = layer.sfr.convert()
        model.converted = True
        return model.eval()


# Published configurations. ImageNet: h-swish from block 3, SE in blocks 4 and 5.
PRESETS: dict[str, dict] = {
    "condensenetv2_a": dict(stages=(1, 1, 4, 6, 8), growth=(8, 8, 16, 32, 64), groups=8, hidden_features=828),
    "condensenetv2_b": dict(stages=(2, 4, 6, 8, 6), growth=(6, 12, 24, 48, 96), groups=6, hidden_features=1024),
    "condensenetv2_c": dict(stages=(4, 6, 8, 10, 8), growth=(8, 16, 32, 64, 128), groups=8, hidden_features=1024),
    # CIFAR: stem stride 1, three blocks at 32/16/8 pixels, SE only in the head (the
    # published 40.60M MACs / 1.223M parameters are matched only without SE in the blocks).
    # The counts do not tell where h-swish starts; we use ReLU in block 1, h-swish after.
    "condensenetv2_cifar": dict(
        stages=(14, 14, 14),
        growth=(8, 16, 32),
        groups=8,
        hidden_features=1024,
        num_classes=10,
        stem_stride=1,
        hswish_from_stage=1,
        se_stages=(),
    ),
}
# A small CIFAR-size network for quick runs (the image trainer's default).
PRESETS["condensenetv2_cifar_small"] = {**PRESETS["condensenetv2_cifar"], "stages": (4, 4, 4)}


def _build(name: str, **kwargs) -> CondenseNetV2:
    return CondenseNetV2(**{**PRESETS[name], **kwargs})


@register_model
def condensenetv2_a(**kwargs) -> CondenseNetV2:
    """CondenseNetV2-A: 46M MACs at 224 (converted)."""
    return _build("condensenetv2_a", **kwargs)


@register_model
def condensenetv2_b(**kwargs) -> CondenseNetV2:
    """CondenseNetV2-B: 146M MACs at 224 (converted)."""
    return _build("condensenetv2_b", **kwargs)


@register_model
def condensenetv2_c(**kwargs) -> CondenseNetV2:
    """CondenseNetV2-C: 310M MACs at 224 (converted)."""
    return _build("condensenetv2_c", **kwargs)


@register_model
def condensenetv2_cifar(**kwargs) -> CondenseNetV2:
    """CIFAR-size CondenseNetV2 (blocks 14-14-14, growth 8-16-32); any field can be overridden."""
    return _build("condensenetv2_cifar", **kwargs)


@register_model
def condensenetv2_cifar_small(**kwargs) -> CondenseNetV2:
    """A 4-4-4 CIFAR-size CondenseNetV2 for quick runs on a CPU."""
    return _build("condensenetv2_cifar_small", **kwargs)
