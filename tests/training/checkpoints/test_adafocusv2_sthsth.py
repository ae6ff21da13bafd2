"""The ``adafocusv2-sthsth`` import format: parity with the authors' code, and strictness.

Reference data (tests/data/checkpoints), written ad hoc from the authors' ``Experiments on
Sth-Sth and Jester/main.py`` (LeapLabTHU/AdaFocusV2 e97987c: ``AdaFocus(num_class, args)`` with
their README's options: ``--arch resnet50 --num_segments 8 --shift --shift_div 8
--shift_place blockres --dropout 0.5``; ``--patch_size`` 96 here):

* ``adafocusv2_sthsth_layout.json.gz``: the keys, shapes and dtypes of their
  ``DataParallel(AdaFocus).state_dict()`` for 10 classes (``reduced``, the parity model) and
  174 (``sthv1``, equal key for key to the published listing of sthv1_p128.pth.tar);
* ``adafocusv2_sthsth_p96.npz``: their model's outputs in eval mode on :func:`smooth_clips`
  once filled by :func:`authors_state_dict` (seed 0): ``logits`` (what their ``validate``
  scores), ``global_logits`` / ``local_logits`` (each TSN's ``new_fc`` consensus),
  ``global_reg`` / ``local_reg`` (``new_new_fc``), ``action`` (their policy's output,
  ``(row, col)``).

Weights: :func:`tests.training.checkpoints.weight_formula.tensor_value`, except the policy's
last Linear (``policy_stn.10``), scaled by :data:`POLICY_HEAD_SCALE` so that the locations spread
over the frame (0.27 to 0.74; unscaled they all lie within 0.07 of the centre, where a wrong
crop or a (row, col) swap would hardly move the logits).
"""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.checkpoints.weight_formula import tensor_value
from tests.training.tiny import TINY_TSM
from training.adafocus.sthsth import TsmAdaFocusConfig, build_tsm_adafocus, clip_frame_indices, tsn_segment_indices
from training.checkpoints import CheckpointError, ImportOptions, formats, import_file
from training.checkpoints import adafocusv2_sthsth as sthsth

DATA = Path(__file__).resolve().parents[2] / "data" / "checkpoints"
LAYOUT_FILE = DATA / "adafocusv2_sthsth_layout.json.gz"
REFERENCE_FILE = DATA / "adafocusv2_sthsth_p96.npz"
# The published listings (outside the repository: ../shared of a checkout, when present).
PUBLISHED = Path(__file__).resolve().parents[4] / "shared" / "reference" / "official_checkpoints"
PATCH_SIZE = 96
NUM_CLASSES = 10
GLANCE, FOCUS, SIZE = 8, 12, 224
POLICY_HEAD_SCALE = 4.0


def load_layout(name: str = "reduced") -> list[list]:
    """``[[key, shape, dtype], ...]`` of the authors' state dict (``reduced`` or ``sthv1``)."""
    with gzip.open(LAYOUT_FILE, "rt") as file:
        return json.load(file)[name]


def authors_state_dict(layout: list, seed: int = 0) -> dict[str, torch.Tensor]:
    """The authors' state dict of ``layout`` (keys with ``module.``) filled by the formula."""
    state = {}
    for number, (key, shape, _dtype) in enumerate(layout):
        array = tensor_value(key, shape, number, seed)
        if key.startswith("module.policy_stn.10."):
            array = array * np.float32(POLICY_HEAD_SCALE)
        state[key] = torch.from_numpy(np.array(array, copy=True))
    return state


