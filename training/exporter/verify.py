"""Check an exported graph against PyTorch before it is written into the repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .graphs import GraphDefinition


def compare_with_onnxruntime(
    graph: GraphDefinition, path: Path, expected: tuple[torch.Tensor, ...]
) -> tuple[float, float]:
    """How far ONNX Runtime (CPU) is from ``expected``, PyTorch's outputs of the graph:
    ``(max abs difference, that difference over max(1, the output's largest magnitude))``.

    The scaled figure is what a tolerance can be set on for any model: float32 noise grows
    with the values (a paper-size ResNet-50's features reach hundreds), so an absolute bound
    that suits a small model fails a large one that is just as exact.
    """
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(graph.input_names, graph.inputs, strict=True)}
    got = session.run(list(graph.output_names), feeds)
    absolute = scaled = 0.0
    for a, b in zip(got, expected, strict=True):
        reference = b.numpy()
        difference = float(np.abs(a - reference).max())
        absolute = max(absolute, difference)
        scaled = max(scaled, difference / max(1.0, float(np.abs(reference).max())))
    return absolute, scaled


def step_by_step(model, frames: np.ndarray) -> np.ndarray:
    """PyTorch's logits after every step, one frame at a time with the running state, as the
    exported graphs compute them (``(T, K)``)."""
    tensor, state, logits = torch.from_numpy(frames), model.initial_state(1), []
    for step, index in enumerate(model.order.tolist()):
        step_logits, _, state = model.step(tensor[index : index + 1], state, step)
        logits.append(step_logits[0].numpy())
    return np.stack(logits)
