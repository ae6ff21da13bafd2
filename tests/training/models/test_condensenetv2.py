"""CondenseNetV2: the condensation schedule, the masks, and conversion to the inference form."""

from __future__ import annotations

import pytest
import torch

from tests.training.tiny import TINY_CONDENSENET, calibrate_batchnorm, condensed_pair
from training.models import CondensationIncompleteError, CondenseNetV2, create_model
from training.models.condensenetv2 import (
    CondensedLearnedGroupConv,
    CondensedSparseFeatureReactivation,
    LearnedGroupConv,
    SparseFeatureReactivation,
    _rounds_of_distinct_targets,
)
from training.models.serialization import load_backbone, save_backbone


def masked_convs(model: CondenseNetV2) -> list:
    return [m for m in model.modules() if isinstance(m, (LearnedGroupConv, SparseFeatureReactivation))]


def test_drops_happen_at_s_over_2_g_minus_1():
    groups = 8
    drops = [s / (2 * (groups - 1)) for s in range(1, groups)]
    for s, progress in enumerate(drops, start=1):
        assert CondenseNetV2.stage_at(progress, groups) == s
        assert CondenseNetV2.stage_at(progress - 1e-6, groups) == s - 1
    assert CondenseNetV2.stage_at(0.0, groups) == 0
    assert CondenseNetV2.stage_at(1.0, groups) == groups - 1


def test_condense_steps_density_down_to_one_over_g(tiny_condensenet):
    groups = tiny_condensenet.groups
    for s in range(1, groups):
        changed = tiny_condensenet.condense(s / (2 * (groups - 1)))
        assert changed
        assert not tiny_condensenet.condense(s / (2 * (groups - 1)))  # idempotent between drops
        for conv in masked_convs(tiny_condensenet):
            density = conv.group_mask.mean().item()
            assert density == pytest.approx((groups - s) / groups)
    assert tiny_condensenet.condensation_complete


