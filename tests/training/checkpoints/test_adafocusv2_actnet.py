"""The ``adafocusv2-actnet`` import format: parity with the authors' code, their exit rule, strictness.

Reference data (tests/data/checkpoints/adafocusv2_actnet_*): the authors' AdaFocusV2
(LeapLabTHU/AdaFocusV2 e97987c) in eval mode, filled by ``adafocus_formula.authors_state_dict``,
on ``smooth_clips`` fed in their test order; two reduced configs (10 classes, a 128-wide policy
GRU; the real backbones, so the real 224 / 96 frame geometry): MobileNetV2 glance with patch 128,
and the ResNet-50 glance at 96x96 with patch 96. See adafocus_formula.py for the formula.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.early_exit import _thresholds_for, confidence, exit_step
from tests.training.checkpoints.adafocus_formula import (
    CONFIGS,
    TEST_CONFIGS,
    authors_state_dict,
    load_layout,
    load_reference,
    smooth_clips,
)
from training.checkpoints import CheckpointError, ImportOptions, import_file

STEP_LOGIT_ATOL = 1e-2  # the tolerance on step logits (what we get is about 1e-5)


def _authors_file(tmp_path, config_name: str, mutate=None):
    config = CONFIGS[config_name]
    state = authors_state_dict(load_layout(config_name), config.seed)
    if mutate is not None:
        mutate(state)
    path = tmp_path / f"{config_name}.pth.tar"
    torch.save({"state_dict": state}, path)  # what their main_v2.py writes
    return path


@pytest.fixture(scope="module", params=TEST_CONFIGS)
def imported(request, tmp_path_factory):
    name = request.param
    path = _authors_file(tmp_path_factory.mktemp(name), name)
    model = import_file(path, "adafocusv2-actnet", ImportOptions(patch_size=CONFIGS[name].patch_size))
    return name, model


@pytest.fixture(scope="module")
def outputs(imported):
    """Our imported model's outputs on the reference clips (whole-clip forward, eval mode)."""
    name, model = imported
    clips = smooth_clips(CONFIGS[name].clips)
    with torch.no_grad():
        out = model.model(clips)  # reorders the chronological frames itself (coarse to fine)
    return name, model, out


def test_the_model_is_built_from_the_shapes_with_the_authors_conventions(imported):
    name, model = imported
    config, reference = model.model.config, load_reference(name)
    assert (config.num_classes, config.num_frames, config.policy_hidden) == (10, 16, CONFIGS[name].stn_hidden_dim)
    assert config.frame_order == "coarse_to_fine"
    assert model.model.order.tolist() == reference["order"].tolist()
    assert config.glance_size == CONFIGS[name].glance_size
    assert config.glance_resize == ("bilinear_align_corners" if name == "res50" else "auto")
    assert model.confidence == "max_logit"
    assert any("ImageNet heads" in note for note in model.notes)


def test_step_logits_and_top1_match_the_authors_code(outputs):
    name, _, out = outputs
    reference = load_reference(name)
    ours = out.step_logits.numpy()
    assert np.abs(ours - reference["step_logits"]).max() < STEP_LOGIT_ATOL
    assert (ours.argmax(-1) == reference["step_logits"].argmax(-1)).all()
    assert np.abs(out.global_logits.numpy() - reference["global_logits"]).max() < STEP_LOGIT_ATOL
    assert np.abs(out.local_logits.numpy() - reference["local_logits"]).max() < STEP_LOGIT_ATOL


def test_the_patch_locations_are_theirs_with_rows_and_columns_swapped(outputs):
    name, _, out = outputs
    actions = load_reference(name)["actions"]  # (row, col) = (y, x)
    assert np.abs(out.locations.numpy() - actions[..., ::-1]).max() < 1e-4
    assert np.abs(out.locations.numpy() - actions).max() > 0.05  # the swap is not a no-op on this data


