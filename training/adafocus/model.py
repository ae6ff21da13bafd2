"""AdaFocusV2: glance at every frame, focus on one patch, predict after every frame.

The model is five parts, each its own module: a *global* network on a cheap view of the
frame (the glance), a *policy* that reads the glance's feature map and picks a patch
location, a differentiable *crop*, a *local* network on the patch (the focus), and a
*classifier* that fuses both and predicts after every frame. Two auxiliary linear heads
(one per network) supervise each frame during training.

The same class builds the baselines that share the harness (``variant``):

* ``adafocus_v2``: the policy picks the patch (the method);
* ``adafocus_v1``: AdaFocus (V1): a reinforcement-learning policy (``policy`` ``grid`` or
  ``gaussian``, :mod:`training.adafocus.v1.policy`) and the recurrent classifier, trained
  in stages by :mod:`training.adafocus.v1.trainer`; the same inference interface;
* ``random_patch`` / ``centre_patch``: a uniformly random or the central patch, no policy;
* ``oracle_patch``: a patch centred on the ground-truth target of each frame (a benchmark with
  target boxes, ``training.adafocus.focus_quality``): the upper bound of a policy, not servable;
* ``glance_only``: the global network alone;
* ``full_frame``: the local network on the whole frame, no glance (the expensive reference).
"""

from __future__ import annotations

import dataclasses
import typing
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from pipeline.manifest import PATCH_FOCUS, Focus
from training.models import create_model

from .classifiers import build_classifier
from .crop import PatchCrop, random_locations
from .v1.policy import build_v1_policy
from .v2.policy import PatchPolicy

Variant = Literal[
    "adafocus_v2", "adafocus_v1", "random_patch", "centre_patch", "oracle_patch", "glance_only", "full_frame"
]
Policy = Literal["regression", "grid", "gaussian"]
Classifier = Literal["pooling", "gru"]
FrameOrder = Literal["chronological", "coarse_to_fine"]
# How the frame becomes the glance's view: "auto" = exact average pooling for an integer factor,
# bilinear otherwise; "bilinear_align_corners" = bilinear with align_corners=True (the AdaFocusV2
# authors' ResNet-50 glance at 96x96).
GlanceResize = Literal["auto", "bilinear_align_corners"]
VARIANTS: tuple[str, ...] = typing.get_args(Variant)
POLICIES: tuple[str, ...] = typing.get_args(Policy)
# Where each variant's local network looks (the manifest's vocabulary, pipeline.manifest.Focus).
FOCUS_OF_VARIANT: dict[str, Focus] = {
    "adafocus_v2": "policy",
    "adafocus_v1": "policy",
    "random_patch": "random",
    "centre_patch": "centre",
    "oracle_patch": "oracle",
    "glance_only": "none",
    "full_frame": "full_frame",
}
PatchFocus = Literal["policy", "random", "centre", "oracle"]  # the focus kinds that place a patch (PATCH_FOCUS)


def oracle_locations(boxes: Tensor, frame_size: int, patch_size: int) -> Tensor:
    """Locations ``(..., 2)`` of patches centred on boxes ``(..., 4)`` (``[x0, y0, x1, y1)``), kept in
    the frame; the centre patch where a box is unknown (NaN). The torch twin of
    ``training.adafocus.focus_quality.oracle_locations``."""
    centre = (boxes[..., :2] + boxes[..., 2:]) / 2
    location = (centre - patch_size / 2) / max(frame_size - patch_size, 1)
    return torch.nan_to_num(location, nan=0.5).clamp(0.0, 1.0).float()


