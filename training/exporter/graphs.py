"""The graphs an AdaFocus model is served as: one ``nn.Module`` per ONNX graph.

The service runs a video step by step with early exit and batches frames of many requests
into one call per graph, so every graph takes one frame per batch row, carries any running
state as an explicit input and output, and has only the batch axis dynamic:

* ``glance``: frames -> global features, and with a policy the patch location and the
  policy's next GRU state;
* ``focus``: frames (and the location) -> local features; the crop is in the graph
  (bilinear GridSample, float32), or the local network sees the whole frame (``full_frame``);
* ``classifier``: features, the classifier's running state and the step index -> logits
  and the next state.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from pipeline.manifest import ServedFocus
from training.adafocus.model import AdaFocusV2


class _Part(nn.Module):
    """A graph over part of the model (explicit arguments: ``torch.export`` wants no ``*args``)."""

    def __init__(self, model: AdaFocusV2) -> None:
        super().__init__()
        self.model = model


class GlanceGraph(_Part):
    """frames -> global features (no policy: the glance-only and centre-patch baselines)."""

    def forward(self, frames: Tensor) -> Tensor:
        return self.model.glance(frames)[1]


class GlancePolicyGraph(_Part):
    """frames, policy state -> global features, patch location in (0, 1)^2, next policy state."""

    def forward(self, frames: Tensor, policy_state: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        features, pooled = self.model.glance(frames)
        location, state = self.model.policy(features, policy_state)
        return pooled, location, state


class FocusPatchGraph(_Part):
    """frames, location -> local features of the patch (bilinear GridSample crop in the graph)."""

    def forward(self, frames: Tensor, location: Tensor) -> Tensor:
        return self.model.focus(frames, location)


class FocusFrameGraph(_Part):
    """frames -> local features of the whole frame (the full-frame baseline)."""

    def forward(self, frames: Tensor) -> Tensor:
        return self.model.focus(frames)


class ClassifierGraph(_Part):
    """global and local features, running state, step -> logits, next state."""

    def forward(self, global_features: Tensor, local_features: Tensor, state: Tensor, step: Tensor):
        return self.model.classifier(torch.cat([global_features, local_features], dim=-1), state, step)


class SingleBranchClassifierGraph(_Part):
    """features of the one branch, running state, step -> logits, next state."""

    def forward(self, features: Tensor, state: Tensor, step: Tensor) -> tuple[Tensor, Tensor]:
        return self.model.classifier(features, state, step)


@dataclass(frozen=True)
class GraphDefinition:
    """A graph to export: the module, example inputs, and its tensors' names."""

    name: str
    module: nn.Module
    inputs: tuple[Tensor, ...]
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]


def focus_kind(model: AdaFocusV2) -> ServedFocus:
    """How the served pipeline places the patch (the model's own focus: one vocabulary)."""
    if model.focus_mode in ("random", "oracle"):
        raise ValueError(f"the {model.config.variant} baseline is a training comparison; it is not exported")
    return model.focus_mode  # type: ignore[return-value]  # the other kinds are served


@torch.no_grad()
def graph_definitions(model: AdaFocusV2, batch: int = 2) -> list[GraphDefinition]:
    """The graphs of ``model`` (in eval mode) with example inputs of ``batch`` rows."""
    config = model.config
    generator = torch.Generator().manual_seed(0)
    frames = torch.randn(batch, 3, config.frame_size, config.frame_size, generator=generator)
    state = model.initial_state(batch)
    kind = focus_kind(model)
    graphs: list[GraphDefinition] = []
    classifier_inputs: list[Tensor] = []
    classifier_names: list[str] = []
    location = torch.rand(batch, 2, generator=generator)
    if model.uses_global:
        if model.policy is not None:
            glance: nn.Module = GlancePolicyGraph(model)
            inputs, outputs = (frames, state.policy), ("global_features", "location", "policy_state_out")
            graphs.append(GraphDefinition("glance", glance, inputs, ("frames", "policy_state"), outputs))
        else:
            glance = GlanceGraph(model)
            graphs.append(GraphDefinition("glance", glance, (frames,), ("frames",), ("global_features",)))
        classifier_inputs.append(model.glance(frames)[1])
        classifier_names.append("global_features")
    if kind == "full_frame":
        graphs.append(GraphDefinition("focus", FocusFrameGraph(model), (frames,), ("frames",), ("local_features",)))
    elif kind != "none":
        inputs, names = (frames, location), ("frames", "location")
        graphs.append(GraphDefinition("focus", FocusPatchGraph(model), inputs, names, ("local_features",)))
    if kind != "none":
        classifier_inputs.append(model.focus(frames, location if kind != "full_frame" else None))
        classifier_names.append("local_features")
    step = torch.arange(batch, dtype=torch.int64) % config.num_frames
    classifier = ClassifierGraph(model) if len(classifier_inputs) == 2 else SingleBranchClassifierGraph(model)
    graphs.append(
        GraphDefinition(
            "classifier",
            classifier,
            (*classifier_inputs, state.classifier, step),
            (*classifier_names, "classifier_state", "step"),
            ("logits", "classifier_state_out"),
        )
    )
    return graphs