def smooth_clips(batch: int = 2) -> tuple[torch.Tensor, torch.Tensor]:
    """Glance ``(B, 8, 3, 224, 224)`` and focus ``(B, 12, 3, 224, 224)`` frames of smooth videos.

    Frame ``i`` of ``n`` shows the video at time ``(i + 0.5) / n`` (the segment centres), so
    the two sets are samples of the same sines and cosines moving over time.
    """

    def frames(count: int) -> np.ndarray:
        t = ((np.arange(count) + 0.5) / count)[None, :, None, None, None]
        b = np.arange(batch)[:, None, None, None, None]
        c = np.arange(3)[None, None, :, None, None]
        y = np.arange(SIZE)[None, None, None, :, None]
        x = np.arange(SIZE)[None, None, None, None, :]
        wave = np.sin(0.041 * y * (c + 1) + 0.029 * x + 2.0 * t + 0.7 * b)
        return (wave + 0.5 * np.cos(0.021 * (x - y) - c + b - 3.0 * t)).astype(np.float32)

    return torch.from_numpy(frames(GLANCE)), torch.from_numpy(frames(FOCUS))


def load_reference() -> dict[str, np.ndarray]:
    with np.load(REFERENCE_FILE) as data:
        return {key: data[key] for key in data.files}


def save_file(path: Path, state: dict[str, torch.Tensor]) -> Path:
    """``state`` in the file layout of the authors' ``main.py`` (optimizer entry included)."""
    optimizer = {
        "state": {0: {"momentum_buffer": torch.zeros(4)}, 1: {"momentum_buffer": torch.ones(2)}},
        "param_groups": [
            {
                "lr": 1e-4,
                "lr_mult": 0.01,
                "decay_mult": 1,
                "name": "policy_stn",
                "momentum": 0.9,
                "dampening": 0,
                "weight_decay": 5e-4,
                "nesterov": False,
                "params": [0, 1],
            },
        ],
    }
    torch.save({"epoch": 50, "arch": "resnet50", "state_dict": state, "optimizer": optimizer, "best_prec1": 47.0}, path)
    return path


@pytest.fixture(scope="module", autouse=True)
def registered():
    """The format, registered even before formats.BUILTIN_MODULES lists this module."""
    formats.format_names()  # registers the built-in and planned formats
    planned = formats.FORMATS[sthsth.FORMAT_NAME]
    if not planned.implemented:
        formats.FORMATS[sthsth.FORMAT_NAME] = sthsth.FORMATS[0]
    yield
    formats.FORMATS[sthsth.FORMAT_NAME] = planned


@pytest.fixture(scope="module")
def state() -> dict[str, torch.Tensor]:
    return authors_state_dict(load_layout("reduced"), seed=0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, state) -> Path:
    return save_file(tmp_path_factory.mktemp("sthsth") / "reduced_p96.pth.tar", state)


def _import(path: Path, patch_size: int | None = PATCH_SIZE):
    return import_file(path, sthsth.FORMAT_NAME, ImportOptions(patch_size=patch_size))


@pytest.fixture(scope="module")
def imported(checkpoint):
    return _import(checkpoint)


def test_imported_model_answers_as_the_authors_code(imported):
    reference = load_reference()
    glance, focus = smooth_clips()
    with torch.no_grad():
        out = imported.model(torch.cat((glance, focus), dim=1))
    pairs = {
        "logits": out.logits,
        "global_logits": out.global_logits,
        "local_logits": out.local_logits,
        "global_reg": out.global_aux_logits,
        "local_reg": out.local_aux_logits,
    }
    for name, ours in pairs.items():
        ours = ours.numpy()
        assert np.abs(ours - reference[name]).max() < 1e-2, name
        assert (ours.argmax(1) == reference[name].argmax(1)).all(), name
    # theirs is (row, col), ours (x, y); the reference's locations are well inside the frame
    their_action = reference["action"]
    assert np.abs(out.location.numpy() - their_action[:, ::-1]).max() < 1e-4
    assert 0.2 < their_action.min() and their_action.max() < 0.8
    assert np.abs(their_action[:, 0] - their_action[:, 1]).max() > 0.1  # a swap would show


