"""AdaFocus (V1): policies, PPO on a toy problem, the four stages with resume, export and service."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from tests.training.tiny import TINY_TRAINING
from training.adafocus.config import TrainConfig
from training.adafocus.record import load_model
from training.adafocus.run import train
from training.adafocus.v1.policy import GaussianPolicy, GridPolicy
from training.adafocus.v1.ppo import PPOSettings, discounted_returns, normalise_advantages, ppo_loss
from training.adafocus.v1.trainer import true_class_probability
from training.engine.commands import TrainingStopped

V1_STAGES = [1, 1, 1, 1]


def v1_config(data: Path, out: Path, **overrides) -> TrainConfig:
    settings = {**TINY_TRAINING, "method": "adafocus_v1", "v1_stage_epochs": V1_STAGES, **overrides}
    return TrainConfig(data=str(data), out=str(out), **settings)


# -- policies and PPO ---------------------------------------------------------------------------
def test_grid_policy_actions_are_the_corners_of_a_seven_by_seven_grid():
    policy = GridPolicy(8, (2, 2), conv_channels=4, hidden_size=16)
    assert policy.corners.shape == (49, 2)
    assert torch.equal(
        policy.location_of(torch.tensor([0, 6, 42, 48])), torch.tensor([[0, 0], [1, 0], [0, 1], [1, 1.0]])
    )
    assert torch.allclose(policy.location_of(torch.tensor([8])), torch.tensor([[1 / 6, 1 / 6]]))
    features, state = torch.randn(5, 8, 2, 2), policy.initial_state(5)
    step = policy.act(features, state, torch.Generator().manual_seed(0))
    assert step.action.shape == (5,) and step.log_prob.shape == step.value.shape == (5,)
    # Inference takes the most likely corner, and evaluating an action repeats its log-probability.
    location, _ = policy(features, state)
    assert torch.equal(location, policy.act(features, state, greedy=True).location)
    assert torch.allclose(policy.evaluate(features, state, step.action).log_prob, step.log_prob)


def test_skipping_grid_policy_has_a_separate_skip_decision_with_its_own_probability():
    policy = GridPolicy(8, (2, 2), conv_channels=4, hidden_size=16, skip=True)
    features, state = torch.randn(300, 8, 2, 2), policy.initial_state(300)
    step = policy.act(features, state, torch.Generator().manual_seed(0))
    assert step.action.shape == (300, 2) and set(step.action[:, 1].tolist()) == {0, 1}
    assert torch.equal(policy.skips(step.action), step.action[:, 1].bool())
    assert torch.equal(step.location, policy.corners[step.action[:, 0]])
    # log p(action) = log p(skip) for a skipped frame (its corner unused), else log p(focus) + log p(corner).
    hidden = policy._hidden(features, state)
    p_skip = torch.sigmoid(policy.skip_logit(hidden, None))
    p_corner = torch.softmax(policy.actor(hidden), -1).gather(1, step.action[:, :1]).squeeze(1)
    skipped = step.action[:, 1].bool()
    expected = torch.where(skipped, p_skip.log(), (1 - p_skip).log() + p_corner.log())
    assert torch.allclose(step.log_prob, expected, atol=1e-5)
    other_corner = step.action.clone()
    other_corner[:, 0] = (other_corner[:, 0] + 1) % 49
    changed = policy.evaluate(features, state, other_corner).log_prob
    assert torch.allclose(changed[skipped], step.log_prob[skipped], atol=1e-6)
    assert not torch.allclose(changed[~skipped], step.log_prob[~skipped])
    # Entropy: the skip decision's plus, where it focuses, the corner's.
    corner_entropy = torch.distributions.Categorical(logits=policy.actor(hidden)).entropy()
    skip_entropy = -(p_skip * p_skip.log() + (1 - p_skip) * (1 - p_skip).log())
    assert torch.allclose(step.entropy, skip_entropy + (1 - p_skip) * corner_entropy, atol=1e-5)


def test_the_skip_decision_reads_the_classifier_confidence():
    policy = GridPolicy(8, (2, 2), conv_channels=4, hidden_size=16, skip=True)
    with torch.no_grad():  # skip exactly where the classifier is more than 60% sure
        policy.skip_head.weight.zero_()[0, -1] = 50.0
        policy.skip_head.bias.fill_(-30.0)
    features, state = torch.randn(4, 8, 2, 2), policy.initial_state(4)
    _, skipped, _ = policy.decide(features, state, torch.tensor([0.0, 0.5, 0.7, 0.95]))
    assert skipped.tolist() == [False, False, True, True]
    assert not policy.decide(features, state)[1].any()  # no confidence yet: as 0


def test_a_skipping_model_streams_as_it_runs_whole_clips():
    """The whole-clip pass (training, evaluation) and the step-by-step pass (early exit) make
    the same skip decisions from the same confidences, and give the same predictions."""
    from tests.training.tiny import TINY_TRAINING
    from training.adafocus.model import AdaFocusConfig, AdaFocusV2, prediction_confidence

    fields = {k: v for k, v in TINY_TRAINING.items() if k in AdaFocusConfig.__dataclass_fields__}
    torch.manual_seed(0)
    model = AdaFocusV2(AdaFocusConfig(num_classes=3, policy="grid", skip_frames=True, **fields)).eval()
    clips = torch.randn(6, 4, 3, 32, 32)
    with torch.no_grad():
        first = model(clips)
        # Skip where the confidence after the previous frame passes its median over the clips: some
        # frames skipped, some not, decided per video.
        threshold = float(prediction_confidence(first.step_logits[:, :-1].flatten(0, 1)).median())
        model.policy.skip_head.weight.zero_()[0, -1] = 1000.0
        model.policy.skip_head.bias.fill_(-1000.0 * threshold)
        output = model(clips)
        state = model.initial_state(6)
        streamed, skips = [], []
        for t in range(4):
            before = state.confidence
            logits, _, state = model.step(clips[:, model.order[t]], state, t)
            skips.append(before > threshold)
            streamed.append(logits)
    assert not output.skipped[:, 0].any() and 0 < output.skipped.sum() < output.skipped.numel() - 6
    assert torch.equal(output.skipped, torch.stack(skips, 1))
    assert torch.allclose(output.step_logits, torch.stack(streamed, 1), atol=1e-5)


def test_gaussian_policy_samples_around_its_mean_inside_the_frame():
    policy = GaussianPolicy(8, (2, 2), conv_channels=4, hidden_size=16)
    features, state = torch.randn(400, 8, 2, 2), policy.initial_state(400)
    step = policy.act(features, state, torch.Generator().manual_seed(0))
    mean, _ = policy(features, state)
    assert step.location.min() >= 0 and step.location.max() <= 1
    assert (step.action - mean).std().item() == pytest.approx(0.25, rel=0.1)  # the fixed std


def test_discounted_returns_and_the_clipped_objective():
    rewards = torch.tensor([[1.0, 0.0, 2.0]])
    assert torch.allclose(discounted_returns(rewards, 0.5), torch.tensor([[1.5, 1.0, 2.0]]))
    settings = PPOSettings(clip=0.2, value_coef=0.0, entropy_coef=0.0)
    zero = torch.zeros(1)
    # A ratio of 2 with a positive advantage earns no more than the clip allows (1.2 A).
    loss, _ = ppo_loss(torch.log(torch.tensor([2.0])), zero, torch.ones(1), zero, zero, zero, settings)
    assert loss.item() == pytest.approx(-1.2)
    advantages = normalise_advantages(torch.tensor([1.0, 2.0, 3.0]))
    assert advantages.mean().abs() < 1e-6 and advantages.std().item() == pytest.approx(1.0)


def test_ppo_updates_improve_the_reward_on_a_toy_problem():
    """Four kinds of feature map, each with its own best corner; the reward falls off with the
    distance from it (dense, like the probability-difference reward of stage 2)."""
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    policy = GridPolicy(8, (2, 2), conv_channels=16, hidden_size=32)
    optimizer = torch.optim.Adam(policy.parameters(), lr=3e-3)
    settings = PPOSettings()
    contexts, best_corners = torch.randn(4, 8, 2, 2, generator=generator), torch.tensor([3, 17, 30, 45])

    def batch() -> tuple[torch.Tensor, torch.Tensor]:
        kind = torch.randint(0, 4, (64,), generator=generator)
        return contexts[kind], best_corners[kind]

    def reward(action: torch.Tensor, best: torch.Tensor) -> torch.Tensor:
        return 1 - (policy.location_of(action) - policy.location_of(best)).abs().sum(-1) / 2

    def greedy_reward() -> tuple[float, float]:  # mean reward and exact hits of the likeliest corner
        features, best = batch()
        with torch.no_grad():
            action = policy.act(features, policy.initial_state(64), greedy=True).action
        return reward(action, best).mean().item(), (action == best).float().mean().item()

    before, _ = greedy_reward()
    for _ in range(200):
        features, best = batch()
        state = policy.initial_state(64)
        with torch.no_grad():
            step = policy.act(features, state, generator)
        returns = discounted_returns(reward(step.action, best)[:, None], settings.gamma)
        advantages = normalise_advantages(returns - step.value[:, None])
        again = policy.evaluate(features, state, step.action)
        loss, _ = ppo_loss(
            again.log_prob[:, None],
            step.log_prob[:, None],
            advantages,
            again.value[:, None],
            returns,
            again.entropy[:, None],
            settings,
        )
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after, _ = greedy_reward()
    # Seeded: from about 0.57 (an untrained policy's corners) to about 0.92 (at or next to the best).
    assert after > before + 0.2 and after > 0.85, (before, after)


def test_true_class_probability():
    logits = torch.tensor([[0.0, 0.0], [10.0, -10.0]])
    assert torch.allclose(true_class_probability(logits, torch.tensor([1, 0]), False), torch.tensor([0.5, 1.0]))
    multi = true_class_probability(torch.zeros(1, 3), torch.tensor([[1, 1, 0]]), True)
    assert multi.item() == pytest.approx(0.5)


# -- the staged run ------------------------------------------------------------------------------
def test_every_stage_runs_and_a_stopped_run_resumes_to_the_same_model(tiny_dataset: Path, tmp_path: Path):
    whole = train(v1_config(tiny_dataset, tmp_path / "whole"))
    assert whole["method"] == "adafocus_v1" and whole["variant"] == "adafocus_v1"
    assert len(whole["stage_seconds"]) == 4 and all(s > 0 for s in whole["stage_seconds"])
    history = json.loads((tmp_path / "whole" / "metrics.json").read_text())
    assert [record["stage"] for record in history] == [0, 1, 2, 3]
    assert "mean_reward" in history[2]
    # Stopped inside stage 1 (3 steps per stage: step 4 of the run), resumed: the same weights.
    with pytest.raises(TrainingStopped, match="max_steps=4"):
        train(v1_config(tiny_dataset, tmp_path / "resumed", max_steps=4))
    checkpoint = torch.load(tmp_path / "resumed" / "checkpoint.pt", weights_only=False)
    assert checkpoint["stage"] == 1 and checkpoint["step"] == 1
    checkpoint["train_seconds"] = 1000.0  # stage 1's time before the stop, as the checkpoint says
    torch.save(checkpoint, tmp_path / "resumed" / "checkpoint.pt")
    resumed = train(v1_config(tiny_dataset, tmp_path / "resumed"))
    assert 1000.0 < resumed["stage_seconds"][1] <= 1000.0 + resumed["seconds_this_session"]
    # Each of the four stage times and the total is rounded to 0.1 s: they may differ by 0.25.
    assert resumed["train_seconds"] == pytest.approx(sum(resumed["stage_seconds"]), abs=0.25)
    model_a, record = load_model(tmp_path / "whole" / "model.pt")
    model_b, _ = load_model(tmp_path / "resumed" / "model.pt")
    for (name, a), b in zip(model_a.state_dict().items(), model_b.state_dict().values(), strict=True):
        assert torch.equal(a, b), name
    assert resumed["test"]["per_step"] == whole["test"]["per_step"]
    assert model_a.config.policy == "grid" and model_a.config.classifier == "gru"
    assert record.operating_points[0]["names"] == ["full"]


def test_stages_train_only_their_own_parts(tiny_dataset: Path, tmp_path: Path):
    """Stage 2 (PPO) alone changes the policy and nothing else; stage 1 leaves the glance alone."""
    from training.adafocus.v1.trainer import AdaFocusV1Trainer

    trainer = AdaFocusV1Trainer(v1_config(tiny_dataset, tmp_path))
    before = {name: value.clone() for name, value in trainer.model.state_dict().items()}
    clips, target, _, valid, _ = next(iter(trainer.train_loader()))
    for stage, changed_prefix in ((2, "policy."), (1, None)):
        trainer._enter_stage(stage)
        trainer.train_step(clips, target, valid)
        after = trainer.model.state_dict()
        changed = {name for name in before if not torch.equal(before[name], after[name])}
        if changed_prefix:
            assert changed and all(name.startswith(changed_prefix) for name in changed), changed
        else:
            assert not any(name.startswith(("global_net.", "policy.")) for name in changed - set())
            assert any(name.startswith("classifier.") for name in changed)
        before = {name: value.clone() for name, value in after.items()}


def test_v1_refuses_a_v2_baseline_variant(tiny_dataset: Path, tmp_path: Path):
    with pytest.raises(ValueError, match="V2 baseline"):
        train(v1_config(tiny_dataset, tmp_path, variant="full_frame"))


# -- export and service -----------------------------------------------------------------------
def test_a_v1_model_exports_and_serves_through_the_same_pipeline(tiny_dataset: Path, tmp_path: Path):
    from fastapi.testclient import TestClient

    from pipeline.onnx_steps import OnnxPipeline
    from pipeline.repository import load_pipeline
    from service.app import create_app
    from service.settings import Settings
    from training.exporter.repository import export_run

    train(v1_config(tiny_dataset, tmp_path / "run", v1_stage_epochs=[1, 1, 1, 0]))
    repo = tmp_path / "repo"
    export_run(tmp_path / "run", repo)
    pipeline = load_pipeline(repo, "adafocus_v1")
    assert pipeline.manifest.method == "adafocus_v1" and pipeline.manifest.focus == "policy"
    # ONNX Runtime's step loop gives PyTorch's logits on real frames.
    model, _ = load_model(tmp_path / "run" / "model.pt")
    model.eval()
    from pipeline.frames.decode import read_clip
    from pipeline.frames.transform import FrameGeometry

    video = tiny_dataset / (tiny_dataset / "test.csv").read_text().split(",")[0]
    frames = read_clip(video, 4, FrameGeometry(32, 32)).frames
    with torch.no_grad():
        expected = model(torch.from_numpy(frames)[None]).step_logits[0, -1].numpy()
    result = OnnxPipeline(pipeline).run_clip(frames, None)
    assert np.abs(result.logits - expected).max() < 1e-4
    # The service serves it like any other pipeline.
    settings = Settings(model_repo=repo, providers=["CPUExecutionProvider"], decode_workers=1, threads=1)
    with TestClient(create_app(settings)) as client:
        params = {"exit": "off", "model": "adafocus_v1"}
        answer = client.post("/classify", params=params, files={"video": video.open("rb")})
        assert answer.status_code == 200, answer.text
        body = answer.json()
        assert body["model"]["name"] == "adafocus_v1" and body["exit"]["frames_processed"] == 4
        assert all(frame["box"] is not None for frame in body["frames"])


def test_frame_skipping_variant_trains_costs_less_for_skipped_frames_and_is_not_exported(
    tiny_dataset: Path, tmp_path: Path
):
    from training.exporter.repository import export_run

    summary = train(v1_config(tiny_dataset, tmp_path / "run", v1_stage_epochs=[0, 1, 1, 1], v1_skip_cost=0.05))
    model, _ = load_model(tmp_path / "run" / "model.pt")
    assert model.can_skip and model.policy.actor.out_features == 49 and model.policy.skip_head is not None
    # Each video's cost counts the focus only on the frames it did not skip.
    focus, total = summary["step_macs"]["focus"] / 1e9, summary["step_macs"]["total"] / 1e9
    rate = summary["test"]["focus_rate"]
    assert 0.0 <= rate <= 1.0
    assert summary["test"]["gmacs_per_video_all_frames"] == pytest.approx(4 * (total - focus * (1 - rate)))
    # A skipped frame's local features are zero: the classifier sees what the cost says.
    clip = torch.randn(2, 4, 3, 32, 32)
    with torch.no_grad():
        model.policy.skip_head.bias.fill_(100.0)  # always skip
        output = model.eval()(clip)
    assert output.skipped.all()
    with pytest.raises(ValueError, match="skips frames"):
        export_run(tmp_path / "run", tmp_path / "repo")
    # The skip probe reads the same run: per step, the head's probability with the model's own
    # confidence lies between those at confidence 0 and 1, in the order the head's weight says.
    from training.adafocus.v1.skip_probe import probe_skipping

    probe = probe_skipping(tmp_path / "run", clips=3)
    assert probe["clips"] == 3 and [s["step"] for s in probe["per_step"]] == [0, 1, 2, 3]
    assert probe["per_step"][0]["confidence_before"] == 0
    for step in probe["per_step"]:
        low, high = sorted((step["skip_probability_at_confidence_0"], step["skip_probability_at_confidence_1"]))
        assert low - 1e-4 <= step["skip_probability"] <= high + 1e-4
        if probe["confidence_weight"] > 0:
            assert step["skip_probability_at_confidence_1"] >= step["skip_probability_at_confidence_0"]
    # Its batch-norm figure starts from the run's own test top-1.
    from training.adafocus.v1.skip_probe import batchnorm_effect

    effect = batchnorm_effect(tmp_path / "run", train_clips=4)
    assert effect["test_top1"] == pytest.approx(summary["test"]["per_step"][-1]["top1"], abs=1e-3)
    assert 0.0 <= effect["test_top1_batchnorm_reestimated"] <= 1.0


def test_gaussian_policy_variant_trains_through_ppo(tiny_dataset: Path, tmp_path: Path):
    summary = train(v1_config(tiny_dataset, tmp_path, v1_policy="gaussian", v1_stage_epochs=[0, 1, 1, 0]))
    model, _ = load_model(tmp_path / "model.pt")
    assert isinstance(model.policy, GaussianPolicy) and summary["method"] == "adafocus_v1"
    history = json.loads((tmp_path / "metrics.json").read_text())
    assert [record["stage"] for record in history] == [1, 2] and np.isfinite(history[1]["mean_reward"])
