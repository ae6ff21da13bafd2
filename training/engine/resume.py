"""Whether a run may resume from the checkpoint in its folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

from training.engine.checkpoint import load_checkpoint

# Options that may change between a run and its resumption without changing its result.
RESUMABLE_CHANGES = frozenset(
    {"out", "workers", "device", "restart", "checkpoint_every", "max_steps", "progress", "frame_cache"}
)


def config_differences(
    saved: dict, current: dict, allowed: frozenset[str] = RESUMABLE_CHANGES, defaults: dict | None = None
) -> list[str]:
    """``key: old -> new`` for every option that differs and may not change on resume.

    With ``defaults``, an option the saved configuration lacks (it was added later) counts as
    unchanged while the current value is its default.
    """
    keys = (set(saved) | set(current)) - allowed
    defaults = defaults or {}
    return sorted(
        f"{k}: {saved.get(k)!r} -> {current.get(k)!r}" for k in keys if saved.get(k, defaults.get(k)) != current.get(k)
    )


def load_resumable_checkpoint(path: Path, expected_format: str, what: str, config: Any) -> dict | None:
    """The checkpoint at ``path`` if the run should resume from it (``None``: start fresh).

    Refuses (``ValueError``) a file of another format, and one written with options that may
    not change on resume (:func:`config_differences`).
    """
    if config.restart or not path.exists():
        return None
    checkpoint = load_checkpoint(path)
    if checkpoint.get("format") != expected_format:
        raise ValueError(f"{path} is not {what}")
    defaults = dataclasses.asdict(type(config)())
    differences = config_differences(checkpoint["config"], dataclasses.asdict(config), defaults=defaults)
    if differences:
        raise ValueError(
            f"{path} was written with other options ({'; '.join(differences)}); "
            "use the same options to resume, --restart to start over, or another --out"
        )
    return checkpoint
