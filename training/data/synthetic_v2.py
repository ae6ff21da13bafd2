"""Synthetic benchmark v2: a benchmark where *where* the patch goes decides the class.

    python -m training.data.synthetic --version 2 --out data/synthetic-v2 --seed 0

Same clips as v1 (32 frames, 16 fps, H.264, ten classes, each class the periodic 4x4 texture of
a 30-pixel tile framed in yellow, see ``training.data.synthetic``), with three changes that v1
lacked (there a fixed centre patch reached 1.000 top-1, docs/results/synthetic.md):

* **The target keeps to the borders.** Its top-left corner travels along a loop around the
  frame, a square inset 0-10 pixels from the edges that wobbles, at 0.25-0.6 turns per clip in a
  random direction from a random start. In three clips out of ten it dips once towards the
  centre (up to 36 pixels inwards, for about a fifth of the clip), so "near a border" is a
  tendency, not a rule a policy could hard-code. Over the dataset the path covers the whole
  frame's perimeter; the centre patch holds no part of the target in most frames.
* **Sizes: frame 128, glance 32, patch 40** (the recommended ``--frame-size 128 --glance-size
  32 --patch-size 40``). The tile is 30 pixels, so a 40-pixel patch holds all of it only within
  5 pixels of the right place, and at least half of it only when placed on it. The glance is an
  exact 4x average (128 / 32): every 4x4 block of a class texture has 8 of 16 pixels white, so
  the glance sees the same grey for every class (the class is gone exactly, not blurred) but
  still sees the yellow frame, i.e. it can find the target and not read it.
* **Distractors mislead.** Three tiles of the same size carry the periodic textures of three
  *other* classes (distinct, drawn per clip), framed in blue, pink or green, and wander over the
  whole frame, centre included. A patch on a distractor reads a wrong class with full
  confidence; only the frame's colour says which tile is the target.

Each clip's draws come from the generator ``training.data.synthetic`` seeds by (seed, split,
index), as v1's. ``render_clip_v2`` returns the frames, the target's box per frame and the
distractors' boxes and classes (the last two for tests and oracles; only the target's boxes are
written next to the clip).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from .synthetic import (
    BORDER,
    DISTRACTOR_COLOURS,
    MOTIF,
    NUM_CLASSES,
    REPEATS,
    TARGET_COLOUR,
    SyntheticConfig,
    _background,
    _tile,
    boxes_from_corners,
    class_texture,
)

TILE = MOTIF * REPEATS + 2 * BORDER  # 30 pixels, border included
FRAME_SIZE = 128
GLANCE_SIZE = 32
PATCH_SIZE = 40
MAX_MARGIN = 10  # the loop's inset from the frame's edges, at most
DIP_PROBABILITY = 0.3  # clips whose target dips once towards the centre
MAX_DIP = 36  # pixels inwards, at most
TURNS = (0.25, 0.6)  # loops around the frame per clip


@dataclass(frozen=True)
class RenderedClip:
    label: int  # the target's class
    video: np.ndarray  # (frames, size, size, 3) uint8
    boxes: np.ndarray  # (frames, 4) int64 target boxes [x0, y0, x1, y1], x1/y1 exclusive
    distractor_boxes: np.ndarray  # (distractors, frames, 4), drawn in this order, under the target
    distractor_labels: np.ndarray  # (distractors,) the class each distractor's texture shows


@cache
def _class_tile(label: int, colour: tuple[int, int, int]) -> np.ndarray:
    """A tile of class ``label``'s texture framed in ``colour``, built once (deriving the motifs costs ~10 ms)."""
    tile = _tile(class_texture(label), colour)
    tile.flags.writeable = False
    return tile


