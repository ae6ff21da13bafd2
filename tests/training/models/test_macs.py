"""MACs and parameters, counted from the models, against the published figures."""

from __future__ import annotations

import json

import pytest
import torch
from torch import nn

from training import profile_model
from training.models import create_model
from training.models.macs import count_macs, count_params


def relative_error(value: float, reference: float) -> float:
    return abs(value - reference) / reference


def converted(name: str, **kwargs) -> nn.Module:
    model = create_model(name, **kwargs)
    model.condense(1.0)
    return model.convert()


# (model, paper-rules MACs, params, conv + linear MACs) at 224x224, from the reference digest.
CONDENSENET_FIGURES = [
    ("condensenetv2_a", 45.874e6, 2.0384e6, 43.144e6),
    ("condensenetv2_b", 146.469e6, 3.5927e6, 140.469e6),
    ("condensenetv2_c", 309.741e6, 6.1775e6, 295.788e6),
]


@pytest.mark.parametrize("name, paper_macs, params, conv_linear_macs", CONDENSENET_FIGURES)
def test_converted_condensenetv2_matches_the_paper(name, paper_macs, params, conv_linear_macs):
    model = converted(name)
    image = torch.randn(1, 3, 224, 224)
    assert relative_error(count_macs(model, image, rules="paper").total, paper_macs) < 0.005
    assert relative_error(count_params(model), params) < 0.005
    assert relative_error(count_macs(model, image).total, conv_linear_macs) < 0.005


def test_cifar_condensenetv2_matches_the_reference_configuration():
    model = converted("condensenetv2_cifar")
    image = torch.randn(1, 3, 32, 32)
    assert relative_error(count_macs(model, image, rules="paper").total, 40.60e6) < 0.005
    assert relative_error(count_params(model), 1.223e6) < 0.005


def test_training_form_counts_dense_masked_convs():
    # Before conversion the LGC / SFR convs are dense: G times their condensed cost.
    model = create_model("condensenetv2_a")
    model.condense(1.0)
    image = torch.randn(1, 3, 224, 224)
    assert count_macs(model, image).total > 2 * count_macs(model.convert(), image).total


@pytest.mark.parametrize(
    "name, size, gmacs",
    [
        ("mobilenetv2", 224, 0.2995),
        ("resnet50", 96, 0.7507),
        ("resnet50", 128, 1.3346),
        ("resnet50", 224, 4.0871),
    ],
)
def test_backbone_gmacs_match_the_adafocus_reference(name, size, gmacs):
    model = create_model(name, num_classes=0)
    report = count_macs(model, torch.randn(1, 3, size, size))
    assert relative_error(report.gmacs, gmacs) < 0.01


def test_macs_are_per_sample():
    model = create_model("resnet18", num_classes=0)
    one = count_macs(model, torch.randn(1, 3, 64, 64)).total
    four = count_macs(model, torch.randn(4, 3, 64, 64)).total
    assert one == four


def test_paper_rules_count_activations_and_pooling_by_hand():
    model = nn.Sequential(
        nn.Conv2d(3, 4, 3, padding=1, bias=False),  # 3*4*9 * 8*8 = 6912
        nn.ReLU(),  # 4*8*8 = 256
        nn.AvgPool2d(2),  # 4*4*4 * 2*2 = 256
        nn.Hardswish(),  # 4*4*4 = 64
        nn.AdaptiveAvgPool2d(1),  # global: 4*4*4 = 64
        nn.Flatten(),
        nn.Linear(4, 5),  # 20
        nn.Sigmoid(),  # 2*5 = 10
    )
    image = torch.randn(2, 3, 8, 8)
    assert count_macs(model, image).total == 6912 + 20
    assert count_macs(model, image, rules="paper").total == 6912 + 256 + 256 + 64 + 64 + 20 + 10


def test_unknown_rules_are_refused():
    with pytest.raises(ValueError, match="counting rules"):
        count_macs(nn.Linear(2, 2), torch.randn(1, 2), rules="marketing")  # type: ignore[arg-type]


def test_profile_cli_prints_json(capsys):
    assert profile_model.main(["condensenetv2_a", "--input-size", "224", "--rules", "paper"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["form"] == "converted"
    assert result["params"] == count_params(converted("condensenetv2_a"))
    assert relative_error(result["macs"], 45.874e6) < 0.005


def test_profile_cli_rejects_bad_arguments(capsys):
    with pytest.raises(SystemExit):
        profile_model.main(["nonexistent"])
    assert "unknown model" in capsys.readouterr().err
