"""Tiny configurations and model helpers for quick training tests (seconds on a CPU)."""

from __future__ import annotations

import torch
from torch import nn

from training.models import create_model

# A tiny AdaFocusV2 training configuration: seconds per run on a CPU.
TINY_TRAINING = {
    "num_frames": 4,
    "frame_size": 32,
    "resize": 32,
    "glance_size": 16,
    "patch_size": 16,
    "global_model": "mobilenetv2_035",
    "global_kwargs": {"output_stride": 8, "last_channels": 32},
    "local_model": "mobilenetv2_035",
    "local_kwargs": {"last_channels": 32},
    "policy_hidden": 16,
    "classifier_width": 16,
    "epochs": 2,
    "batch_size": 4,
    "workers": 0,
    "eval_batch_size": 8,
    "progress": False,
    "checkpoint_every": 2,
}

# A tiny whole-clip TSM AdaFocusV2 (training/adafocus/sthsth.py): 2 glance + 3 focus frames of 64 px.
TINY_TSM = {
    "glance_segments": 2,
    "focus_segments": 3,
    "frame_size": 64,
    "patch_size": 32,
    "global_model": "mobilenetv2_035",
    "global_kwargs": {"last_channels": 64},
    "local_model": "resnet18",
    "local_kwargs": {"width": 8},
    "policy_channels": 4,
    "policy_hidden": (16,),
}

# Small but complete CondenseNetV2 (three blocks, every mechanism) for quick tests.
TINY_CONDENSENET = {"stages": (2, 2, 2), "growth": (8, 8, 16), "se_stages": (2,), "hidden_features": 64}


@torch.no_grad()
def calibrate_batchnorm(model: nn.Module, input_size: int, batches: int = 2, seed: int = 0) -> nn.Module:
    """Make a freshly initialised model's outputs O(1), so comparing them means something.

    Linears get PyTorch's default init (ours is a tiny normal, which makes logits ~1e-3), and
    BatchNorm gets the statistics of a few random batches (a cumulative average).
    """
    generator = torch.Generator().manual_seed(seed)
    for module in model.modules():
        if isinstance(module, nn.Linear):
            module.reset_parameters()
    for module in model.modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            module.reset_running_stats()
            module.momentum = None
    model.train()
    for _ in range(batches):
        model(torch.randn(4, 3, input_size, input_size, generator=generator))
    return model.eval()


def condensed_pair(name: str, input_size: int, **kwargs) -> tuple[nn.Module, nn.Module]:
    """A fully condensed CondenseNetV2 (training form, realistic BN) and its converted form."""
    torch.manual_seed(0)
    model = create_model(name, **kwargs)
    model.condense(1.0)
    calibrate_batchnorm(model, input_size)
    return model, model.convert()