@dataclass
class AdaFocusConfig:
    """Everything that defines the architecture (stored with every checkpoint and export).

    The defaults are the default model of ``python training/train.py`` on the synthetic
    benchmark; :class:`training.adafocus.config.TrainConfig` takes its model options' defaults
    from here, so the two cannot disagree.
    """

    num_classes: int
    num_frames: int = 8
    frame_size: int = 128
    glance_size: int = 32
    glance_resize: GlanceResize = "auto"
    patch_size: int = 64
    global_model: str = "mobilenetv2_035"
    global_kwargs: dict = field(default_factory=lambda: {"output_stride": 8, "last_channels": 256})
    # A narrow ResNet-18: on the synthetic benchmark it learns from scratch in minutes where
    # depthwise networks (MobileNetV2-0.5) stay at chance for hundreds of steps.
    local_model: str = "resnet18"
    local_kwargs: dict = field(default_factory=lambda: {"width": 24})
    policy_channels: int = 64
    policy_hidden: int = 256
    classifier: Classifier = "pooling"
    classifier_width: int = 256
    shared_head: bool = False
    dropout: float = 0.2
    # Dropout before the two auxiliary heads (the authors' ``--fc_dropout``, 0.2 in their
    # recipe); 0 keeps the heads as they were. It has no weights: the state dict is the same.
    aux_dropout: float = 0.0
    variant: Variant = "adafocus_v2"
    frame_order: FrameOrder = "chronological"
    policy: Policy = "regression"  # V2's location regressor; V1: "grid" or "gaussian" actor-critic
    skip_frames: bool = False  # V1 grid policy only: a "skip the focus" action

    def __post_init__(self) -> None:
        if self.variant not in VARIANTS:
            raise ValueError(f"unknown variant {self.variant!r}; use one of {', '.join(VARIANTS)}")
        if self.policy not in POLICIES:
            raise ValueError(f"unknown policy {self.policy!r}; use one of {', '.join(POLICIES)}")
        if self.frame_order not in typing.get_args(FrameOrder):
            raise ValueError("frame_order must be 'chronological' or 'coarse_to_fine'")
        if self.glance_resize not in typing.get_args(GlanceResize):
            raise ValueError(f"unknown glance resize {self.glance_resize!r}; use auto or bilinear_align_corners")
        if self.classifier not in typing.get_args(Classifier):
            raise ValueError(f"unknown classifier {self.classifier!r}; use pooling or gru")
        if not 0 < self.glance_size <= self.frame_size:
            raise ValueError(f"glance size {self.glance_size} must be in (0, frame size {self.frame_size}]")
        if not 0 < self.patch_size <= self.frame_size:
            raise ValueError(f"patch size {self.patch_size} must be in (0, frame size {self.frame_size}]")

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def coarse_to_fine_order(num_frames: int) -> list[int]:
    """The middle frame, then both ends, then the midpoints of ever finer segments.

    The AdaFocusV2 authors' test order (their ``input_order``): level ``q = 2, 4, 8, ...``
    cuts ``[0, T - 1]`` into ``q`` segments at ``floor(linspace(0, T - 1, q + 1))`` and adds
    each segment's ``floor`` midpoint not yet chosen. For 16 frames: 7, 0, 15, 3, 11, 1, 5,
    9, 13, 2, 4, 6, 8, 10, 12, 14. It sees the whole video early but cannot run on a stream.
    """
    if num_frames <= 2:
        return list(range(num_frames))
    order = [(num_frames - 1) // 2, 0, num_frames - 1]
    segments = 2
    while len(order) < num_frames:  # ends: once segments >= T - 1 every frame is a bound
        bounds = np.floor(np.linspace(0, num_frames - 1, segments + 1)).astype(int).tolist()
        for low, high in zip(bounds, bounds[1:]):
            middle = (low + high) // 2
            if middle not in order:
                order.append(middle)
        segments *= 2
    return order


def frame_order(num_frames: int, kind: str) -> list[int]:
    return coarse_to_fine_order(num_frames) if kind == "coarse_to_fine" else list(range(num_frames))


@dataclass(frozen=True)
class Exploration:
    """Training-time additions to the policy branch (docs/adafocus.md, "Why the policy stayed at
    the centre"); neither changes the model or its inference.

    ``noise``: the policy's locations plus Gaussian noise of this standard deviation (a share of
    the location range, clipped into it). The gradient then reaches the policy from patches that
    land around, not only at, its locations: it descends the loss averaged over that
    neighbourhood, whose basin is wider than the patch. ``gradient_blur``: the crop's gradient
    with respect to the location through a blurred frame (:class:`PatchCrop`), in pixels.
    """

    noise: float = 0.0
    gradient_blur: float = 0.0

    def perturb(self, locations: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.noise <= 0:
            return locations
        draw = torch.randn(locations.shape, generator=generator, device=locations.device, dtype=locations.dtype)
        return (locations + self.noise * draw).clamp(0.0, 1.0)


class StepState(NamedTuple):
    """The running state between frames: the policy's GRU state and the classifier's (and, for a
    frame-skipping policy, the classifier's confidence so far, which that policy reads)."""

    policy: Tensor | None
    classifier: Tensor
    confidence: Tensor | None = None  # (N,) top class probability after the last frame


def prediction_confidence(logits: Tensor) -> Tensor:
    """``(N,)`` the classifier's top softmax probability: what a frame-skipping policy reads."""
    return torch.softmax(logits.detach().float(), dim=-1).amax(dim=-1)


class ClipOutput(NamedTuple):
    """Outputs over a clip, in processing order (``order[t]`` is the frame of step ``t``)."""

    step_logits: Tensor  # (B, T, K): the classifier's prediction after each step
    global_logits: Tensor | None  # (B, T, K): auxiliary head on the global features
    local_logits: Tensor | None  # (B, T, K): auxiliary head on the local features
    locations: Tensor | None  # (B, T, 2): patch locations in (0, 1)^2, (x, y)
    skipped: Tensor | None = None  # (B, T) bool: frames whose focus a frame-skipping policy skipped


class AdaFocusV2(nn.Module):
    def __init__(self, config: AdaFocusConfig) -> None:
        super().__init__()
        self.config = config
        self.focus_mode: Focus = FOCUS_OF_VARIANT[config.variant]
        self.uses_global = config.variant != "full_frame"
        self.uses_local = config.variant != "glance_only"
        self.can_skip = False
        self.register_buffer(
            "order", torch.tensor(frame_order(config.num_frames, config.frame_order)), persistent=False
        )
        fused = 0
        self.aux_dropout = nn.Dropout(config.aux_dropout)
        self.global_net = self.global_aux = self.local_net = self.local_aux = self.policy = self.crop = None
        if self.uses_global:
            self.global_net = create_model(config.global_model, num_classes=0, **config.global_kwargs)
            self.global_aux = nn.Linear(self.global_net.num_features, config.num_classes)
            fused += self.global_net.num_features
        if self.uses_local:
            self.local_net = create_model(config.local_model, num_classes=0, **config.local_kwargs)
            self.local_aux = nn.Linear(self.local_net.num_features, config.num_classes)
            fused += self.local_net.num_features
        if self.focus_mode in PATCH_FOCUS:
            self.crop = PatchCrop(config.frame_size, config.patch_size)
        if self.focus_mode == "policy":
            map_size = self._glance_map_size()
            channels = self.global_net.feature_channels
            if config.policy == "regression":
                self.policy = PatchPolicy(channels, map_size, config.policy_channels, config.policy_hidden)
            else:
                self.policy = build_v1_policy(
                    config.policy, channels, map_size, config.policy_channels, config.policy_hidden, config.skip_frames
                )
        self.can_skip = bool(getattr(self.policy, "can_skip", False))
        self.classifier = build_classifier(
            config.classifier,
            fused,
            config.classifier_width,
            config.num_classes,
            config.num_frames,
            config.dropout,
            config.shared_head,
        )

    @torch.no_grad()
    def _glance_map_size(self) -> tuple[int, int]:
        was_training = self.global_net.training
        self.global_net.eval()
        probe = torch.zeros(1, 3, self.config.glance_size, self.config.glance_size)
        size = tuple(self.global_net(probe).features.shape[-2:])
        self.global_net.train(was_training)
        return size  # type: ignore[return-value]

    # -- the parts of one step ------------------------------------------------------------
    def glance_input(self, frames: Tensor) -> Tensor:
        """The global network's view: the frame, or a downsample of it.

        ``glance_resize`` "auto": an integer factor uses exact average pooling (anti-aliased
        and cheap), any other size bilinear interpolation; "bilinear_align_corners": bilinear
        with ``align_corners=True`` at any size (what imported AdaFocusV2 ResNet-50 glances
        were trained with).
        """
        size, glance = self.config.frame_size, self.config.glance_size
        if glance == size:
            return frames
        if self.config.glance_resize == "bilinear_align_corners":
            return F.interpolate(frames, size=(glance, glance), mode="bilinear", align_corners=True)
        if size % glance == 0:
            return F.avg_pool2d(frames, size // glance)
        return F.interpolate(frames, size=(glance, glance), mode="bilinear", align_corners=False)

    def glance(self, frames: Tensor) -> tuple[Tensor, Tensor]:
        """Global feature map and pooled features of ``(N, 3, S, S)`` frames."""
        out = self.global_net(self.glance_input(frames))
        return out.features, out.pooled

    def locate(
        self,
        features: Tensor | None,
        policy_state: Tensor | None,
        focus: PatchFocus,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None]:
        """Patch locations ``(N, 2)`` for one step, and the policy's next state."""
        if focus == "oracle":
            raise ValueError("the oracle focus needs the target boxes of whole clips (forward(target_boxes=...))")
        if focus == "policy":
            return self.policy(features, policy_state)
        count, device = features.shape[0], features.device
        if focus == "random":
            return random_locations(count, device, generator), policy_state
        return torch.full((count, 2), 0.5, device=device), policy_state

    def focus(self, frames: Tensor, locations: Tensor | None = None, gradient_blur: float = 0.0) -> Tensor:
        """Pooled local features of the patches at ``locations`` (or of whole frames)."""
        inputs = self.crop(frames, locations, gradient_blur) if self.crop is not None else frames
        return self.local_net(inputs).pooled

    def fuse(self, global_pooled: Tensor | None, local_pooled: Tensor | None) -> Tensor:
        parts = [p for p in (global_pooled, local_pooled) if p is not None]
        return parts[0] if len(parts) == 1 else torch.cat(parts, dim=-1)

    def initial_state(self, batch: int) -> StepState:
        device = next(self.parameters()).device
        policy = self.policy.initial_state(batch, device) if self.policy is not None else None
        confidence = torch.zeros(batch, device=device) if self.can_skip else None
        return StepState(policy, self.classifier.initial_state(batch, device), confidence)

    # -- one frame at a time (streaming, early exit, export) ------------------------------
    def step(
        self,
        frames: Tensor,
        state: StepState,
        step: int | Tensor,
        focus: Focus | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[Tensor, Tensor | None, StepState]:
        """Process one frame per video: ``(logits (N, K), location (N, 2) or None, next state)``."""
        focus = focus or self.focus_mode
        global_pooled = local_pooled = locations = None
        policy_state = state.policy
        features = None
        if self.uses_global:
            features, global_pooled = self.glance(frames)
        if self.uses_local:
            skipped = None
            if self.can_skip and focus == "policy":
                locations, skipped, policy_state = self.policy.decide(features, policy_state, state.confidence)
            elif self.crop is not None:
                locations, policy_state = self.locate(features, policy_state, focus, generator)
            local_pooled = self.focus(frames, locations)
            if skipped is not None:  # (computed for the batch, zeroed where skipped; costed as not run)
                local_pooled = local_pooled * (~skipped)[:, None]
        logits, classifier_state = self.classifier(self.fuse(global_pooled, local_pooled), state.classifier, step)
        confidence = prediction_confidence(logits) if self.can_skip else None
        return logits, locations, StepState(policy_state, classifier_state, confidence)

    # -- whole clips (training and offline evaluation) ------------------------------------
    def forward(
        self,
        clips: Tensor,
        focus: Focus | tuple[Focus, ...] | None = None,
        stop_gradient: bool = True,
        generator: torch.Generator | None = None,
        random_skip_rate: float = 0.0,
        target_boxes: Tensor | None = None,
        exploration: Exploration | None = None,
    ) -> ClipOutput | tuple[ClipOutput, ...]:
        """Run ``(B, T, 3, S, S)`` clips; the frame-parallel parts batch over ``B * T``.

        ``focus`` may name several location sources (for example ``("policy", "random")``,
        the two training branches); the glance is computed once and shared. The policy
        reads the global features through a stop-gradient unless ``stop_gradient=False``.
        ``random_skip_rate``: with random patches, skip that share of frames at random (so a
        frame-skipping model's classifier learns to do without some patches).
        ``target_boxes`` ``(B, T, 4)`` (``[x0, y0, x1, y1)`` in the frame's pixels, in the clips' frame
        order; NaN where unknown): where the ``oracle`` focus centres its patches.
        ``exploration``: the policy branch's training-time additions (:class:`Exploration`).
        """
        focus_modes = focus if isinstance(focus, tuple) else (focus or self.focus_mode,)
        batch, steps = clips.shape[:2]
        if steps != self.config.num_frames and not getattr(self.classifier, "shared_head", True):
            raise ValueError(f"the model has {self.config.num_frames} per-step heads; clips have {steps} frames")
        reorder = steps == len(self.order)
        clips = clips[:, self.order[:steps]] if reorder else clips
        oracle = None
        if "oracle" in focus_modes:
            if target_boxes is None:
                raise ValueError("the oracle focus needs the clips' target boxes")
            boxes = target_boxes[:, self.order[:steps]] if reorder else target_boxes
            oracle = oracle_locations(boxes.to(clips.device), self.config.frame_size, self.config.patch_size)
        frames = clips.flatten(0, 1)
        features = global_pooled = global_logits = None
        if self.uses_global:
            features, global_pooled = self.glance(frames)
            global_logits = self.global_aux(self.aux_dropout(global_pooled)).unflatten(0, (batch, steps))
            features = features.unflatten(0, (batch, steps))
            global_pooled = global_pooled.unflatten(0, (batch, steps))
        outputs = tuple(
            self._clip_branch(
                frames,
                (batch, steps),
                features,
                global_pooled,
                global_logits,
                mode,
                stop_gradient,
                generator,
                random_skip_rate,
                oracle,
                exploration,
            )
            for mode in focus_modes
        )
        return outputs if isinstance(focus, tuple) else outputs[0]

    def _clip_branch(
        self,
        frames: Tensor,
        shape: tuple[int, int],
        features: Tensor | None,
        global_pooled: Tensor | None,
        global_logits: Tensor | None,
        focus: Focus,
        stop_gradient: bool,
        generator: torch.Generator | None,
        random_skip_rate: float = 0.0,
        oracle: Tensor | None = None,
        exploration: Exploration | None = None,
    ) -> ClipOutput:
        batch, steps = shape
        if self.can_skip and focus == "policy":
            return self._skipping_branch(frames, shape, features, global_pooled, global_logits, stop_gradient)
        locations = local_pooled = local_logits = skipped = None
        blur = 0.0
        if self.uses_local:
            if focus == "oracle":
                locations = oracle
            elif self.crop is not None:
                locations = self._clip_locations(features, batch, steps, focus, stop_gradient, generator)
            if focus == "policy" and exploration is not None:
                locations = exploration.perturb(locations, generator)
                blur = exploration.gradient_blur
            if focus == "random" and random_skip_rate > 0:
                draw = torch.rand(batch, steps, generator=generator, device=frames.device)
                skipped = draw < random_skip_rate
            local_flat = self.focus(frames, locations.flatten(0, 1) if locations is not None else None, blur)
            local_logits = self.local_aux(self.aux_dropout(local_flat)).unflatten(0, (batch, steps))
            local_pooled = local_flat.unflatten(0, (batch, steps))
            if skipped is not None:
                local_pooled = local_pooled * (~skipped)[..., None]
        fused = self.fuse(global_pooled, local_pooled)
        state = self.classifier.initial_state(batch, frames.device)
        step_logits = []
        for t in range(steps):
            logits, state = self.classifier(fused[:, t], state, t)
            step_logits.append(logits)
        return ClipOutput(torch.stack(step_logits, dim=1), global_logits, local_logits, locations, skipped)

    def _skipping_branch(
        self,
        frames: Tensor,
        shape: tuple[int, int],
        features: Tensor,
        global_pooled: Tensor,
        global_logits: Tensor,
        stop_gradient: bool,
    ) -> ClipOutput:
        """A frame-skipping policy's clip, one step at a time: its skip decision reads the
        classifier's confidence after the previous step, so the steps cannot be batched."""
        batch, steps = shape
        frames = frames.unflatten(0, shape)
        state = self.initial_state(batch)
        step_logits, locations, skips, local_logits = [], [], [], []
        for t in range(steps):
            step_features = features[:, t].detach() if stop_gradient else features[:, t]
            location, skipped, policy_state = self.policy.decide(step_features, state.policy, state.confidence)
            local_pooled = self.focus(frames[:, t], location)  # (for the batch; zeroed where skipped)
            local_logits.append(self.local_aux(self.aux_dropout(local_pooled)))
            fused = self.fuse(global_pooled[:, t], local_pooled * (~skipped)[:, None])
            logits, classifier_state = self.classifier(fused, state.classifier, t)
            state = StepState(policy_state, classifier_state, prediction_confidence(logits))
            step_logits.append(logits)
            locations.append(location)
            skips.append(skipped)
        return ClipOutput(
            torch.stack(step_logits, dim=1),
            global_logits,
            torch.stack(local_logits, dim=1),
            torch.stack(locations, dim=1),
            torch.stack(skips, dim=1),
        )

    def _clip_locations(
        self,
        features: Tensor | None,
        batch: int,
        steps: int,
        focus: PatchFocus,
        stop_gradient: bool,
        generator: torch.Generator | None,
    ) -> Tensor:
        """Locations ``(B, T, 2)`` (a frame-skipping policy's clips go through ``_skipping_branch``)."""
        device = next(self.parameters()).device
        if focus == "random":
            return random_locations(batch * steps, device, generator).unflatten(0, (batch, steps))
        if focus == "centre":
            return torch.full((batch, steps, 2), 0.5, device=device)
        if self.policy is None:
            raise ValueError(f"the {self.config.variant} model has no policy")
        state = self.policy.initial_state(batch, device)
        locations = []
        for t in range(steps):
            step_features = features[:, t].detach() if stop_gradient else features[:, t]
            location, state = self.policy(step_features, state)
            locations.append(location)
        return torch.stack(locations, dim=1)
