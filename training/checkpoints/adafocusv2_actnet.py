"""``adafocusv2-actnet``: the AdaFocusV2 authors' ActivityNet / FCVID / Mini-Kinetics checkpoints.

Their ``main_v2.py`` saves ``{"state_dict": DataParallel(AdaFocus).state_dict()}`` (so every
key starts with ``module.``, which the reader strips). The model is ours, part for part:

==============================  ==========================================================
their keys                      ours
==============================  ==========================================================
``global_CNN.*``                ``global_net``: MobileNetV2 in the tonylins layout on the
                                224 frame, or a torchvision-layout ResNet-50 on a 96x96
                                view (bilinear, ``align_corners=True``)
``global_CNN_fc.1``             ``global_aux`` (their ``.0`` is the dropout)
``local_CNN.*``                 ``local_net``: torchvision-layout ResNet-50 on the patch
``local_CNN_fc.1``              ``local_aux``
``policy_stn.encoder.{0,1}``    ``policy.reduce`` (1x1 conv, BN, Tanh)
``policy_stn.encoder.{4,5}``    ``policy.embed`` (Linear, BN1d, Tanh)
``policy_stn.gru.*_l0``         ``policy.rnn`` (their one-layer ``nn.GRU`` from a zero state
                                is our ``GRUCell`` step by step: same gates, same order)
``policy_stn.fc.0``             ``policy.head``, its two rows swapped: theirs outputs
                                (row, col) = (y, x), ours (x, y); the crop is the same
                                (``affine_grid`` with scale P/S equals our sampling grid)
``classifier.mlp.layers.{0,1}`` ``classifier.embed`` (Linear, BN1d, ReLU; running max)
``classifier.classifiers.N.1``  ``classifier.head_weight[N]`` / ``head_bias[N]``
==============================  ==========================================================

Their unused ImageNet heads (``global_CNN.classifier`` or ``global_CNN.fc``, ``local_CNN.fc``)
are reported, not loaded. What their test code does besides the weights is carried into the
model and its run folder: frames coarse to fine (their ``input_order``: 7, 0, 15, 3, ... for
16), ImageNet normalisation after a 256 resize and a 224 centre crop, and their exit
criterion, the largest raw logit (``confidence: max_logit``). The patch size is not in the
file: ``--patch-size`` is required (96, 128 or 160 for the published files).
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import Tensor

from training.adafocus.model import AdaFocusConfig, AdaFocusV2

from .formats import ImportedModel, ImportFormat, ImportOptions
from .reader import CheckpointError, TensorReader, load_mapped
from .torchvision_formats import (
    IMAGENET_PREPROCESSING,
    MOBILENETV2_BLOCKS,
    KeyMapper,
    map_mobilenetv2,
    map_resnet,
    mobilenetv2_kwargs,
    resnet_name,
)

FORMAT = "adafocusv2-actnet"
FRAME_SIZE = 224  # their input_size: every published ActivityNet-family model
RESNET_GLANCE_SIZE = 96  # their ResNet-50 glance's view (hard-coded in their model)


def _looks_like_actnet(state: Mapping[str, Tensor]) -> bool:
    return all(
        key in state
        for key in ("global_CNN_fc.1.weight", "policy_stn.gru.weight_ih_l0", "classifier.mlp.layers.0.weight")
    )


def _num_steps(reader: TensorReader) -> int:
    steps = {
        int(m.group(1)) for key in reader.keys() if (m := re.match(r"classifier\.classifiers\.(\d+)\.1\.weight$", key))
    }
    if not steps or steps != set(range(len(steps))):
        raise CheckpointError(f"{reader.source}: per-step heads classifier.classifiers.N.1 numbered {sorted(steps)}")
    return len(steps)


def _glance(reader: TensorReader) -> tuple[str, dict, int, str, list[str]]:
    """(model name, kwargs, glance size, glance resize, unused head keys) of ``global_CNN``."""
    if "global_CNN.features.0.0.weight" in reader:
        kwargs = mobilenetv2_kwargs(reader, "global_CNN.", layout="tonylins")
        return "mobilenetv2", kwargs, FRAME_SIZE, "auto", ["global_CNN.classifier.weight", "global_CNN.classifier.bias"]
    if "global_CNN.conv1.weight" in reader:
        name, _, _ = resnet_name(reader, "global_CNN.")
        return name, {}, RESNET_GLANCE_SIZE, "bilinear_align_corners", ["global_CNN.fc.weight", "global_CNN.fc.bias"]
    raise CheckpointError(
        f"{reader.source}: global_CNN is neither their MobileNetV2 nor a ResNet (no features.0.0 / conv1)"
    )


def _config(reader: TensorReader, options: ImportOptions) -> tuple[AdaFocusConfig, list[str]]:
    """Our architecture for the file (every size read from its shapes), and the glance's unused head keys."""
    if options.patch_size is None:
        raise CheckpointError(f"{FORMAT}: the file does not record the patch size; give --patch-size (96, 128 or 160)")
    global_model, global_kwargs, glance_size, glance_resize, glance_head = _glance(reader)
    local_model, _, _ = resnet_name(reader, "local_CNN.")
    try:
        config = AdaFocusConfig(
            num_classes=reader.shape("global_CNN_fc.1.weight")[0],
            num_frames=_num_steps(reader),
            frame_size=FRAME_SIZE,
            glance_size=glance_size,
            glance_resize=glance_resize,  # type: ignore[arg-type]
            patch_size=options.patch_size,
            global_model=global_model,
            global_kwargs=global_kwargs,
            local_model=local_model,
            local_kwargs={},
            policy_channels=reader.shape("policy_stn.encoder.0.weight")[0],
            policy_hidden=reader.shape("policy_stn.gru.weight_hh_l0")[1],
            classifier="pooling",
            classifier_width=reader.shape("classifier.mlp.layers.0.weight")[0],
            dropout=0.2,  # their --dropout; inactive at inference
            frame_order="coarse_to_fine",
        )
    except ValueError as error:  # a patch size larger than the frame, say
        raise CheckpointError(f"{FORMAT}: {error}") from None
    return config, glance_head


