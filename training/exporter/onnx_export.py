"""Export a module to ONNX at a fixed opset, with only the batch axis dynamic.

torch's exporter (``dynamo=True``) writes opset 18 and cannot go lower on its own: its
version conversion runs before constant folding, when the ``axes`` of reductions are not yet
constants. We export at 18, let it fold constants, then convert with ONNX's converter.
Opset 17 is our target because TensorRT's ONNX parser mishandles GridSample from opset 20
on, and 17 keeps the widest runtime support.
"""

from __future__ import annotations

import contextlib
import logging
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np
import onnx
import onnx.numpy_helper
import onnx.shape_inference
import torch
from onnx import version_converter
from torch import nn

DEFAULT_OPSET = 17
_EXPORTER_OPSET = 18

# Reductions whose opset-17 form has no ``noop_with_empty_axes`` (ReduceSum has had it since 13).
_REDUCTIONS_WITHOUT_NOOP_ATTR = {
    "ReduceMean",
    "ReduceMax",
    "ReduceMin",
    "ReduceProd",
    "ReduceL1",
    "ReduceL2",
    "ReduceLogSum",
    "ReduceLogSumExp",
    "ReduceSumSquare",
}


def _drop_default_noop_attribute(model: onnx.ModelProto) -> None:
    """Remove ``noop_with_empty_axes=0`` (the default) where opset 17 does not know it.

    ONNX's 18 -> 17 adapter moves ``axes`` back to an attribute but leaves this one behind.
    """
    for node in model.graph.node:
        if node.op_type not in _REDUCTIONS_WITHOUT_NOOP_ATTR:
            continue
        for attribute in list(node.attribute):
            if attribute.name == "noop_with_empty_axes":
                if onnx.helper.get_attribute_value(attribute) != 0:
                    raise ValueError(f"{node.name}: noop_with_empty_axes=1 cannot be expressed at opset 17")
                node.attribute.remove(attribute)


_PARKED_DOMAIN = "parked.split"  # outside ai.onnx: the version converter leaves these nodes alone


def _park_splits(model: onnx.ModelProto) -> list[onnx.NodeProto]:
    """Make opset-18 ``Split`` nodes valid at 13-17 and hide them from the version converter.

    ONNX has no 18 -> 17 adapter for Split (a GRU cell's gates are one). Opset 18 adds the
    ``num_outputs`` attribute; 13-17 take the sizes as the ``split`` input. We replace the
    attribute by an explicit ``split`` initializer (sizes from shape inference), park the
    node in a private domain while the converter runs, and put it back afterwards.
    """
    inferred = onnx.shape_inference.infer_shapes(model)
    shapes = {
        info.name: [d.dim_value if d.HasField("dim_value") else None for d in info.type.tensor_type.shape.dim]
        for info in (*inferred.graph.value_info, *inferred.graph.input, *inferred.graph.output)
    }
    parked = []
    for node in model.graph.node:
        if node.op_type != "Split" or node.domain not in ("", "ai.onnx"):
            continue
        attributes = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if "num_outputs" in attributes:
            axis = attributes.get("axis", 0)
            shape = shapes.get(node.input[0])
            size = shape[axis] if shape is not None else None
            count = attributes["num_outputs"]
            if size is None:
                raise ValueError(f"{node.name}: Split over a dynamic axis cannot be expressed at opset 17")
            chunk = -(-size // count)  # opset 18: equal chunks, the last one smaller
            sizes = [min(chunk, size - i * chunk) for i in range(count)]
            name = f"{node.name or node.output[0]}_split_sizes"
            model.graph.initializer.append(onnx.numpy_helper.from_array(np.array(sizes, dtype=np.int64), name))
            del node.input[1:]
            node.input.append(name)
            for attribute in list(node.attribute):
                if attribute.name == "num_outputs":
                    node.attribute.remove(attribute)
        node.domain = _PARKED_DOMAIN
        parked.append(node)
    if parked:
        model.opset_import.append(onnx.helper.make_opsetid(_PARKED_DOMAIN, 1))
    return parked


def _unpark(model: onnx.ModelProto) -> None:
    for node in model.graph.node:
        if node.domain == _PARKED_DOMAIN:
            node.domain = ""
    for i, opset in enumerate(model.opset_import):
        if opset.domain == _PARKED_DOMAIN:
            del model.opset_import[i]
            break


def export_onnx(
    module: nn.Module,
    example_inputs: tuple[torch.Tensor, ...],
    path: str | Path,
    input_names: Sequence[str],
    output_names: Sequence[str],
    opset: int = DEFAULT_OPSET,
    dynamic_batch: bool = True,
) -> Path:
    """Export ``module`` (in eval mode) to ``path`` and check it with ``full_check``.

    Every input's axis 0 is the dynamic batch axis when ``dynamic_batch``; all other axes
    are fixed to the example's sizes (what TensorRT profiles want).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    module = module.eval()
    dynamic_shapes = None
    if dynamic_batch:
        batch = torch.export.Dim("batch", min=1, max=4096)
        dynamic_shapes = tuple({0: batch} for _ in example_inputs)
    with _quiet_exporter():
        program = torch.onnx.export(
            module,
            example_inputs,
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=_EXPORTER_OPSET,
            dynamo=True,
            dynamic_shapes=dynamic_shapes,
            optimize=True,
            verbose=False,
        )
    model = program.model_proto
    if opset != _EXPORTER_OPSET:
        _drop_default_noop_attribute(model)
        _park_splits(model)
        model = version_converter.convert_version(model, opset)
        _unpark(model)
    onnx.save(model, str(path))
    onnx.checker.check_model(str(path), full_check=True)
    return path


@contextlib.contextmanager
def _quiet_exporter() -> Iterator[None]:
    """Silence the exporter's known-benign warnings (missing torchvision ops, opset notes)."""
    logger = logging.getLogger("torch.onnx")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        logger.setLevel(level)
