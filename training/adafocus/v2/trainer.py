"""One-stage AdaFocusV2 training: the part-wise optimiser and the two-branch step.

A step runs the clip batch through two branches that share the glance: patches where the
policy looks, and patches at random places (input diversity). The loss sums, per branch,
the classifier's loss after every step and the per-frame auxiliary losses of both
networks, and averages the branches; the policy reads the global features through a
stop-gradient. Each of these three fixes has a switch (``--no-random-patch-branch``,
``--no-auxiliary-losses``, ``--no-stop-gradient``) for ablations.

Data, evaluation, DDP and checkpoints are :class:`~training.adafocus.trainer.AdaFocusTrainerBase`'s.
The run folder holds ``checkpoint.pt`` (rewritten atomically; rerunning the same command
resumes from it), ``config.json``, ``metrics.json`` (one record per epoch) and, at the end
(``finish``), ``model.pt``, ``summary.json`` and ``report.md``.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.manifest import Focus
from training.adafocus.config import TrainConfig
from training.adafocus.losses import adafocus_loss
from training.adafocus.model import AdaFocusV2, ClipOutput, Exploration
from training.adafocus.trainer import AdaFocusTrainerBase
from training.engine.commands import StopRequest
from training.engine.distributed import DistContext
from training.engine.optim import build_optimizer, parameter_groups


def part_optimizer(model: AdaFocusV2, config: TrainConfig) -> torch.optim.Optimizer:
    """Parameter groups per part, each with its learning-rate multiplier, as the authors group
    them (``get_optim_policies``): the policy (``lr_policy``), the global network with its
    auxiliary head (``lr_global``), the local network with its auxiliary head (``lr_local``),
    and the classifier (``lr_classifier``). Weight decay skips BN and biases unless
    ``decay_all_parameters``; SGD is Nesterov unless ``nesterov`` is off.
    """
    parts = [
        ((model.policy,), config.lr_policy),
        ((model.global_net, model.global_aux), config.lr_global),
        ((model.local_net, model.local_aux), config.lr_local),
    ]
    groups: list[dict] = []
    claimed: set[int] = set()
    for modules, scale in parts:
        present = [module for module in modules if module is not None]
        if present:
            groups += parameter_groups(nn.ModuleList(present), config.weight_decay, scale, config.decay_all_parameters)
            claimed |= {id(p) for module in present for p in module.parameters()}
    rest = nn.ParameterList([p for p in model.parameters() if id(p) not in claimed])
    groups += parameter_groups(rest, config.weight_decay, config.lr_classifier, config.decay_all_parameters)
    return build_optimizer(groups, config.optimizer, config.lr, momentum=config.momentum, nesterov=config.nesterov)


class AdaFocusTrainer(AdaFocusTrainerBase):
    """One-stage AdaFocusV2 training (and the V2 baselines, in the same harness)."""

    def __init__(self, config: TrainConfig, dist: DistContext | None = None, stop: StopRequest | None = None) -> None:
        super().__init__(config, dist, stop)
        self.optimizer = part_optimizer(self.model, config)

    def _branches(self) -> tuple[Focus, ...]:
        """Where the local network looks in a training step: the policy's patches and, for
        input diversity, random ones (the glance is shared); a baseline's own focus otherwise."""
        focus = self.model.focus_mode
        if focus == "policy" and self.config.random_patch_branch:
            return ("policy", "random")
        return (focus,)

    def _oracle_boxes(self, boxes: torch.Tensor | None) -> torch.Tensor | None:
        """The batch's target boxes for the oracle baseline (an error where the data has none)."""
        if self.model.focus_mode != "oracle":
            return None
        if boxes is None or bool(torch.isnan(boxes).all()):
            raise ValueError(
                "--variant oracle_patch needs target boxes beside the videos (<clip>.boxes.json: "
                "python -m training.data.synthetic --version 2 writes them)"
            )
        return boxes.to(self.device)

    def _exploration(self) -> Exploration | None:
        """This step's additions to the policy branch; the noise decays linearly to 0 by the last step."""
        config = self.config
        if config.policy_noise <= 0 and config.crop_gradient_blur <= 0:
            return None
        remaining = 1.0 - self.state.step / max(self.total_steps, 1)
        return Exploration(noise=config.policy_noise * remaining, gradient_blur=config.crop_gradient_blur)

    def train_step(
        self, clips: torch.Tensor, target: torch.Tensor, valid: torch.Tensor, boxes: torch.Tensor | None = None
    ) -> float | None:
        """One optimiser step on the readable videos of the batch; ``None`` if there were none."""
        self.model.train()
        any_valid = bool(valid.any())
        if any_valid:
            clips, target = clips[valid], target[valid]
            boxes = boxes[valid] if boxes is not None else None
        # Under DDP every process must take part in each step, even with nothing readable:
        # it then runs the batch with a zero loss.
        elif not self.dist.enabled:
            return None
        clips = clips.to(self.device, non_blocking=True)
        target = target.to(self.device, non_blocking=True)
        branches = self._branches()
        with self._autocast():
            outputs = self.train_model(
                clips,
                branches,
                self.config.stop_gradient,
                self.generator,
                target_boxes=self._oracle_boxes(boxes),
                exploration=self._exploration(),
            )
        outputs = (outputs,) if isinstance(outputs, ClipOutput) else outputs  # (a NamedTuple is a tuple too)
        loss, _ = adafocus_loss(
            outputs, target, self.multi_label, self.config.auxiliary_losses, self.config.label_smoothing
        )
        if not any_valid:
            loss = loss * 0.0
        self.optimizer.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer.step()
        return float(loss.detach()) if any_valid else None
