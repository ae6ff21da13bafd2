"""AdaFocusV2 for Something-Something V1/V2 and Jester: TSM backbones, one patch per clip.

The authors' second configuration (``Experiments on Sth-Sth and Jester/main.py`` of
LeapLabTHU/AdaFocusV2), which differs from the streaming model of :mod:`.model` in kind:

* two frame sets of one video, sampled separately (TSN segment centres): ``glance_segments``
  frames (8) for the global network and ``focus_segments`` (12, ``int(1.5 * 8)``) for the
  local one, all ``frame_size`` (224) square, normalised;
* the global network, a MobileNetV2 with temporal shift in its residual blocks, runs on the
  whole glance frames; the policy reads the feature maps of *all* glance frames at once
  (stacked along channels: ``T * 1280`` channels) and regresses *one* location per clip;
* the local network, a ResNet-50 with temporal shift before every block's first conv, runs
  on the ``patch_size`` patch cropped at that location from every focus frame;
* each network has two linear heads on its pooled features: ``fc`` (the prediction; it reads
  the features through a stop-gradient) and ``aux_fc`` (trains the backbone); the clip's
  logits are the sum of the two networks' ``fc`` logits, each averaged over its frames
  (TSN's "avg" consensus). That is what the authors' test code scores.

The shift is bidirectional, so nothing can be answered before the last frame: the model is
one whole-clip pass with no early exit. Locations are ``(x, y)`` in ``(0, 1)^2`` (the patch's
left-top corner is ``location * (frame_size - patch_size)``); the authors' policy outputs
``(row, col)``, which the importer bridges by swapping its last layer's rows.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import NamedTuple

import torch
from torch import Tensor, nn

from training.models import create_model
from training.models.mobilenetv2 import MobileNetV2
from training.models.resnet import ResNet
from training.models.temporal_shift import shift_mobilenetv2, shift_resnet

from .crop import PatchCrop


@dataclass
class TsmAdaFocusConfig:
    """The architecture (stored with imports and exports). Defaults: the authors' Sth-Sth V1 p128 model."""

    num_classes: int = 174
    glance_segments: int = 8
    focus_segments: int = 12
    frame_size: int = 224  # the frames of both sets; the glance sees the whole frame
    patch_size: int = 128
    global_model: str = "mobilenetv2"
    global_kwargs: dict = field(default_factory=dict)
    local_model: str = "resnet50"
    local_kwargs: dict = field(default_factory=dict)
    shift_div: int = 8  # 1/8 of the channels move forward in time, 1/8 backward
    policy_channels: int = 64
    policy_hidden: tuple[int, ...] = (1024, 512)
    dropout: float = 0.5  # on the pooled features, in training only (TSN's)

    def __post_init__(self) -> None:
        self.policy_hidden = tuple(self.policy_hidden)
        if not 0 < self.patch_size <= self.frame_size:
            raise ValueError(f"patch size {self.patch_size} must be in (0, frame size {self.frame_size}]")
        if self.glance_segments < 1 or self.focus_segments < 1:
            raise ValueError("glance_segments and focus_segments must be positive")
        if not self.policy_hidden:
            raise ValueError("policy_hidden needs at least one width")

    @property
    def num_frames(self) -> int:
        """Frames per clip input: the glance frames, then the focus frames."""
        return self.glance_segments + self.focus_segments

    def as_dict(self) -> dict:
        data = dataclasses.asdict(self)
        data["policy_hidden"] = list(self.policy_hidden)
        return data


class TsmClipOutput(NamedTuple):
    """What one whole-clip pass gives, for a batch of ``B`` clips and ``K`` classes."""

    logits: Tensor  # (B, K): global_logits + local_logits, the authors' prediction
    location: Tensor  # (B, 2): the clip's patch location in (0, 1)^2, (x, y)
    global_logits: Tensor  # (B, K): the glance's fc head, averaged over the glance frames
    local_logits: Tensor  # (B, K): the focus's fc head, averaged over the focus frames
    global_aux_logits: Tensor  # (B, K): the glance's auxiliary head (averaged)
    local_aux_logits: Tensor  # (B, K): the focus's auxiliary head (averaged)


