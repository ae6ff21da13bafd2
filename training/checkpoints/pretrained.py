"""Start a training run from imported weights: ``--weights`` (image), ``--global-weights`` /
``--local-weights`` (AdaFocus).

The file is imported strictly (every tensor used or reported, :func:`~training.checkpoints.formats.import_file`),
then copied into the network being trained. Only the classifier head may differ: an ImageNet
head of 1000 classes does not fit a 10-class task (it is reported and the network's own head
stays freshly initialised), and a network without a head (AdaFocus's global and local CNNs)
reports the file's head as not loaded. Any other missing, extra or mis-shaped tensor means the
file is another architecture than the one configured: an error naming the keys.
"""

from __future__ import annotations

from pathlib import Path

import torch
from torch import nn

from .formats import import_file
from .reader import CheckpointError, _names

HEAD_PREFIX = "classifier."


def load_pretrained(
    module: nn.Module, path: str | Path, format_name: str = "auto", what: str = "--weights"
) -> list[str]:
    """Copy the weights of ``path`` into ``module`` (in place); returns the notes to log."""
    imported = import_file(path, format_name)
    theirs, ours = imported.model.state_dict(), module.state_dict()
    missing = [k for k in ours if k not in theirs]
    unexpected = [k for k in theirs if k not in ours]
    mismatched = [k for k in ours if k in theirs and theirs[k].shape != ours[k].shape]
    wrong = [k for k in missing + unexpected + mismatched if not k.startswith(HEAD_PREFIX)]
    if wrong:
        raise CheckpointError(
            f"{what} {path} holds a {imported.model_name} {imported.model_kwargs} that does not fit the network "
            f"being trained ({_misfit(wrong, missing, unexpected, mismatched, theirs, ours)})"
        )
    with torch.no_grad():
        module.load_state_dict({k: v for k, v in theirs.items() if k in ours and k not in mismatched}, strict=False)
    notes = [f"{what}: {note}" for note in imported.notes]
    new_head = [k for k in missing + mismatched if k.startswith(HEAD_PREFIX)]
    if new_head:
        notes.append(
            f"{what}: missing (left newly initialised): {', '.join(new_head)}: the file's "
            f"{imported.num_classes}-class head does not fit this task"
        )
    if unexpected:
        notes.append(f"{what}: unexpected (not loaded): {', '.join(unexpected)}: this network has no classifier head")
    loaded = len(ours) - len(new_head)
    notes.append(f"{what}: loaded {loaded} of {len(ours)} tensors from {path} ({imported.model_name})")
    return notes


def _misfit(wrong, missing, unexpected, mismatched, theirs, ours) -> str:
    """Which keys keep the file out of the network, by kind."""
    parts = []
    if absent := [k for k in missing if k in wrong]:
        parts.append(f"the network's, not in the file: {_names(absent)}")
    if extra := [k for k in unexpected if k in wrong]:
        parts.append(f"the file's, not in the network: {_names(extra)}")
    if shapes := [f"{k} {list(theirs[k].shape)} vs {list(ours[k].shape)}" for k in mismatched if k in wrong]:
        parts.append(f"other shapes (file vs network): {_names(shapes)}")
    return "; ".join(parts)