def test_exit_decisions_match_the_authors_rule(outputs):
    """Their rule: calibrate on these clips (their dynamic_eval_find_threshold, max logit), then exit
    at the first step whose max logit reaches the threshold (their dynamic_evaluate).

    Calibrated from our logits, our sweep finds their thresholds and the same exit of every clip.
    Their own thresholds, applied to our logits, exit the same way too once lowered by 1e-4: each
    threshold is exactly one clip's confidence, which float32 noise (~1e-5) may put on either side.
    """
    name, _, out = outputs
    reference = load_reference(name)
    conf = confidence(out.step_logits.numpy(), "max_logit")  # (clips, 16)
    assert reference["confidence_gap"] > 1e-3  # no other clip within the 1e-4 nudge
    for p, thresholds, expected in zip(reference["p"], reference["thresholds"], reference["exit_steps"], strict=True):
        ours = _thresholds_for(conf, float(p))
        # Where no clip exits they store 1e8 (and -1e8 at the last step), we store +-inf.
        never = ~np.isfinite(ours)
        assert (np.abs(thresholds[never]) >= 1e7).all(), f"p = {p}"
        assert np.allclose(np.asarray(ours)[~never], thresholds[~never], atol=1e-4), f"p = {p}"
        assert [exit_step(row, ours) for row in conf] == expected.tolist(), f"p = {p}"
        theirs = np.where(np.abs(thresholds) >= 1e7, np.sign(thresholds) * np.inf, thresholds - 1e-4)
        assert [exit_step(row, theirs) for row in conf] == expected.tolist(), f"p = {p}"
    assert len({tuple(steps) for steps in reference["exit_steps"].tolist()}) > 1  # the sweep decides something


def test_the_patch_size_is_required_and_checked(tmp_path):
    path = _authors_file(tmp_path, "res50")
    with pytest.raises(CheckpointError, match="give --patch-size"):
        import_file(path, "adafocusv2-actnet")
    with pytest.raises(CheckpointError, match="patch size 300"):
        import_file(path, "adafocusv2-actnet", ImportOptions(patch_size=300))


def _drop(key):
    return lambda state: state.pop(key)


def _reshape(key):
    return lambda state: state.__setitem__(key, state[key][:-1])


def _extra(key):
    return lambda state: state.__setitem__(key, torch.zeros(3))


@pytest.mark.parametrize(
    ("mutate", "message"),
    [
        (_drop("module.policy_stn.gru.bias_hh_l0"), "policy_stn.gru.bias_hh_l0"),
        (_drop("module.local_CNN.layer3.2.bn2.running_var"), "local_CNN.layer3.2.bn2.running_var"),
        (_reshape("module.classifier.classifiers.9.1.bias"), "classifier.classifiers.9.1.bias has shape"),
        (_extra("module.policy_stn.extra"), "policy_stn.extra"),
        (_drop("module.classifier.classifiers.15.1.weight"), "classifier.classifiers"),
    ],
    ids=["missing-gru-bias", "missing-bn-stat", "wrong-head-shape", "unexpected-tensor", "missing-step-head"],
)
def test_a_damaged_file_is_an_error_naming_the_key(tmp_path, mutate, message):
    path = _authors_file(tmp_path, "res50", mutate)
    with pytest.raises(CheckpointError, match=message.replace(".", r"\.")):
        import_file(path, "adafocusv2-actnet", ImportOptions(patch_size=96))


def test_another_format_and_a_truncated_file_are_refused(tmp_path):
    path = _authors_file(tmp_path, "res50")
    with pytest.raises(CheckpointError, match="is not a torchvision-resnet file"):
        import_file(path, "torchvision-resnet")
    truncated = tmp_path / "truncated.pth"
    truncated.write_bytes(path.read_bytes()[: 1 << 20])
    with pytest.raises(CheckpointError, match="truncated"):
        import_file(truncated, "adafocusv2-actnet", ImportOptions(patch_size=96))


def test_the_import_command_writes_a_train_py_run_folder(tmp_path, capsys):
    """model.pt as training leaves it: the export reads the architecture, the authors' conventions
    (coarse-to-fine order, ImageNet normalisation after 256 / 224, max-logit exit) and the full point."""
    from training.adafocus.record import load_model
    from training.import_checkpoint import main

    path = _authors_file(tmp_path, "res50")
    labels = tmp_path / "labels.txt"
    labels.write_text("".join(f"action {i}\n" for i in range(10)))
    out = tmp_path / "run"
    assert (
        main(
            [
                str(path),
                "--format",
                "adafocusv2-actnet",
                "--patch-size",
                "96",
                "--labels",
                str(labels),
                "--out",
                str(out),
            ]
        )
        == 0
    )
    assert "rows swapped" in capsys.readouterr().err
    model, record = load_model(out / "model.pt")
    assert record.classes == [f"action {i}" for i in range(10)]
    assert (record.geometry.resize, record.geometry.crop) == (256, 224)
    assert record.normalisation.mean == pytest.approx((0.485, 0.456, 0.406))
    assert record.confidence == "max_logit" and model.config.frame_order == "coarse_to_fine"
    assert [p["names"] for p in record.operating_points] == [["full"]]
    assert record.operating_points[0]["accuracy"] is None
    assert record.step_macs["total"] > 1e9  # counted from the model: ResNet-50 glance at 96 + focus at 96
    assert record.train_config["imported"]["format"] == "adafocusv2-actnet"
    reference = import_file(path, "adafocusv2-actnet", ImportOptions(patch_size=96)).model.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())
