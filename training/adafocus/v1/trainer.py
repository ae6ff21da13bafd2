"""AdaFocus (V1) training: four stages, each resumable, in one run folder.

0. Full frames: the global network (on the glance view) and the local network (on the whole
   frame) learn the classes separately, each through its own linear head.
1. Random patches: the local network and the recurrent classifier learn to classify from a
   random patch per frame; the global network is frozen.
2. Reinforcement learning: everything but the policy is frozen. The policy (a recurrent
   actor-critic over a grid of patch corners, or a Gaussian) picks a patch per frame; its
   reward is the classifier's probability of the true class with the chosen patch minus that
   with a random patch, from the same classifier state. PPO (:mod:`.ppo`) updates it.
3. Fine-tuning: the classifier and the local network learn on the policy's most likely
   patches (the policy frozen).

The epochs of each stage are ``--v1-stage-epochs`` (0 skips a stage). The checkpoint records
the stage, so rerunning the command resumes inside the stage where it stopped, and the
wall-clock time of every stage is kept for the V1-vs-V2 comparison. The end of the run
(calibration, test, ``model.pt``) is the same as V2's.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from training.adafocus.config import TrainConfig
from training.adafocus.crop import random_locations
from training.adafocus.losses import branch_losses, classification_loss
from training.adafocus.model import prediction_confidence
from training.adafocus.trainer import AdaFocusTrainerBase
from training.engine.commands import StopRequest, log
from training.engine.distributed import DistContext
from training.engine.optim import build_optimizer, parameter_groups
from training.engine.state import TrainState

from .ppo import PPOSettings, discounted_returns, normalise_advantages, ppo_loss

STAGES = ("full frames", "random patches", "policy (PPO)", "fine-tuning")
RANDOM_SKIP_RATE = 0.25  # stage 1 of a frame-skipping model: share of frames without a patch


def true_class_probability(logits: Tensor, target: Tensor, multi_label: bool) -> Tensor:
    """Per video: the probability of the true class (multi-label: mean over its true classes)."""
    if multi_label:
        target = target.float()
        return (torch.sigmoid(logits.float()) * target).sum(-1) / target.sum(-1).clamp_min(1)
    return F.softmax(logits.float(), dim=-1).gather(1, target[:, None]).squeeze(1)


class AdaFocusV1Trainer(AdaFocusTrainerBase):
    """The staged V1 schedule: one run of the engine's loop per stage, each with its own
    frozen parts, optimiser, schedule and :class:`TrainState`, in one checkpoint."""

    def __init__(self, config: TrainConfig, dist: DistContext | None = None, stop: StopRequest | None = None) -> None:
        if dist is not None and dist.enabled:
            raise ValueError("--method adafocus_v1 trains in one process; run it without torchrun")
        super().__init__(config, dist, stop)
        if len(config.v1_stage_epochs) != len(STAGES) or min(config.v1_stage_epochs) < 0:
            raise ValueError(
                f"--v1-stage-epochs needs {len(STAGES)} non-negative numbers, got {config.v1_stage_epochs}"
            )
        self.ppo = PPOSettings(
            config.ppo_lr, config.ppo_gamma, config.ppo_clip, config.ppo_value_coef, config.ppo_entropy_coef
        )
        self.stage = 0
        self.stage_seconds = [0.0] * len(STAGES)  # wall-clock, over all sessions of the run
        self.stage_cpu_seconds = [0.0] * len(STAGES)  # CPU time (this process and its data workers)
        self.finished_history: list[dict[str, Any]] = []
        self.rewards: list[float] = []
        self.skip_shares: list[float] = []  # frame skipping: share of frames the rollouts skipped
        self._enter_stage(0)

    # -- stages -----------------------------------------------------------------------------
    def _trainable(self, stage: int) -> list[nn.Module]:
        model = self.model
        return [
            [model.global_net, model.global_aux, model.local_net, model.local_aux],
            [model.local_net, model.classifier],
            [model.policy],
            [model.local_net, model.classifier],
        ][stage]

    def _enter_stage(self, stage: int) -> None:
        """Freeze all but the stage's modules; a fresh optimiser and schedule for the stage."""
        self.stage = stage
        if stage >= len(STAGES):
            return
        trainable = self._trainable(stage)
        for parameter in self.model.parameters():
            parameter.requires_grad_(False)
        for module in trainable:
            for parameter in module.parameters():
                parameter.requires_grad_(True)
        config = self.config
        if stage == 2:
            # PPO: Adam on the policy, no weight decay, no warm-up (below).
            self.optimizer = build_optimizer(self.model.policy.parameters(), "adam", self.ppo.lr)
            self.base_lr = self.ppo.lr
        else:
            groups = [g for module in trainable for g in parameter_groups(module, config.weight_decay, 1.0)]
            self.optimizer = build_optimizer(groups, config.optimizer, config.lr, momentum=config.momentum)
            self.base_lr = config.lr
        self.total_steps = self.config.v1_stage_epochs[stage] * self.steps_per_epoch
        self.warmup_steps = 0 if stage == 2 else int(self.config.warmup_epochs * self.steps_per_epoch)

    def fit(self) -> None:
        """Train every stage left, each through the engine's loop (``TrainingLoop.fit``).

        The loop runs one schedule; a V1 run is four, each with its own frozen parts,
        optimiser, schedule and :class:`TrainState`, so this wraps the loop rather than
        replacing it: between two stages it files the stage's time and records and saves
        the checkpoint of the next stage's start.
        """
        while self.stage < len(STAGES):
            if self.state.step < self.total_steps:
                log(f"stage {self.stage} ({STAGES[self.stage]}): {self.config.v1_stage_epochs[self.stage]} epoch(s)")
                super().fit()
            # Each stage has its own TrainState, whose clock counts that stage over all sessions.
            self.stage_seconds[self.stage] = self.state.train_seconds
            self.stage_cpu_seconds[self.stage] = self.state.train_cpu_seconds
            self.finished_history += self.state.history
            self.state = TrainState(bad_files=self.state.bad_files)
            self._enter_stage(self.stage + 1)
            self.save_checkpoint()
        self.state.step = sum(self.config.v1_stage_epochs) * self.steps_per_epoch  # for the summary

    # -- checkpoints ------------------------------------------------------------------------
    def checkpoint_extras(self) -> dict[str, Any]:
        return {
            **super().checkpoint_extras(),
            "stage": self.stage,
            "stage_seconds": self.stage_seconds,
            "stage_cpu_seconds": self.stage_cpu_seconds,
            "finished_history": self.finished_history,
        }

    def restore(self, checkpoint: dict[str, Any]) -> None:
        if "stage" not in checkpoint:
            raise ValueError("the checkpoint is not from an AdaFocus V1 run; use --restart or another --out")
        self._enter_stage(checkpoint["stage"])  # the optimiser of that stage, before loading its state
        self.stage_seconds = list(checkpoint["stage_seconds"])
        self.stage_cpu_seconds = list(checkpoint.get("stage_cpu_seconds", [0.0] * len(STAGES)))
        self.finished_history = list(checkpoint["finished_history"])
        if self.stage >= len(STAGES):
            self.model.load_state_dict(checkpoint["model"])
            self.state = TrainState.from_checkpoint(checkpoint)
            return
        super().restore(checkpoint)

    def record_extras(self) -> dict[str, Any]:
        extras: dict[str, Any] = {"stage": self.stage}
        if self.stage == 2 and self.rewards:
            extras["mean_reward"] = sum(self.rewards) / len(self.rewards)
            self.rewards = []
        if self.stage == 2 and self.skip_shares:
            extras["skip_share"] = sum(self.skip_shares) / len(self.skip_shares)
            self.skip_shares = []
        return extras

    def metrics_history(self) -> list[dict[str, Any]]:
        return self.finished_history + self.state.history

    def steps_in_run(self) -> int:
        """Steps over all stages so far (``max_steps`` counts the whole run)."""
        return sum(self.config.v1_stage_epochs[: self.stage]) * self.steps_per_epoch + self.state.step

    # -- one optimiser step -----------------------------------------------------------------
    def _set_modes(self) -> None:
        """Frozen modules in eval mode (their batch-norm statistics stay as trained)."""
        self.model.eval()
        for module in self._trainable(self.stage):
            module.train()

    def train_step(self, clips: Tensor, target: Tensor, valid: Tensor, boxes: Tensor | None = None) -> float | None:
        if not bool(valid.any()):
            return None
        clips, target = clips[valid].to(self.device), target[valid].to(self.device)
        self._set_modes()
        if self.stage == 2:
            return self._ppo_step(clips, target)
        with self._autocast():
            loss = self._stage_loss(clips, target)
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach())

    def _stage_loss(self, clips: Tensor, target: Tensor) -> Tensor:
        model, multi_label, smoothing = self.model, self.multi_label, self.config.label_smoothing
        if self.stage == 0:
            frames = clips.flatten(0, 1)
            repeated = target.repeat_interleave(clips.shape[1], dim=0)
            _, global_pooled = model.glance(frames)
            local_pooled = model.local_net(frames).pooled
            return classification_loss(model.global_aux(global_pooled), repeated, multi_label, smoothing) + (
                classification_loss(model.local_aux(local_pooled), repeated, multi_label, smoothing)
            )
        focus = "random" if self.stage == 1 else "policy"
        # A frame-skipping model's classifier learns, in stage 1, to do without some patches.
        skip_rate = RANDOM_SKIP_RATE if model.can_skip and self.stage == 1 else 0.0
        output = model(clips, focus, stop_gradient=True, generator=self.generator, random_skip_rate=skip_rate)
        return branch_losses(output, target, multi_label, auxiliary=False, label_smoothing=smoothing)["classifier"]

    def _ppo_step(self, clips: Tensor, target: Tensor) -> float:
        model, policy = self.model, self.model.policy
        batch, steps = clips.shape[:2]
        clips = clips[:, model.order[:steps]]
        with torch.no_grad():
            rollout = self._rollout(clips, target)
        returns = discounted_returns(rollout["rewards"], self.ppo.gamma)
        advantages = normalise_advantages(returns - rollout["values"])
        for _ in range(self.ppo.epochs):
            state = policy.initial_state(batch, self.device)
            log_probs, values, entropies = [], [], []
            for t in range(steps):
                step = policy.evaluate(
                    rollout["features"][:, t], state, rollout["actions"][t], rollout["confidences"][t]
                )
                state = step.state
                log_probs.append(step.log_prob)
                values.append(step.value)
                entropies.append(step.entropy)
            loss, _ = ppo_loss(
                torch.stack(log_probs, 1),
                rollout["log_probs"],
                advantages,
                torch.stack(values, 1),
                returns,
                torch.stack(entropies, 1),
                self.ppo,
            )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self.optimizer.step()
        self.rewards.append(float(rollout["rewards"].mean()))
        if model.can_skip:
            skipped = torch.stack([policy.skips(action) for action in rollout["actions"]])
            self.skip_shares.append(float(skipped.float().mean()))
        return float(loss.detach())

    def _rollout(self, clips: Tensor, target: Tensor) -> dict[str, Any]:
        """Act on every frame; reward = p(true class | chosen patch) - p(true class | random patch),
        less ``v1_skip_cost`` for every focused frame when the policy may skip. A skipping policy
        reads the classifier's confidence after the previous frame (kept for PPO's second pass)."""
        model, policy = self.model, self.model.policy
        batch, steps = clips.shape[:2]
        features, global_pooled = model.glance(clips.flatten(0, 1))
        features = features.unflatten(0, (batch, steps))
        global_pooled = global_pooled.unflatten(0, (batch, steps))
        policy_state = policy.initial_state(batch, self.device)
        classifier_state = model.classifier.initial_state(batch, self.device)
        actions, log_probs, values, rewards, confidences = [], [], [], [], []
        confidence = torch.zeros(batch, device=self.device) if model.can_skip else None
        for t in range(steps):
            step = policy.act(features[:, t], policy_state, self.generator, confidence=confidence)
            confidences.append(confidence)
            policy_state = step.state
            chosen = model.focus(clips[:, t], step.location)
            skipped = policy.skips(step.action) if model.can_skip else None
            if skipped is not None:
                chosen = chosen * (~skipped)[:, None]
            random = model.focus(clips[:, t], random_locations(batch, self.device, self.generator))
            logits, next_state = model.classifier(model.fuse(global_pooled[:, t], chosen), classifier_state, t)
            baseline, _ = model.classifier(model.fuse(global_pooled[:, t], random), classifier_state, t)
            reward = true_class_probability(logits, target, self.multi_label) - true_class_probability(
                baseline, target, self.multi_label
            )
            if skipped is not None:
                reward = reward - self.config.v1_skip_cost * (~skipped).float()
            rewards.append(reward)
            classifier_state = next_state
            if model.can_skip:
                confidence = prediction_confidence(logits)
            actions.append(step.action)
            log_probs.append(step.log_prob)
            values.append(step.value)
        return {
            "features": features,
            "actions": actions,
            "log_probs": torch.stack(log_probs, 1),
            "values": torch.stack(values, 1),
            "rewards": torch.stack(rewards, 1),
            "confidences": confidences,
        }
