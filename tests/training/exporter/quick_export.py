"""A quicker ONNX exporter for tests whose subject is not the graphs themselves."""

from __future__ import annotations

import warnings
from pathlib import Path

import torch


def quick_export_onnx(module, example_inputs, path, input_names, output_names, **_) -> Path:
    """The graphs by PyTorch's TorchScript exporter: about 8 s for AdaFocusV2's three instead of
    40 s by the dynamo exporter that ``export_run`` uses (test_export.py and test_onnx_export.py
    test that one). Patch it in as ``training.exporter.repository.export_onnx``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    names = [*input_names, *output_names]
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the TorchScript exporter is deprecated, and says so
        torch.onnx.export(
            module.eval(),
            example_inputs,
            str(path),
            input_names=list(input_names),
            output_names=list(output_names),
            opset_version=17,
            dynamo=False,
            dynamic_axes={name: {0: "batch"} for name in names},
        )
    return path
