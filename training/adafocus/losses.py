"""AdaFocusV2's one-stage training loss.

Per branch (policy patches, random patches): the classifier's loss after every step, plus
per-frame losses of the auxiliary heads on the global and local features (the video's
label repeated over frames). The final loss averages the branches.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from .model import ClipOutput


def classification_loss(logits: Tensor, target: Tensor, multi_label: bool, label_smoothing: float = 0.0) -> Tensor:
    """Mean loss of ``(N, K)`` logits: softmax cross-entropy, or per-class sigmoid for multi-label."""
    if multi_label:
        return F.binary_cross_entropy_with_logits(logits.float(), target.float())
    return F.cross_entropy(logits.float(), target, label_smoothing=label_smoothing)


def _over_steps(logits: Tensor, target: Tensor, multi_label: bool, label_smoothing: float) -> Tensor:
    """Loss of ``(B, T, K)`` logits against one target per video, averaged over steps."""
    steps = logits.shape[1]
    repeated = target.repeat_interleave(steps, dim=0)
    return classification_loss(logits.flatten(0, 1), repeated, multi_label, label_smoothing)


def branch_losses(
    output: ClipOutput, target: Tensor, multi_label: bool, auxiliary: bool = True, label_smoothing: float = 0.0
) -> dict[str, Tensor]:
    """The loss terms of one branch: ``classifier`` and, with ``auxiliary``, ``global_aux`` / ``local_aux``."""
    terms = {"classifier": _over_steps(output.step_logits, target, multi_label, label_smoothing)}
    if auxiliary:
        for name, logits in (("global_aux", output.global_logits), ("local_aux", output.local_logits)):
            if logits is not None:
                terms[name] = _over_steps(logits, target, multi_label, label_smoothing)
    return terms


def adafocus_loss(
    outputs: Sequence[ClipOutput],
    target: Tensor,
    multi_label: bool,
    auxiliary: bool = True,
    label_smoothing: float = 0.0,
) -> tuple[Tensor, dict[str, float]]:
    """Total loss (mean over branches of the sum of each branch's terms) and its terms for logging."""
    totals, logged = [], {}
    for index, output in enumerate(outputs):
        terms = branch_losses(output, target, multi_label, auxiliary, label_smoothing)
        totals.append(torch.stack(list(terms.values())).sum())
        logged.update({f"branch{index}/{name}": float(value.detach()) for name, value in terms.items()})
    return torch.stack(totals).mean(), logged
