"""``adafocusv2-sthsth``: the AdaFocusV2 Something-Something V1/V2 and Jester checkpoints.

The files ``main.py`` of ``Experiments on Sth-Sth and Jester`` (LeapLabTHU/AdaFocusV2) saves
(``sthv1_p128.pth.tar`` and the like): ``{'epoch', 'arch', 'state_dict', 'optimizer',
'best_prec1'}``, the state dict of ``DataParallel(AdaFocus)`` (every key with ``module.``):

* ``global_CNN.base_model.features.*``: TSM's MobileNetV2 (``features.N.conv.M``; the residual
  blocks' expansion conv wrapped by TemporalShift: ``conv.0.net.weight``), on 8 segments;
* ``local_CNN.base_model.*``: torchvision's ResNet-50, every block's ``conv1`` wrapped
  (``layerL.N.conv1.net.weight``), its ``fc`` a Dropout (no key), on ``int(1.5 * 8) = 12``
  segments (not in the shapes: their ``main.py`` fixes it);
* ``{global,local}_CNN.new_fc`` (the prediction) and ``new_new_fc`` (auxiliary);
* ``policy_stn.{0,1,4,5,7,8,10}``: conv1x1 ``T * 1280 -> 64``, BN, Linear ``64 * 7 * 7 ->
  1024``, BN1d, Linear ``1024 -> 512``, BN1d, Linear ``512 -> 2`` (sigmoid): one location per
  clip, ``(row, col)``.

Onto :class:`~training.adafocus.sthsth.TsmAdaFocusV2`: classes, segment count, policy widths and
the frame size (32 times the policy's map side) come from the shapes; ``--patch-size`` must be
given (no shape records it; the file names do). The policy's last layer has its two rows
swapped, so our location is ``(x, y)``. Every tensor of the state dict is used; the
optimizer entry (training state) is noted, not imported.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from torch import Tensor

from pipeline.frames.transform import IMAGENET_MEAN_RGB, IMAGENET_STD_RGB
from training.adafocus.sthsth import TsmAdaFocusConfig, build_tsm_adafocus

from .formats import ImportedModel, ImportFormat, ImportOptions
from .reader import CheckpointError, TensorReader, load_mapped

FORMAT_NAME = "adafocusv2-sthsth"
GLOBAL_CHANNELS = 1280  # their TSN reshapes the glance maps with a literal 1280
FOCUS_PER_GLANCE = 1.5  # main.py: local_CNN = TSN(..., int(args.num_segments * 1.5), ...)
# The policy's last Linear: theirs outputs (row, col) = (y, x); ours (x, y).
POLICY_HEAD = "policy.net.{index}"

# Our key -> theirs, the first matching rule. ``{shift}``: ``.net`` where we wrap the conv in a
# TemporalShift; theirs wraps the bare conv, ours the conv-BN-activation, so their BN stays put.
_RULES: tuple[tuple[str, Any], ...] = (
    # MobileNetV2: our block part p (ConvBnAct: .0 conv, .1 BN) is their conv.{3p}, conv.{3p+1}
    (
        r"global_net\.features\.(\d+)\.block\.(\d+)\.(net\.)?([01])\.(.+)",
        lambda m: (
            f"global_CNN.base_model.features.{m[1]}.conv.{3 * int(m[2]) + int(m[4])}"
            + (".net" if m[3] and m[4] == "0" else "")
            + f".{m[5]}"
        ),
    ),
    (r"global_net\.features\.(\d+)\.([01])\.(.+)", lambda m: f"global_CNN.base_model.features.{m[1]}.{m[2]}.{m[3]}"),
    (r"global_fc\.(.+)", lambda m: f"global_CNN.new_fc.{m[1]}"),
    (r"global_aux_fc\.(.+)", lambda m: f"global_CNN.new_new_fc.{m[1]}"),
    # ResNet: our stem.0 = their conv1 + bn1; block convK(.net).{0,1} = convK(.net) / bnK
    (r"local_net\.stem\.0\.0\.(.+)", lambda m: f"local_CNN.base_model.conv1.{m[1]}"),
    (r"local_net\.stem\.0\.1\.(.+)", lambda m: f"local_CNN.base_model.bn1.{m[1]}"),
    (
        r"local_net\.stages\.(\d+)\.(\d+)\.conv(\d)\.(net\.)?0\.(.+)",
        lambda m: f"local_CNN.base_model.layer{int(m[1]) + 1}.{m[2]}.conv{m[3]}{'.net' if m[4] else ''}.{m[5]}",
    ),
    (
        r"local_net\.stages\.(\d+)\.(\d+)\.conv(\d)\.(net\.)?1\.(.+)",
        lambda m: f"local_CNN.base_model.layer{int(m[1]) + 1}.{m[2]}.bn{m[3]}.{m[5]}",
    ),
    (
        r"local_net\.stages\.(\d+)\.(\d+)\.shortcut\.([01])\.(.+)",
        lambda m: f"local_CNN.base_model.layer{int(m[1]) + 1}.{m[2]}.downsample.{m[3]}.{m[4]}",
    ),
    (r"local_fc\.(.+)", lambda m: f"local_CNN.new_fc.{m[1]}"),
    (r"local_aux_fc\.(.+)", lambda m: f"local_CNN.new_new_fc.{m[1]}"),
    (r"policy\.net\.(\d+)\.(.+)", lambda m: f"policy_stn.{m[1]}.{m[2]}"),
)


def authors_key(ours: str) -> str:
    """The key (without ``module.``) of the authors' file that fills our ``ours``."""
    for pattern, name in _RULES:
        match = re.fullmatch(pattern, ours)
        if match:
            return name(match)
    raise KeyError(f"no rule maps {ours} onto the authors' layout")