def test_import_reads_the_architecture_from_the_shapes(imported):
    assert imported.kind == "adafocus_tsm" and imported.num_classes == NUM_CLASSES
    config = TsmAdaFocusConfig(**imported.model_kwargs)
    assert (config.glance_segments, config.focus_segments, config.frame_size) == (GLANCE, FOCUS, SIZE)
    assert (config.patch_size, config.policy_channels, config.policy_hidden) == (PATCH_SIZE, 64, (1024, 512))
    pre = imported.preprocessing
    assert (pre["resize"], pre["input_size"], pre["num_frames"], pre["whole_clip"]) == (256, 224, 20, True)
    assert any("optimizer" in note for note in imported.notes)
    assert any("epoch 50" in note for note in imported.notes)
    # the same model comes back from its config (what a run folder rebuilds)
    rebuilt = build_tsm_adafocus(imported.model_kwargs)
    rebuilt.load_state_dict(imported.model.state_dict())


def test_auto_detection_finds_only_this_format(state):
    # what import_file(path, "auto") relies on: exactly one implemented format matches the file
    unwrapped = {key.removeprefix("module."): value for key, value in state.items()}
    implemented = [formats.FORMATS[name] for name in formats.format_names(implemented_only=True)]
    matching = [fmt.name for fmt in implemented if fmt.matches and fmt.recognises({}, unwrapped)]
    assert matching == [sthsth.FORMAT_NAME]


def test_our_layout_is_the_authors_and_the_published_one():
    for name, classes in (("reduced", NUM_CLASSES), ("sthv1", 174)):
        ours = sthsth.authors_layout(build_tsm_adafocus(TsmAdaFocusConfig(num_classes=classes)))
        theirs = [(key, tuple(shape)) for key, shape, _ in load_layout(name)]
        assert dict(ours) == dict(theirs) and len(ours) == len(theirs) == 660, name
    listing = PUBLISHED / "adafocusv2_sthv1_p128.tsv"
    if not listing.is_file():
        pytest.skip("the published listings are not next to this checkout")
    rows = [line.split("\t") for line in listing.read_text().splitlines()[1:]]
    assert [[key, json.loads(shape), dtype] for key, shape, dtype in rows] == load_layout("sthv1")


def test_patch_size_is_required(checkpoint):
    with pytest.raises(CheckpointError, match="--patch-size"):
        _import(checkpoint, patch_size=None)
    with pytest.raises(CheckpointError, match="--patch-size 300"):
        _import(checkpoint, patch_size=300)