def test_each_group_keeps_one_gth_of_its_channels(tiny_condensenet):
    tiny_condensenet.condense(1.0)
    for conv in masked_convs(tiny_condensenet):
        kept_per_group = conv.group_mask.sum(1)
        assert torch.all(kept_per_group == conv.group_mask.shape[1] // conv.groups)


def test_lgc_drops_the_least_important_inputs_of_each_group():
    torch.manual_seed(0)
    lgc = LearnedGroupConv(in_channels=8, out_channels=4, groups=2, act_layer=torch.nn.ReLU)
    weight = torch.ones(4, 8)
    # Group 0 owns rows 0 and 2; group 1 rows 1 and 3. Make inputs 0..3 weak for group 0 only.
    weight[0, :4] = weight[2, :4] = 0.01 * torch.arange(1, 5)
    weight[1, 4:] = weight[3, 4:] = 0.01 * torch.arange(1, 5)
    lgc.conv.weight.data.copy_(weight[:, :, None, None])
    lgc.condense_step()  # drops 8 / 2 = 4 inputs per group
    assert lgc.group_mask[0].tolist() == [0, 0, 0, 0, 1, 1, 1, 1]
    assert lgc.group_mask[1].tolist() == [1, 1, 1, 1, 0, 0, 0, 0]


def test_sfr_drops_the_least_important_outputs_of_each_group():
    sfr = SparseFeatureReactivation(in_channels=4, out_channels=4, groups=2, act_layer=torch.nn.ReLU)
    weight = torch.ones(4, 4)
    # Inputs 0 and 2 form group 0, inputs 1 and 3 group 1. Group 0 barely feeds outputs 0 and 3.
    weight[0, 0::2] = weight[3, 0::2] = 0.01
    weight[1, 1::2] = weight[2, 1::2] = 0.01
    sfr.conv.weight.data.copy_(weight[:, :, None, None])
    sfr.condense_step()
    assert sfr.group_mask[0].tolist() == [0, 1, 1, 0]
    assert sfr.group_mask[1].tolist() == [1, 0, 0, 1]


def test_masked_weights_do_not_reach_the_output():
    torch.manual_seed(0)
    lgc = LearnedGroupConv(in_channels=8, out_channels=8, groups=4, act_layer=torch.nn.ReLU).eval()
    lgc.condense_to(3)
    x = torch.randn(2, 8, 5, 5)
    before = lgc(x)
    dead = lgc.weight_mask() == 0
    lgc.conv.weight.data[dead[:, :, None, None].expand_as(lgc.conv.weight)] = 1e6
    assert torch.equal(before, lgc(x))


def test_forward_changes_no_state(tiny_condensenet):
    before = {k: v.clone() for k, v in tiny_condensenet.state_dict().items() if "mask" in k or "stage" in k}
    tiny_condensenet.train()
    for _ in range(3):
        tiny_condensenet(torch.randn(2, 3, 16, 16)).logits.sum().backward()
    after = tiny_condensenet.state_dict()
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_convert_refuses_an_incomplete_condensation(tiny_condensenet):
    tiny_condensenet.condense(0.3)
    with pytest.raises(CondensationIncompleteError, match="condensation is at step 4 of 7"):
        tiny_condensenet.convert()


def test_converted_model_cannot_condense_again(tiny_condensenet):
    tiny_condensenet.condense(1.0)
    converted = tiny_condensenet.convert()
    with pytest.raises(RuntimeError, match="already converted"):
        converted.condense(1.0)


@pytest.mark.parametrize(
    "name, size, kwargs",
    [
        ("condensenetv2_cifar", 32, TINY_CONDENSENET),
        ("condensenetv2_cifar", 32, {}),
        ("condensenetv2_a", 96, {}),
        ("condensenetv2_b", 96, {}),
        ("condensenetv2_c", 64, {}),
    ],
)
def test_converted_form_matches_the_training_form(name, size, kwargs):
    model, converted = condensed_pair(name, size, **kwargs)
    x = torch.randn(3, 3, size, size)
    with torch.no_grad():
        expected, actual = model.eval()(x), converted(x)
    for a, b in zip(expected, actual):
        assert a.abs().max() > 1e-2  # realistic magnitudes, not a comparison of near-zeros
        assert (a - b).abs().max() < 1e-4


def test_converted_form_has_no_dense_channel_matrices():
    model, converted = condensed_pair("condensenetv2_a", 64)
    lgcs = [m for m in converted.modules() if isinstance(m, CondensedLearnedGroupConv)]
    sfrs = [m for m in converted.modules() if isinstance(m, CondensedSparseFeatureReactivation)]
    assert lgcs and sfrs
    for sfr in sfrs:
        assert sfr.targets.dtype == torch.long and sfr.targets.ndim == 1
        assert sfr.conv.groups == model.groups
    largest = max(t.numel() for t in converted.state_dict().values() if isinstance(t, torch.Tensor))
    assert largest <= max(p.numel() for p in converted.parameters())
    # Every converted 1x1 conv holds a G-th of its dense counterpart's weights.
    dense = sum(m.conv.weight.numel() for m in masked_convs(model))
    condensed = sum(m.conv.weight.numel() for m in lgcs + sfrs)
    assert condensed * model.groups == dense


def test_converted_backbone_file_round_trip(tmp_path):
    _, converted = condensed_pair("condensenetv2_cifar", 32, **TINY_CONDENSENET)
    path = tmp_path / "model.pt"
    save_backbone(converted, path, "condensenetv2_cifar", dict(TINY_CONDENSENET), classes=["a"])
    loaded, meta = load_backbone(path)
    x = torch.randn(2, 3, 32, 32)
    assert meta["classes"] == ["a"] and loaded.converted
    assert torch.equal(loaded(x).logits, converted(x).logits)


def test_non_divisible_channels_are_refused_clearly():
    with pytest.raises(ValueError, match="cannot be split into 8 .*groups"):
        create_model("condensenetv2_cifar", growth=(4, 8, 8))


def test_calibrated_batchnorm_gives_unit_scale_activations():
    model = calibrate_batchnorm(create_model("condensenetv2_cifar", **TINY_CONDENSENET), 32)
    features = model(torch.randn(4, 3, 32, 32)).features
    assert 0.05 < features.std() < 20


def test_scatter_rounds_never_repeat_a_target():
    targets = torch.tensor([3, 1, 3, 0, 3, 1])
    order, bounds = _rounds_of_distinct_targets(targets)
    assert bounds == [0, 3, 5, 6]
    assert sorted(order.tolist()) == list(range(6))
    for start, end in zip(bounds[:-1], bounds[1:]):
        chunk = targets[order[start:end]].tolist()
        assert len(chunk) == len(set(chunk))