def authors_layout(model: Any) -> list[tuple[str, tuple[int, ...]]]:
    """``(key with module., shape)`` of the file that fills ``model``: the layout we read."""
    return [(f"module.{authors_key(key)}", tuple(value.shape)) for key, value in model.state_dict().items()]


def _looks_like_sthsth(state: Mapping[str, Tensor]) -> bool:
    return (
        "global_CNN.base_model.features.0.0.weight" in state
        and "local_CNN.base_model.layer1.0.conv1.net.weight" in state
        and "policy_stn.0.weight" in state
    )


def _shape(reader: TensorReader, key: str, dims: int) -> tuple[int, ...]:
    shape = reader.shape(key)
    if len(shape) != dims:
        raise CheckpointError(f"{reader.source}: {key} has shape {list(shape)}, expected a {dims}-d tensor")
    return shape


def read_config(reader: TensorReader, patch_size: int) -> tuple[TsmAdaFocusConfig, list[str]]:
    """The architecture the file's shapes imply (and notes on what they do not say)."""
    num_classes, global_channels = _shape(reader, "global_CNN.new_fc.weight", 2)
    if global_channels != GLOBAL_CHANNELS:
        raise CheckpointError(
            f"{reader.source}: global_CNN.new_fc.weight reads {global_channels} features; "
            f"the authors' MobileNetV2 glance has {GLOBAL_CHANNELS}"
        )
    conv_channels, stacked = _shape(reader, "policy_stn.0.weight", 4)[:2]
    if stacked % global_channels:
        raise CheckpointError(
            f"{reader.source}: policy_stn.0.weight reads {stacked} channels, not a multiple of {global_channels}"
        )
    glance_segments = stacked // global_channels
    # The policy's Linear layers sit at 4, 7, 10, ... (Linear, BN1d, Tanh triples after the
    # conv, BN, Tanh, Flatten); the last one has the two outputs.
    linears = []
    index = 4
    while f"policy_stn.{index}.weight" in reader:
        linears.append(_shape(reader, f"policy_stn.{index}.weight", 2))
        index += 3
    if not linears or linears[-1][0] != 2:
        raise CheckpointError(f"{reader.source}: no policy_stn Linear with 2 outputs (policy_stn.4, .7, ...)")
    flat = linears[0][1]
    side = math.isqrt(flat // conv_channels) if flat % conv_channels == 0 else 0
    if side == 0 or side * side * conv_channels != flat:
        raise CheckpointError(
            f"{reader.source}: policy_stn.4.weight reads {flat} values, not {conv_channels} channels of a square map"
        )
    frame_size = 32 * side  # MobileNetV2's stride: a 7x7 map is the 224 frame of their test
    if not 0 < patch_size <= frame_size:
        raise CheckpointError(f"--patch-size {patch_size} must be in (0, the frame size {frame_size}]")
    config = TsmAdaFocusConfig(
        num_classes=num_classes,
        glance_segments=glance_segments,
        focus_segments=int(glance_segments * FOCUS_PER_GLANCE),
        frame_size=frame_size,
        patch_size=patch_size,
        policy_channels=conv_channels,
        policy_hidden=tuple(shape[0] for shape in linears[:-1]),
    )
    notes = [
        f"focus segments {config.focus_segments} = int(1.5 x {glance_segments} glance segments), "
        "as the authors' main.py builds it (no shape records it)",
        f"patch size {patch_size} from --patch-size (no shape records it)",
    ]
    return config, notes


def preprocessing_of(config: TsmAdaFocusConfig) -> dict[str, Any]:
    """How the authors' test prepares a clip (``main.py`` ``val_loader``, ``TSNDataSet`` val indices)."""
    return {
        "input_size": config.frame_size,  # GroupCenterCrop(224)
        "resize": config.frame_size * 256 // 224,  # GroupScale(256): the shorter side, PIL bilinear
        "crop": "centre",  # one centre crop, no flip, one clip per video
        "mean": list(IMAGENET_MEAN_RGB),  # after /255 (ToTorchFormatTensor(div=True))
        "std": list(IMAGENET_STD_RGB),
        "color": "RGB",
        "num_frames": config.num_frames,
        "glance_frames": config.glance_segments,
        "focus_frames": config.focus_segments,
        "frame_layout": "glance frames then focus frames, each set in time order",
        # training.adafocus.sthsth.clip_frame_indices: for each set of T segments of an
        # N-frame video, frame int(N / T * (i + 0.5)), i < T; all frame 0 when N <= T.
        "sampling": "tsn_segment_centres",
        "whole_clip": True,  # bidirectional temporal shift: every frame before any answer
        "early_exit": False,
        "location": "(x, y) in (0, 1): left-top = location * (frame_size - patch_size)",
    }


def build(reader: TensorReader, options: ImportOptions) -> ImportedModel:
    """The authors' Sth-Sth / Jester state dict as our :class:`TsmAdaFocusV2`."""
    if options.patch_size is None:
        raise CheckpointError(
            f"{FORMAT_NAME} needs --patch-size: the file does not record it "
            "(the released files name it: sthv1_p128.pth.tar is 128; 128, 144, 160 or 176)"
        )
    config, notes = read_config(reader, options.patch_size)
    model = build_tsm_adafocus(config)
    mapping = {key: reader.take(authors_key(key), value.shape) for key, value in model.state_dict().items()}
    for entry in ("weight", "bias"):
        key = f"{POLICY_HEAD.format(index=len(model.policy.net) - 2)}.{entry}"
        mapping[key] = mapping[key].flip(0)  # (row, col) -> (x, y)
    load_mapped(model, mapping, reader.source)
    notes.append("policy output (row, col) -> (x, y): the rows of policy_stn's last Linear swapped")
    notes += _file_notes(reader.payload)
    return ImportedModel(
        kind="adafocus_tsm",
        model=model.eval(),
        model_name="adafocusv2_tsm",
        model_kwargs=config.as_dict(),
        num_classes=config.num_classes,
        preprocessing=preprocessing_of(config),
        notes=notes,
    )


def _file_notes(payload: Any) -> list[str]:
    """What the file's other entries say (the optimizer's tensors are training state)."""
    if not isinstance(payload, Mapping):
        return []
    notes = []
    facts = [f"{key} {payload[key]}" for key in ("epoch", "arch", "best_prec1") if key in payload]
    if facts:
        notes.append(f"the file's training record: {', '.join(facts)}")
    optimizer = payload.get("optimizer")
    if isinstance(optimizer, Mapping):
        state = optimizer.get("state", {})
        buffers = sum(
            isinstance(value, Tensor)
            for entry in state.values()
            if isinstance(entry, Mapping)
            for value in entry.values()
        )
        notes.append(f"optimizer entry (training state: {buffers} tensors) not imported")
    return notes


FORMATS = [
    ImportFormat(
        FORMAT_NAME,
        "AdaFocusV2 Something-Something V1/V2 and Jester checkpoints (TSM; sthv1_p128.pth.tar, ...); --patch-size",
        build=build,
        matches=_looks_like_sthsth,
    )
]
