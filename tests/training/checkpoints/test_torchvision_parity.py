"""Parity with torchvision's own models: the imported networks give torchvision's logits.

The data (``tests/data/checkpoints/torchvision_parity.npz``) was made once, outside the
project, with torchvision 0.28.0's code (``pip download torchvision==0.28.0 --no-deps``, the
wheel unpacked with its ``_meta_registrations`` import skipped, as it does not import with the
local torch build): ``torchvision.models.resnet18 / resnet50 / mobilenet_v2(weights=None)`` in
eval mode, every tensor of its ``state_dict()`` replaced by :func:`seeded_state_dict` (the
formula in ``torchvision_layout.py``, over torchvision's own key list), run on
:func:`smooth_input` (1x3x64x64). It keeps, per model, the 1000 logits and torchvision's key
listing (``"key [shape]"``). The test writes the state dict in torchvision's layout from its own
key list (checked against that listing), imports it and compares.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.checkpoints.torchvision_layout import (
    mobilenetv2_shapes,
    resnet_shapes,
    seeded_state_dict,
    smooth_input,
)
from training.checkpoints import import_file

DATA = Path(__file__).resolve().parents[2] / "data" / "checkpoints" / "torchvision_parity.npz"
CASES = {
    "resnet18": ("torchvision-resnet", lambda: resnet_shapes("basic", (2, 2, 2, 2))),
    "resnet50": ("torchvision-resnet", lambda: resnet_shapes("bottleneck", (3, 4, 6, 3))),
    "mobilenet_v2": ("torchvision-mobilenetv2", mobilenetv2_shapes),
}


@pytest.fixture(scope="module")
def reference() -> dict[str, np.ndarray]:
    with np.load(DATA) as data:
        return dict(data)


@pytest.mark.parametrize("name", sorted(CASES))
def test_imported_model_matches_torchvision(name, reference, tmp_path):
    format_name, layout = CASES[name]
    shapes = layout()
    assert [f"{k} {list(s)}" for k, s in shapes.items()] == list(reference[f"{name}_keys"])
    torch.save(seeded_state_dict(shapes), tmp_path / f"{name}.pth")
    imported = import_file(tmp_path / f"{name}.pth", format_name)
    with torch.no_grad():
        logits = imported.model(smooth_input(64)).logits[0].numpy()
    expected = reference[f"{name}_logits"]
    assert np.abs(logits - expected).max() < 1e-4
    assert logits.argmax() == expected.argmax()
