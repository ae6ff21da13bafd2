"""Every backbone, in its deployed form, exports to ONNX opset 17 and matches ONNX Runtime."""

from __future__ import annotations

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch

from tests.training.tiny import calibrate_batchnorm
from training.exporter.onnx_export import export_onnx
from training.models import create_model
from training.models.profile import inference_form

BACKBONES = [
    ("mobilenetv2", 64, {}),
    ("resnet18", 64, {}),
    ("resnet34", 64, {}),
    ("resnet50", 64, {}),
    # CondenseNetV2s at fewer layers per block: torch's exporter traces every layer (the
    # published depths take 20-40 s each here), and more of the same layers test nothing
    # more. Each still has every layer kind: learned group convs and SFRs in their condensed
    # form, ReLU and h-swish blocks, and for A the SE blocks (blocks 4 and 5, two layers each,
    # so an SFR also reactivates channels of its own block).
    ("condensenetv2_a", 64, {"stages": (1, 1, 1, 2, 2)}),
    ("condensenetv2_cifar", 32, {"stages": (2, 2, 2)}),
    # CondenseNetV2-B and -C are A's layers at other widths and depths, and their exports
    # take 1-2 min each on 2 cores: they are exported and run on ONNX Runtime by
    # bench/bench_backbones.py instead, to keep the suite short.
]


@pytest.mark.slow
@pytest.mark.parametrize("name, size, kwargs", BACKBONES, ids=[name for name, _, _ in BACKBONES])
def test_backbone_exports_at_opset_17_and_matches_onnx_runtime(name, size, kwargs, tmp_path):
    torch.manual_seed(0)
    model = create_model(name, num_classes=10, **kwargs)
    if hasattr(model, "condense"):
        model.condense(1.0)
    model = inference_form(calibrate_batchnorm(model, size))
    path = export_onnx(
        model, (torch.randn(2, 3, size, size),), tmp_path / "m.onnx", ["image"], ["features", "pooled", "logits"]
    )
    proto = onnx.load(str(path))
    assert [o.version for o in proto.opset_import if o.domain in ("", "ai.onnx")] == [17]

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    image = torch.randn(3, 3, size, size)  # another batch size than the export's: the axis is dynamic
    outputs = session.run(None, {"image": image.numpy()})
    with torch.no_grad():
        expected = model(image)
    if hasattr(model, "condense"):
        assert_scatters_never_repeat_an_index(proto)
        assert_runs_are_repeatable(path, image.numpy())
    for name_, ours, theirs in zip(("features", "pooled", "logits"), expected, outputs):
        assert theirs.shape == tuple(ours.shape), name_
        scale = float(np.abs(theirs).max())
        assert scale > 1e-2, name_  # realistic magnitudes, not near-zeros
        # 1e-4 absolute for O(1) outputs. Feature maps of these random (BN-calibrated) deep
        # networks reach ~100, where float32 torch is itself ~5e-4 away from a float64
        # reference: there the bound scales with the magnitude.
        assert np.abs(ours.numpy() - theirs).max() < 1e-4 * max(1.0, scale), name_


def assert_scatters_never_repeat_an_index(proto: onnx.ModelProto) -> None:
    """ONNX Runtime's ScatterND(add) races on repeated indices: there must be none."""
    constants = {t.name: onnx.numpy_helper.to_array(t) for t in proto.graph.initializer}
    for node in proto.graph.node:
        if node.op_type == "Constant":
            constants[node.output[0]] = onnx.numpy_helper.to_array(node.attribute[0].t)
    scatters = [n for n in proto.graph.node if n.op_type in ("ScatterND", "ScatterElements")]
    assert scatters
    for node in scatters:
        indices = constants[node.input[1]]
        rows = indices.reshape(-1, indices.shape[-1]) if node.op_type == "ScatterND" else indices.reshape(-1, 1)
        assert len(np.unique(rows, axis=0)) == len(rows), node.name


def assert_runs_are_repeatable(path, image: np.ndarray) -> None:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 2
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    first = session.run(None, {"image": image})
    for _ in range(3):
        for a, b in zip(first, session.run(None, {"image": image})):
            assert np.array_equal(a, b)
