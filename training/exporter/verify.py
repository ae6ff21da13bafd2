"""Check an exported graph against PyTorch before it is written into the repository."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from .graphs import GraphDefinition


def compare_with_onnxruntime(graph: GraphDefinition, path: Path, expected: tuple[torch.Tensor, ...]) -> float:
    """Max abs difference between ONNX Runtime (CPU) and ``expected``, PyTorch's outputs of the graph."""
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {name: t.numpy() for name, t in zip(graph.input_names, graph.inputs, strict=True)}
    got = session.run(list(graph.output_names), feeds)
    return max(float(np.abs(a - b.numpy()).max()) for a, b in zip(got, expected, strict=True))


def step_by_step(model, frames: np.ndarray) -> np.ndarray:
    """PyTorch's logits after every step, one frame at a time with the running state, as the
    exported graphs compute them (``(T, K)``)."""
    tensor, state, logits = torch.from_numpy(frames), model.initial_state(1), []
    for step, index in enumerate(model.order.tolist()):
        step_logits, _, state = model.step(tensor[index : index + 1], state, step)
        logits.append(step_logits[0].numpy())
    return np.stack(logits)
