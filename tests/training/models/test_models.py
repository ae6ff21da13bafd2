"""The backbone zoo: registry and the common output contract."""

from __future__ import annotations

import pytest
import torch

from training.models import Backbone, BackboneOutput, create_model, list_models

SMALL_MODELS = {
    "mobilenetv2_035": {},
    "resnet18": {},
    "resnet50": {},
    "condensenetv2_cifar": {"stages": (2, 2, 2)},
    "condensenetv2_a": {},
}


def test_registry_lists_every_family():
    names = list_models()
    for expected in (
        "mobilenetv2",
        "resnet18",
        "resnet34",
        "resnet50",
        "condensenetv2_a",
        "condensenetv2_b",
        "condensenetv2_c",
        "condensenetv2_cifar",
    ):
        assert expected in names


def test_unknown_model_is_a_clear_error():
    with pytest.raises(ValueError, match="unknown model 'resnet9000'.*known models"):
        create_model("resnet9000")


@pytest.mark.parametrize("name", sorted(SMALL_MODELS))
@pytest.mark.parametrize("size", [32, 97, 128])
def test_output_contract_at_any_input_size(name: str, size: int):
    model = create_model(name, num_classes=7, **SMALL_MODELS[name]).eval()
    assert isinstance(model, Backbone)
    with torch.no_grad():
        out = model(torch.randn(2, 3, size, size))
    assert isinstance(out, BackboneOutput)
    assert out.features.shape[:2] == (2, model.feature_channels)
    assert out.pooled.shape == (2, model.num_features)
    assert out.logits.shape == (2, 7)
    assert torch.isfinite(out.logits).all()


def test_no_classifier_head_gives_no_logits():
    model = create_model("resnet18", num_classes=0).eval()
    out = model(torch.randn(1, 3, 64, 64))
    assert out.logits is None
    assert out.pooled.shape == (1, 512)


def test_feature_map_sizes_follow_the_published_layouts():
    expected = {
        "mobilenetv2": (1280, 7),
        "resnet50": (2048, 7),
        "resnet18": (512, 7),
        "condensenetv2_a": (800, 7),
        "condensenetv2_b": (1176, 7),
        "condensenetv2_c": (2064, 7),
    }
    for name, (channels, side) in expected.items():
        model = create_model(name, num_classes=0).eval()
        with torch.no_grad():
            features = model(torch.randn(1, 3, 224, 224)).features
        assert features.shape == (1, channels, side, side), name


def test_narrow_resnet_scales_every_stage():
    from training.models.macs import count_macs

    wide, narrow = (create_model("resnet18", num_classes=10, width=w).eval() for w in (64, 16))
    assert narrow.feature_channels == 128 and narrow(torch.randn(2, 3, 64, 64)).features.shape == (2, 128, 2, 2)
    # Convolutions dominate and scale with width squared (the stem's input side only with width).
    ratio = count_macs(narrow, torch.zeros(1, 3, 64, 64)).total / count_macs(wide, torch.zeros(1, 3, 64, 64)).total
    assert 1 / 16 <= ratio < 1 / 12


def test_reset_classifier_changes_the_head():
    model = create_model("mobilenetv2_035", num_classes=10)
    model.reset_classifier(3)
    assert model(torch.randn(1, 3, 64, 64)).logits.shape == (1, 3)
    model.reset_classifier(0)
    assert model(torch.randn(1, 3, 64, 64)).logits is None