def tsn_segment_indices(num_frames: int, segments: int) -> list[int]:
    """0-based frames a test clip takes from an ``num_frames``-frame video (TSN's centres).

    The authors' validation sampling: segment ``i`` of ``segments`` equal ones contributes
    frame ``int(tick / 2 + tick * i)``, ``tick = num_frames / segments``; a video with at most
    ``segments`` frames gives frame 0 every time (their code's choice, kept).
    """
    if num_frames < 1 or segments < 1:
        raise ValueError(f"need a positive frame count and segment count, got {num_frames}, {segments}")
    if num_frames <= segments:
        return [0] * segments
    tick = num_frames / float(segments)
    return [int(tick / 2.0 + tick * i) for i in range(segments)]


def clip_frame_indices(num_frames: int, config: TsmAdaFocusConfig) -> list[int]:
    """The model's input frames for a video: the glance's indices, then the focus's."""
    return tsn_segment_indices(num_frames, config.glance_segments) + tsn_segment_indices(
        num_frames, config.focus_segments
    )


class ClipPolicy(nn.Module):
    """All glance frames' feature maps -> one patch location ``(x, y)`` for the clip.

    Conv1x1 (no bias) -> BN -> Tanh -> flatten -> [Linear -> BN1d -> Tanh] per hidden width
    -> Linear(2) -> Sigmoid, one ``nn.Sequential`` whose indices are the authors' (0, 1, 4,
    5, 7, 8, 10 for two hidden layers).
    """

    def __init__(
        self, in_channels: int, map_size: tuple[int, int], conv_channels: int, hidden: tuple[int, ...]
    ) -> None:
        super().__init__()
        layers: list[nn.Module] = [
            nn.Conv2d(in_channels, conv_channels, 1, bias=False),
            nn.BatchNorm2d(conv_channels),
            nn.Tanh(),
            nn.Flatten(),
        ]
        width = conv_channels * map_size[0] * map_size[1]
        for out in hidden:
            layers += [nn.Linear(width, out), nn.BatchNorm1d(out), nn.Tanh()]
            width = out
        layers += [nn.Linear(width, 2), nn.Sigmoid()]
        self.net = nn.Sequential(*layers)

    def forward(self, stacked_features: Tensor) -> Tensor:
        return self.net(stacked_features)