def test_truncated_file_is_refused(tmp_path, checkpoint):
    cut = tmp_path / "cut.pth.tar"
    cut.write_bytes(checkpoint.read_bytes()[: checkpoint.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        _import(cut)


def test_missing_key_wrong_shape_and_unknown_tensor_are_named(tmp_path, state):
    missing = "module.local_CNN.base_model.layer3.2.conv2.weight"
    path = save_file(tmp_path / "missing.pth.tar", {k: v for k, v in state.items() if k != missing})
    with pytest.raises(CheckpointError, match=r"no tensor local_CNN\.base_model\.layer3\.2\.conv2\.weight"):
        _import(path)
    wrong = "module.global_CNN.base_model.features.5.conv.3.weight"
    path = save_file(tmp_path / "wrong.pth.tar", {**state, wrong: torch.zeros(3, 1, 3, 3)})
    with pytest.raises(CheckpointError, match=r"global_CNN\.base_model\.features\.5\.conv\.3\.weight has shape"):
        _import(path)
    extra = "module.global_CNN.base_model.classifier.weight"
    path = save_file(tmp_path / "extra.pth.tar", {**state, extra: torch.zeros(10, 1280)})
    with pytest.raises(CheckpointError, match=r"does not know.*global_CNN\.base_model\.classifier\.weight"):
        _import(path)


def test_an_actnet_file_is_not_taken_for_one(tmp_path):
    # the first keys of the ActivityNet family's main_v2.py files (MobileNetV2 glance, recurrent policy)
    keys = {
        "module.global_CNN.features.0.0.weight": (32, 3, 3, 3),
        "module.global_CNN.classifier.weight": (1000, 1280),
        "module.local_CNN.conv1.weight": (64, 3, 7, 7),
        "module.policy_stn.encoder.0.weight": (64, 1280, 1, 1),
        "module.policy_stn.gru.weight_ih_l0": (6144, 2048),
    }
    path = tmp_path / "actnet_p128.pth.tar"
    torch.save({"state_dict": {key: torch.zeros(shape) for key, shape in keys.items()}}, path)
    with pytest.raises(CheckpointError, match=r"not a adafocusv2-sthsth file.*global_CNN\.features\.0\.0\.weight"):
        _import(path)


def test_test_time_frame_sampling():
    # TSN's segment centres, 0-based: int(N / T * (i + 0.5))
    assert tsn_segment_indices(40, 8) == [2, 7, 12, 17, 22, 27, 32, 37]
    assert tsn_segment_indices(30, 12) == [1, 3, 6, 8, 11, 13, 16, 18, 21, 23, 26, 28]
    assert tsn_segment_indices(8, 8) == [0] * 8  # their code: frame 0 when a video is this short
    config = TsmAdaFocusConfig(num_classes=3)
    assert clip_frame_indices(40, config)[:8] == tsn_segment_indices(40, 8)
    assert len(clip_frame_indices(40, config)) == config.num_frames == 20


def test_the_model_on_a_tiny_config():
    config = TsmAdaFocusConfig(num_classes=3, **TINY_TSM)
    model = build_tsm_adafocus(config)
    clips = torch.randn(2, 5, 3, 64, 64)
    with torch.no_grad():
        out = model(clips)
        fixed = model(clips, location=torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert out.logits.shape == (2, 3) and out.location.shape == (2, 2)
    assert torch.allclose(out.logits, out.global_logits + out.local_logits)
    assert torch.equal(fixed.location, torch.tensor([[0.0, 0.0], [1.0, 1.0]]))
    assert torch.equal(fixed.global_logits, out.global_logits) and not torch.equal(fixed.local_logits, out.local_logits)
    with pytest.raises(ValueError, match="2 glance frames then 3 focus frames"):
        model(torch.randn(2, 4, 3, 64, 64))


def test_the_import_command_writes_a_whole_clip_run_folder(tmp_path, checkpoint, imported, capsys):
    """model.pt as export reads it: the architecture, the authors' test preprocessing (shorter side
    256, centre 224, ImageNet statistics) and the MACs of one pass counted from the model."""
    from training.adafocus.sthsth_record import load_tsm_model
    from training.import_checkpoint import main

    out = tmp_path / "run"
    args = [str(checkpoint), "--format", sthsth.FORMAT_NAME, "--patch-size", str(PATCH_SIZE), "--out", str(out)]
    assert main(args) == 0
    assert "class_0..9" in capsys.readouterr().err  # no --labels: a warning
    model, record = load_tsm_model(out / "model.pt")
    assert model.config == imported.model.config and record.classes == [f"class_{i}" for i in range(NUM_CLASSES)]
    assert (record.geometry.resize, record.geometry.crop) == (256, SIZE)
    assert record.normalisation.std == pytest.approx((0.229, 0.224, 0.225))
    # 8 MobileNetV2 frames at 224 (0.30 GMACs each) + 12 ResNet-50 patches at 96 (0.75 each)
    assert 11e9 < record.macs_per_clip < 12e9
    assert record.train_config["imported"]["format"] == sthsth.FORMAT_NAME
    reference = imported.model.state_dict()
    assert all(torch.equal(value, reference[key]) for key, value in model.state_dict().items())
    summary = json.loads((out / "summary.json").read_text())
    assert summary["temporal"] == "whole_clip"
    assert summary["gmacs_per_clip"] == pytest.approx(record.macs_per_clip / 1e9)
