"""Named AdaFocusV2 configurations."""

from __future__ import annotations

from .model import AdaFocusConfig


def paper_activitynet(patch_size: int = 128, num_classes: int = 200) -> AdaFocusConfig:
    """The AdaFocusV2 ActivityNet configuration: MobileNetV2 glance on the full 224x224 frame,
    ResNet-50 focus on a ``patch_size`` patch, GRU-2048 policy, 4096-wide pooling classifier,
    16 frames. The paper's per-frame GMACs: 1.1010 / 1.6848 / 2.4355 at patch 96 / 128 / 160.
    """
    return AdaFocusConfig(
        num_classes=num_classes,
        num_frames=16,
        frame_size=224,
        glance_size=224,
        patch_size=patch_size,
        global_model="mobilenetv2",
        global_kwargs={},
        local_model="resnet50",
        local_kwargs={},
        policy_channels=64,
        policy_hidden=2048,
        classifier="pooling",
        classifier_width=4096,
        dropout=0.2,
    )


PRESETS = {"paper_activitynet": paper_activitynet}