def recommended_sizes_v2(config: SyntheticConfig) -> dict[str, int]:
    """The model's frame, glance and patch sides for v2 (scaled from 128 / 32 / 40 if the frame is not 128)."""
    size = config.size
    return {"frame_size": size, "glance_size": size // 4, "patch_size": round(PATCH_SIZE * size / FRAME_SIZE)}


def _square_loop(position: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(y, x) in [0, 1] of a point ``position`` (turns, any real) along a unit square's perimeter, clockwise."""
    u = (position % 1.0) * 4
    edge, f = np.floor(u).astype(np.int64), u - np.floor(u)
    x = np.choose(edge, [f, np.ones_like(f), 1 - f, np.zeros_like(f)])
    y = np.choose(edge, [np.zeros_like(f), f, np.ones_like(f), 1 - f])
    return y, x


def target_path(rng: np.random.Generator, frames: int, span: int) -> np.ndarray:
    """``(frames, 2)`` integer (y, x) top-left corners in ``[0, span]``: a loop near the borders (module docstring)."""
    t = np.linspace(0, 1, frames)
    turns = rng.uniform(*TURNS) * rng.choice((-1, 1))
    position = rng.uniform() + turns * t
    # The inset wobbles smoothly between 0 and a per-clip maximum ...
    margin = rng.uniform(0, MAX_MARGIN) * (0.5 + 0.5 * np.sin(2 * np.pi * (rng.uniform(0.5, 1.5) * t + rng.uniform())))
    dip, when = rng.uniform(), rng.uniform(0.1, 0.9)
    if dip < DIP_PROBABILITY:  # ... and now and then bends inwards, then back
        margin = margin + rng.uniform(10, MAX_DIP) * np.exp(-0.5 * ((t - when) / 0.08) ** 2)
    margin = np.minimum(margin, span / 2)
    y, x = _square_loop(position)
    side = span - 2 * margin
    corners = np.stack([margin + y * side, margin + x * side], axis=1)
    return np.clip(np.round(corners), 0, span).astype(np.int64)


def distractor_path(rng: np.random.Generator, frames: int, span: int) -> np.ndarray:
    """``(frames, 2)`` (y, x) corners of a smooth Lissajous arc anywhere in the frame, centre included."""
    t = np.linspace(0, 1, frames)
    centre = rng.uniform(0.2, 0.8, 2)
    amplitude = rng.uniform(0.2, 0.5, 2)
    speed = rng.uniform(0.4, 1.2, 2)
    phase = rng.uniform(0, 2 * np.pi, 2)
    path = centre + amplitude * np.sin(2 * np.pi * speed * t[:, None] + phase)
    return np.clip(np.round(path * span), 0, span).astype(np.int64)


def render_clip_v2(config: SyntheticConfig, label: int, rng: np.random.Generator) -> RenderedClip:
    """One v2 clip of class ``label``: frames, target boxes, distractor boxes and classes."""
    if config.size < 2 * TILE:
        raise ValueError(f"v2 clips need frames of at least {2 * TILE} pixels, not {config.size}")
    if not 0 <= config.distractors < NUM_CLASSES:
        raise ValueError(f"v2 has room for 0-{NUM_CLASSES - 1} distractors (other classes), not {config.distractors}")
    others = np.array([k for k in range(NUM_CLASSES) if k != label])
    distractor_labels = rng.choice(others, config.distractors, replace=False)
    span = config.size - TILE
    target_corners = target_path(rng, config.frames, span)
    distractor_corners = [distractor_path(rng, config.frames, span) for _ in distractor_labels]
    background = _background(rng, config.size)
    drift = rng.integers(-1, 2, 2)
    # Distractors first (each over the previous ones), the target last, on top.
    tiles = [
        (_class_tile(int(k), DISTRACTOR_COLOURS[i % len(DISTRACTOR_COLOURS)]), corners)
        for i, (k, corners) in enumerate(zip(distractor_labels, distractor_corners))
    ]
    tiles.append((_class_tile(label, TARGET_COLOUR), target_corners))
    video = np.empty((config.frames, config.size, config.size, 3), dtype=np.uint8)
    for f in range(config.frames):
        frame = np.roll(background, shift=tuple(drift * f), axis=(0, 1)).astype(np.uint8)
        for tile, corners in tiles:
            y, x = corners[f]
            frame[y : y + TILE, x : x + TILE] = tile
        video[f] = frame
    distractor_boxes = np.stack([boxes_from_corners(c, TILE) for c in distractor_corners]).reshape(-1, config.frames, 4)
    return RenderedClip(label, video, boxes_from_corners(target_corners, TILE), distractor_boxes, distractor_labels)


def held_share(boxes: np.ndarray, origins: np.ndarray, patch: int) -> np.ndarray:
    """The share of each box's area inside a ``patch``-pixel square at ``origins`` (``(..., 2)`` (x, y)).

    ``boxes`` is ``(..., 4)`` ``[x0, y0, x1, y1]`` (x1, y1 exclusive), broadcast against ``origins``.
    """
    boxes, origins = np.asarray(boxes, dtype=np.float64), np.asarray(origins, dtype=np.float64)
    width = np.clip(
        np.minimum(boxes[..., 2], origins[..., 0] + patch) - np.maximum(boxes[..., 0], origins[..., 0]), 0, None
    )
    height = np.clip(
        np.minimum(boxes[..., 3], origins[..., 1] + patch) - np.maximum(boxes[..., 1], origins[..., 1]), 0, None
    )
    area = (boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])
    return width * height / area


def oracle_origins(boxes: np.ndarray, patch: int, size: int) -> np.ndarray:
    """``(..., 2)`` integer (x, y) origins of a ``patch``-pixel square centred on each box, kept inside the frame."""
    boxes = np.asarray(boxes)
    centre = np.stack([boxes[..., 0] + boxes[..., 2], boxes[..., 1] + boxes[..., 3]], axis=-1) / 2
    return np.clip(np.round(centre - patch / 2), 0, size - patch).astype(np.int64)


def placement_statistics(
    clips: int = 100, seed: int = 0, patch: int = PATCH_SIZE, config: SyntheticConfig | None = None
) -> dict[str, float]:
    """Where v2's target is, measured on ``clips`` rendered test-split clips (all their frames).

    ``away_from_centre``: frames whose box does not overlap the centre patch; ``centre_half`` /
    ``random_half`` / ``oracle_full``: frames where the centre patch / a uniformly random patch
    holds at least half of the target's area / a patch centred on the box holds all of it.
    """
    config = config or SyntheticConfig(seed=seed, version=2)
    boxes = np.stack([clip.boxes for clip in render_test_split(config, clips)])
    return box_statistics(boxes, patch, config.size, config.seed)


def render_test_split(config: SyntheticConfig, clips: int) -> list[RenderedClip]:
    """The first ``clips`` clips of the test split, as ``generate`` would draw them."""
    rendered = []
    for index in range(clips):
        rng = np.random.default_rng((config.seed, 2, index))  # the test split's code is 2
        rendered.append(render_clip_v2(config, int(rng.integers(NUM_CLASSES)), rng))
    return rendered


def box_statistics(boxes: np.ndarray, patch: int, size: int, seed: int = 0) -> dict[str, float]:
    """``placement_statistics`` of given ``(clips, frames, 4)`` target boxes; random patches drawn from ``seed``."""
    centre = np.full(boxes.shape[:-1] + (2,), (size - patch) // 2)
    uniform = np.random.default_rng((seed, 99)).integers(0, size - patch + 1, boxes.shape[:-1] + (2,))
    return {
        "frames": float(boxes.shape[0] * boxes.shape[1]),
        "away_from_centre": float((held_share(boxes, centre, patch) == 0).mean()),
        "centre_half": float((held_share(boxes, centre, patch) >= 0.5).mean()),
        "random_half": float((held_share(boxes, uniform, patch) >= 0.5).mean()),
        "oracle_full": float((held_share(boxes, oracle_origins(boxes, patch, size), patch) == 1).mean()),
    }