def build_actnet(reader: TensorReader, options: ImportOptions) -> ImportedModel:
    """An AdaFocusV2 ActivityNet-family checkpoint as our :class:`AdaFocusV2`, every tensor used or reported."""
    config, glance_head = _config(reader, options)
    model = AdaFocusV2(config)
    mapper = KeyMapper(reader, model)
    global_model = config.global_model
    if global_model == "mobilenetv2":
        map_mobilenetv2(mapper, "global_net.", "global_CNN.", MOBILENETV2_BLOCKS, "tonylins")
    else:
        _, block, layers = resnet_name(reader, "global_CNN.")
        map_resnet(mapper, "global_net.", "global_CNN.", block, layers)
    _, block, layers = resnet_name(reader, "local_CNN.")
    map_resnet(mapper, "local_net.", "local_CNN.", block, layers)
    mapper.linear("global_aux", "global_CNN_fc.1")
    mapper.linear("local_aux", "local_CNN_fc.1")
    _map_policy(mapper)
    _map_classifier(mapper, reader, config)
    reader.report(
        [*glance_head, "local_CNN.fc.weight", "local_CNN.fc.bias"], "their backbones' ImageNet heads (unused)"
    )
    load_mapped(model, mapper.mapping, reader.source)
    notes = mapper.notes() + [
        "policy_stn.fc.0: rows swapped: the file's (row, col) location is served as (x, y), the same patch"
    ]
    return ImportedModel(
        kind="adafocus",
        model=model.eval(),
        model_name="adafocus_v2",
        model_kwargs=config.as_dict(),
        num_classes=config.num_classes,
        preprocessing=dict(IMAGENET_PREPROCESSING),
        notes=notes,
        confidence="max_logit",
    )


def _map_policy(mapper: KeyMapper) -> None:
    mapper.conv("policy.reduce.0", "policy_stn.encoder.0")
    mapper.batchnorm("policy.reduce.1", "policy_stn.encoder.1")
    mapper.linear("policy.embed.0", "policy_stn.encoder.4")
    mapper.batchnorm("policy.embed.1", "policy_stn.encoder.5")
    for entry in ("weight_ih", "weight_hh", "bias_ih", "bias_hh"):
        mapper.tensor(f"policy.rnn.{entry}", f"policy_stn.gru.{entry}_l0")
    mapper.linear("policy.head", "policy_stn.fc.0")
    swap = torch.tensor([1, 0])  # (row, col) -> (x, y) = (col, row)
    for entry in ("weight", "bias"):
        mapper.mapping[f"policy.head.{entry}"] = mapper.mapping[f"policy.head.{entry}"][swap]


def _map_classifier(mapper: KeyMapper, reader: TensorReader, config: AdaFocusConfig) -> None:
    mapper.linear("classifier.embed.0", "classifier.mlp.layers.0")
    mapper.batchnorm("classifier.embed.1", "classifier.mlp.layers.1")
    head = (config.num_classes, config.classifier_width)
    weights = [reader.take(f"classifier.classifiers.{t}.1.weight", head) for t in range(config.num_frames)]
    biases = [reader.take(f"classifier.classifiers.{t}.1.bias", head[:1]) for t in range(config.num_frames)]
    mapper.mapping["classifier.head_weight"] = torch.stack(weights)
    mapper.mapping["classifier.head_bias"] = torch.stack(biases)


FORMATS = [
    ImportFormat(
        FORMAT,
        "AdaFocusV2 ActivityNet / FCVID / Mini-Kinetics checkpoints (main_v2.py; needs --patch-size)",
        build=build_actnet,
        matches=_looks_like_actnet,
    )
]