class TsmAdaFocusV2(nn.Module):
    """The Sth-Sth / Jester AdaFocusV2 model; :meth:`forward` runs whole clips."""

    def __init__(self, config: TsmAdaFocusConfig) -> None:
        super().__init__()
        self.config = config
        global_net = create_model(config.global_model, num_classes=0, **config.global_kwargs)
        local_net = create_model(config.local_model, num_classes=0, **config.local_kwargs)
        map_size = self._glance_map_size(global_net)
        self.global_net = _shifted(global_net, config.glance_segments, config.shift_div)
        self.local_net = _shifted(local_net, config.focus_segments, config.shift_div)
        self.dropout = nn.Dropout(config.dropout) if config.dropout > 0 else nn.Identity()
        self.global_fc = nn.Linear(self.global_net.num_features, config.num_classes)
        self.global_aux_fc = nn.Linear(self.global_net.num_features, config.num_classes)
        self.local_fc = nn.Linear(self.local_net.num_features, config.num_classes)
        self.local_aux_fc = nn.Linear(self.local_net.num_features, config.num_classes)
        self.policy = ClipPolicy(
            self.global_net.feature_channels * config.glance_segments,
            map_size,
            config.policy_channels,
            config.policy_hidden,
        )
        self.crop = PatchCrop(config.frame_size, config.patch_size)

    def _glance_map_size(self, net: nn.Module) -> tuple[int, int]:
        with torch.no_grad():
            was_training = net.training
            net.eval()
            probe = torch.zeros(1, 3, self.config.frame_size, self.config.frame_size)
            size = tuple(net(probe).features.shape[-2:])
            net.train(was_training)
        return size  # type: ignore[return-value]

    def split(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """``(B, Tg + Tf, 3, S, S)`` -> the glance frames and the focus frames."""
        expected = self.config.num_frames
        if frames.dim() != 5 or frames.shape[1] != expected:
            raise ValueError(
                f"clips must be (B, {expected}, 3, S, S): {self.config.glance_segments} glance frames then "
                f"{self.config.focus_segments} focus frames; got {tuple(frames.shape)}"
            )
        return frames[:, : self.config.glance_segments], frames[:, self.config.glance_segments :]

    def glance(self, glance: Tensor) -> tuple[Tensor, Tensor]:
        """Glance frames ``(B, Tg, 3, S, S)`` -> stacked maps ``(B, Tg * C, h, w)``, pooled ``(B, Tg, C)``."""
        batch, steps = glance.shape[:2]
        out = self.global_net(glance.flatten(0, 1))
        features = out.features.reshape(batch, steps * out.features.shape[1], *out.features.shape[2:])
        return features, out.pooled.reshape(batch, steps, -1)

    def focus(self, focus: Tensor, location: Tensor) -> Tensor:
        """Pooled local features ``(B, Tf, C)`` of the patches at ``location`` ``(B, 2)``.

        All frames of a clip share its location: the crop runs once per clip on the frames
        stacked along channels (the authors' grid over ``3 * Tf`` channels).
        """
        batch, steps, channels, size = focus.shape[0], focus.shape[1], focus.shape[2], focus.shape[-1]
        patches = self.crop(focus.reshape(batch, steps * channels, size, size), location)
        patches = patches.reshape(batch * steps, channels, self.config.patch_size, self.config.patch_size)
        return self.local_net(patches).pooled.reshape(batch, steps, -1)

    def forward(self, frames: Tensor, location: Tensor | None = None) -> TsmClipOutput:
        """Whole clips ``(B, Tg + Tf, 3, S, S)`` (glance frames first) -> :class:`TsmClipOutput`.

        ``location`` ``(B, 2)`` replaces the policy's (the authors' random-patch training
        branch). The policy and the ``fc`` heads read the features through a stop-gradient,
        as in the authors' training.
        """
        glance, focus = self.split(frames)
        stacked, global_pooled = self.glance(glance)
        if location is None:
            location = self.policy(stacked.detach())
        local_pooled = self.focus(focus, location)
        global_pooled, local_pooled = self.dropout(global_pooled), self.dropout(local_pooled)
        global_logits = self.global_fc(global_pooled.detach()).mean(dim=1)
        local_logits = self.local_fc(local_pooled.detach()).mean(dim=1)
        return TsmClipOutput(
            logits=global_logits + local_logits,
            location=location,
            global_logits=global_logits,
            local_logits=local_logits,
            global_aux_logits=self.global_aux_fc(global_pooled).mean(dim=1),
            local_aux_logits=self.local_aux_fc(local_pooled).mean(dim=1),
        )


def _shifted(net: nn.Module, segments: int, shift_div: int) -> nn.Module:
    if isinstance(net, ResNet):
        return shift_resnet(net, segments, shift_div)
    if isinstance(net, MobileNetV2):
        return shift_mobilenetv2(net, segments, shift_div)
    raise ValueError(f"no temporal shift placement for a {type(net).__name__} (ResNet and MobileNetV2 have one)")


def build_tsm_adafocus(config: TsmAdaFocusConfig | dict) -> TsmAdaFocusV2:
    """The model of ``config`` (a :class:`TsmAdaFocusConfig` or its ``as_dict()``), in eval mode."""
    if isinstance(config, dict):
        config = TsmAdaFocusConfig(**config)
    return TsmAdaFocusV2(config).eval()
