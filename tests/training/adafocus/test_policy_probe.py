"""The policy's training additions (exploration noise, blurred crop gradient, head initialisation)
and the probe that measures why a policy learns or not."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from tests.training.tiny import TINY_TRAINING
from training.adafocus import policy_probe
from training.adafocus.config import TrainConfig
from training.adafocus.crop import PatchCrop
from training.adafocus.run import train
from training.adafocus.v2.trainer import AdaFocusTrainer


def tiny_config(data: Path, out: Path, **overrides) -> TrainConfig:
    return TrainConfig(data=str(data), out=str(out), **{**TINY_TRAINING, **overrides})


def test_the_policy_head_starts_at_the_centre_or_as_pytorch_initialises_it(tiny_dataset: Path, tmp_path: Path):
    centre = AdaFocusTrainer(tiny_config(tiny_dataset, tmp_path / "a"))
    assert float(centre.model.policy.head.weight.detach().abs().max()) == 0.0
    pytorch = AdaFocusTrainer(tiny_config(tiny_dataset, tmp_path / "b", policy_head_init="pytorch"))
    weight = pytorch.model.policy.head.weight.detach()
    bound = 1 / weight.shape[1] ** 0.5  # nn.Linear's default: uniform in +-1/sqrt(fan_in)
    assert 0 < float(weight.abs().max()) <= bound


def test_exploration_settings_out_of_range_are_refused(tiny_dataset: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="policy-noise"):
        AdaFocusTrainer(tiny_config(tiny_dataset, tmp_path / "a", policy_noise=-0.1))
    with pytest.raises(ValueError, match="crop-gradient-blur"):
        AdaFocusTrainer(tiny_config(tiny_dataset, tmp_path / "b", crop_gradient_blur=-1.0))


def test_exploration_decays_to_nothing_by_the_last_step(tiny_dataset: Path, tmp_path: Path):
    trainer = AdaFocusTrainer(tiny_config(tiny_dataset, tmp_path, policy_noise=0.3, crop_gradient_blur=2.0))
    first = trainer._exploration()
    assert first.noise == 0.3 and first.gradient_blur == 2.0
    trainer.state.step = trainer.total_steps // 2
    assert abs(trainer._exploration().noise - 0.3 * (1 - trainer.state.step / trainer.total_steps)) < 1e-12
    trainer.state.step = trainer.total_steps
    assert trainer._exploration().noise == 0.0
    assert AdaFocusTrainer(tiny_config(tiny_dataset, tmp_path / "plain"))._exploration() is None


def test_a_run_with_the_additions_trains_and_the_probe_measures_it(tiny_dataset: Path, tmp_path: Path):
    run = tmp_path / "run"
    config = tiny_config(
        tiny_dataset, run, epochs=1, policy_noise=0.3, crop_gradient_blur=2.0, policy_head_init="pytorch"
    )
    summary = train(config)
    assert summary["test"]["focus"]["frames"] > 0
    out = tmp_path / "probe.json"
    assert policy_probe.main([str(run), "--data", str(tiny_dataset), "--clips", "4", "--out", str(out)]) == 0
    (probe,) = json.loads(out.read_text())
    frames = probe["frames"]
    assert probe["clips"] == 4 and frames == 4 * TINY_TRAINING["num_frames"]
    assert all(0.0 <= value <= 1.0 for value in probe["reads"].values())
    for where in ("where_it_looks", "at_random", "at_random_blur_8px"):
        counts = [probe["gradient"][where][kind]["frames"] for kind in ("overlapping", "not_overlapping")]
        assert sum(counts) <= frames
    assert len(probe["landscape"]["x"]) == len(policy_probe.OFFSETS) == len(probe["landscape"]["y"])
    assert len(probe["subpixel"]["loss"]) == 5 and all(v > 0 for v in probe["subpixel"]["loss"])
    assert len(probe["origin_sd_px"]) == 2
    assert probe["follows_target"] is None or all(-1 <= v <= 1 for v in probe["follows_target"])
    glance = probe["glance_knows_where"]
    assert len(glance["r2"]) == 2 and glance["penalty"] in policy_probe.RIDGE_PENALTIES
    # A baseline without a patch is refused with a message, not a traceback.
    glance = tmp_path / "glance"
    train(tiny_config(tiny_dataset, glance, epochs=1, variant="glance_only"))
    assert policy_probe.main([str(glance), "--data", str(tiny_dataset)]) == 2


def test_the_glance_probe_finds_a_location_written_in_the_features_and_not_one_that_is_absent():
    generator = torch.Generator().manual_seed(0)
    targets = torch.rand(400, 2, generator=generator)
    noise = torch.randn(400, 8, 2, 2, generator=generator)
    written = noise.clone()
    written[:, 0, 0, 0] += 20 * targets[:, 0]  # one channel carries x, another y
    written[:, 1, 1, 1] += 20 * targets[:, 1]
    knows = policy_probe._glance_knows_where(written, targets, clips=100, steps=4)
    assert min(knows["r2"]) > 0.8
    blind = policy_probe._glance_knows_where(noise, targets, clips=100, steps=4)
    assert max(blind["r2"]) < 0.2
    assert policy_probe._follows(targets, targets) == pytest.approx([1.0, 1.0])


def test_the_probe_gradient_follows_a_loss_that_falls_towards_the_target():
    """A hand-made case: a "local network" whose class-0 logit is ten times the patch's mean
    brightness, and a bright square as the target of class 0: the loss falls as the patch moves
    onto the square, so at a patch half on it the gradient must point towards it."""
    crop = PatchCrop(32, 16)

    def score(pooled: torch.Tensor) -> torch.Tensor:
        return torch.stack([pooled[:, 0] * 10, torch.zeros(len(pooled))], dim=1)

    model = SimpleNamespace(
        config=SimpleNamespace(frame_size=32, patch_size=16),
        focus=lambda frames, locations, blur=0.0: crop(frames, locations, blur).mean(dim=(2, 3)),
        local_aux=score,
        fuse=lambda global_pooled, local_pooled: local_pooled,
        classifier=_Classifier(score),
    )
    frames = torch.zeros(1, 3, 32, 32)
    frames[..., 8:16, 20:28] = 1.0  # the target: x 20..28, y 8..16
    targets = torch.tensor([[20.0, 8.0, 28.0, 16.0]])
    locations = torch.tensor([[[9.5 / 16, 4.0 / 16]]])  # the patch: x 9.5..25.5, y 4..20
    result = policy_probe._gradient(model, frames, None, locations, torch.tensor([0]), targets, (1, 1))
    assert result["overlapping"]["frames"] == 1 and result["not_overlapping"] == {"frames": 0}
    assert result["overlapping"]["share_pointing_to_target"] == 1.0
    assert result["overlapping"]["mean_cosine_to_target"] > 0.5


class _Classifier:
    """The classifier's interface as the probe uses it: a state, then logits per step."""

    def __init__(self, score):
        self.score = score

    def initial_state(self, batch, device):
        return None

    def __call__(self, features, state, step):
        return self.score(features), state
