"""Temporal shift: TSM's semantics on a hand-computed case, placement in our backbones, ONNX."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from training.models import create_model
from training.models.temporal_shift import (
    TemporalShift,
    count_shifts,
    shift_mobilenetv2,
    shift_resnet,
    temporal_shift,
)


def test_shift_on_a_hand_computed_clip():
    # one clip of 3 frames, 4 channels of 1x1; n_div 4: fold 1. Frame t, channel c holds 10 t + c.
    x = torch.tensor([[10.0 * t + c for c in range(4)] for t in range(3)]).reshape(3, 4, 1, 1)
    out = temporal_shift(x, num_segments=3, n_div=4).reshape(3, 4)
    expected = torch.tensor(
        [
            # channel 0 reads the next frame (zero at the last), channel 1 the previous (zero
            # at the first), channels 2 and 3 stay
            [10.0, 0.0, 2.0, 3.0],
            [20.0, 1.0, 12.0, 13.0],
            [0.0, 11.0, 22.0, 23.0],
        ]
    )
    assert torch.equal(out, expected)


def test_clips_of_a_batch_do_not_mix_and_spatial_values_move_whole():
    x = torch.randn(2 * 4, 16, 3, 5)
    out = temporal_shift(x, num_segments=4, n_div=8).reshape(2, 4, 16, 3, 5)
    clips = x.reshape(2, 4, 16, 3, 5)
    assert torch.equal(out[:, :3, :2], clips[:, 1:, :2])
    assert torch.equal(out[:, 1:, 2:4], clips[:, :3, 2:4])
    assert not out[:, 3, :2].any() and not out[:, 0, 2:4].any()
    assert torch.equal(out[:, :, 4:], clips[:, :, 4:])


def test_degenerate_cases():
    x = torch.randn(3, 4, 2, 2)
    assert torch.equal(temporal_shift(x, 3, n_div=8), x)  # fewer channels than n_div: fold 0
    single = temporal_shift(x, 1, n_div=4)  # one frame: both shifted folds have no neighbour
    assert not single[:, :2].any() and torch.equal(single[:, 2:], x[:, 2:])
    with pytest.raises(ValueError):
        temporal_shift(torch.randn(2, 3, 4), 2)


def test_the_module_shifts_then_runs_its_net():
    conv = nn.Conv2d(8, 4, 1)
    shifted = TemporalShift(conv, num_segments=2, n_div=4)
    x = torch.randn(4, 8, 3, 3)
    assert torch.allclose(shifted(x), conv(temporal_shift(x, 2, 4)))
    assert "net.weight" in shifted.state_dict()


def test_placement_in_our_backbones():
    # TSM's: every block's conv1 (blockres); ResNet-101's 23-block stage: every other block
    assert count_shifts(shift_resnet(create_model("resnet50", num_classes=0), 8)) == 16
    assert count_shifts(shift_resnet(create_model("resnet101", num_classes=0), 8)) == 2 + 2 + 12 + 2
    resnet = shift_resnet(create_model("resnet18", num_classes=0, width=8), 8)
    assert all(isinstance(block.conv1, TemporalShift) for stage in resnet.stages for block in stage)
    # MobileNetV2: the expansion conv of the 10 residual blocks with an expansion layer
    mobilenet = shift_mobilenetv2(create_model("mobilenetv2", num_classes=0), 8)
    shifted = [i for i, m in enumerate(mobilenet.features) if isinstance(getattr(m, "block", [None])[0], TemporalShift)]
    assert shifted == [3, 5, 6, 8, 9, 10, 12, 13, 15, 16]
    with pytest.raises(ValueError, match="already"):
        shift_mobilenetv2(mobilenet, 8)


class _ClipNet(nn.Module):
    """(B, T, C, H, W) clips -> a shifted conv over their frames, as the whole-clip models run it."""

    def __init__(self, segments: int) -> None:
        super().__init__()
        self.segments = segments
        self.conv = TemporalShift(nn.Conv2d(8, 8, 3, padding=1), segments, n_div=4)

    def forward(self, clips: torch.Tensor) -> torch.Tensor:
        return self.conv(clips.flatten(0, 1)).unflatten(0, (clips.shape[0], self.segments))


def test_exports_to_onnx_with_a_dynamic_clip_count(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    from training.exporter.onnx_export import export_onnx

    model = _ClipNet(segments=3).eval()
    path = export_onnx(model, (torch.randn(2, 3, 8, 6, 6),), tmp_path / "shift.onnx", ["clips"], ["out"])
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 4):
        clips = torch.randn(batch, 3, 8, 6, 6)
        with torch.no_grad():
            expected = model(clips).numpy()
        (got,) = session.run(None, {"clips": clips.numpy()})
        np.testing.assert_allclose(got, expected, atol=1e-5)
