"""Benchmark v2's "ImageNet": images of single tiles, labelled by the texture and frame colour they show.

    python -m training.data.synthetic_tiles --out data/synthetic-v2-tiles --seed 0
    adafocus-train-image --data data/synthetic-v2-tiles --model resnet18 --model-kwargs '{"width": 24}' \\
        --input-size 40 --crop-scale-min 1.0 --eval-crop 1.0 --no-hflip --out runs/focus_v2/tiles
    python training/train.py --config training/experiments/configs/focus_v2.json \\
        --local-weights runs/focus_v2/tiles/model_converted.pt ...

AdaFocusV2 trains in one stage from backbones that already see objects (ImageNet weights,
docs/adafocus.md "Why the policy stayed at the centre"). On benchmark v2 a local network trained
from scratch by random or centre patches learns nothing in the budget, so the policy's crop gradient
carries nothing either. This set gives the local network what ImageNet gives the authors': each
image is a patch-sized (40 px) view of v2's background with one tile of a class texture, framed
in any of the four frame colours (the target's yellow and the distractors' blue, pink, green) and
placed anywhere its area is at least half inside. The label is the texture *and* the frame's
colour (40 classes, ``pattern_3-blue``): a network trained on textures alone learns to ignore the
colour, and the video classifier then cannot tell the target's patch from a distractor's (the
colour is all that tells them apart). Nothing in the set says which colour marks a clip's target:
that is left to the video training, as ImageNet does not say which object a video is about.
With ``--downsample 4`` each image is written block-averaged to 10 px, the tiles as v2's glance
sees them (its exact 4x average pool): the textures become grey, the frame colours survive, and a
global network trained on that set (``make focus-v2-glance``) starts with maps that respond where
coloured tiles are, as an ImageNet glance's respond where objects are.
Written as PNG (the textures are pixel-exact), ``out/{train,val}/<class>/*.png``.
Deterministic given the seed; rewritten only when the options change.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
from PIL import Image

from .synthetic import DISTRACTOR_COLOURS, NUM_CLASSES, TARGET_COLOUR, _background
from .synthetic_v2 import PATCH_SIZE, TILE, _class_tile

FRAME_COLOURS = {
    "yellow": TARGET_COLOUR,
    "blue": DISTRACTOR_COLOURS[0],
    "pink": DISTRACTOR_COLOURS[1],
    "green": DISTRACTOR_COLOURS[2],
}
# (texture, colour) per class, named as data/synthetic-v2/classes.txt's textures plus the colour.
CLASSES = tuple((k, colour) for k in range(NUM_CLASSES) for colour in FRAME_COLOURS)
CLASS_NAMES = tuple(f"pattern_{k}-{colour}" for k, colour in CLASSES)


def render_tile_image(texture: int, colour: str, rng: np.random.Generator, size: int = PATCH_SIZE) -> np.ndarray:
    """A ``(size, size, 3)`` uint8 image: background and one tile (``texture``, framed in ``colour``), at
    least half inside."""
    image = _background(rng, size).astype(np.uint8)
    tile = _class_tile(texture, FRAME_COLOURS[colour])
    # Offsets where at least half of the tile's rows times columns stay inside the image.
    while True:
        y, x = rng.integers(-TILE // 2, size - TILE // 2 + 1, 2)
        inside_y = min(y + TILE, size) - max(y, 0)
        inside_x = min(x + TILE, size) - max(x, 0)
        if inside_y * inside_x >= TILE * TILE / 2:
            break
    top, left = max(y, 0), max(x, 0)
    image[top : y + TILE, left : x + TILE] = tile[top - y : min(TILE, size - y), left - x : min(TILE, size - x)]
    return image


def block_average(image: np.ndarray, factor: int) -> np.ndarray:
    """``image`` averaged over ``factor`` x ``factor`` blocks and rounded: what the model's glance
    makes of a frame (``AdaFocusConfig.glance_resize`` "auto" is an exact average pool, 128 -> 32)."""
    if factor == 1:
        return image
    height, width, channels = image.shape
    if height % factor or width % factor:
        raise ValueError(f"an image of {width}x{height} px cannot be averaged over {factor}-px blocks")
    blocks = image.reshape(height // factor, factor, width // factor, factor, channels).astype(np.float64)
    return np.round(blocks.mean(axis=(1, 3))).astype(np.uint8)


def generate(
    out: str | Path,
    seed: int = 0,
    train_per_class: int = 150,
    val_per_class: int = 25,
    size: int = PATCH_SIZE,
    downsample: int = 1,
) -> Path:
    """Write the set under ``out`` (skipped when a complete one with these options is there).
    ``downsample`` > 1 writes each image block-averaged by that factor: the tiles as the glance sees
    them (4 for v2's 128 -> 32), the set that pre-trains the global network."""
    out = Path(out)
    manifest = out / "dataset.json"
    config = {"seed": seed, "train_per_class": train_per_class, "val_per_class": val_per_class, "size": size}
    if downsample != 1:  # (kept out of the key otherwise, so existing sets stay valid)
        config["downsample"] = downsample
    if manifest.exists() and json.loads(manifest.read_text()).get("config") == config:
        return out
    for split_code, (split, count) in enumerate((("train", train_per_class), ("val", val_per_class))):
        for label, ((texture, colour), name) in enumerate(zip(CLASSES, CLASS_NAMES)):
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                rng = np.random.default_rng((seed, split_code, label, i))
                image = block_average(render_tile_image(texture, colour, rng, size), downsample)
                Image.fromarray(image).save(folder / f"{i:05d}.png")
    manifest.write_text(json.dumps({"config": config, "classes": list(CLASS_NAMES)}, indent=2) + "\n")
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.synthetic_tiles", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="data/synthetic-v2-tiles")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-per-class", type=int, default=150)
    parser.add_argument("--val-per-class", type=int, default=25)
    parser.add_argument("--size", type=int, default=PATCH_SIZE, help="image side (default: v2's patch, 40)")
    parser.add_argument(
        "--downsample",
        type=int,
        default=1,
        help="average each image over NxN blocks: 4 gives the tiles as v2's glance sees them (10 px)",
    )
    args = parser.parse_args(argv)
    if args.downsample < 1 or args.size % args.downsample:
        parser.error(f"--downsample must be a positive divisor of --size ({args.size}), got {args.downsample}")
    path = generate(args.out, args.seed, args.train_per_class, args.val_per_class, args.size, args.downsample)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
