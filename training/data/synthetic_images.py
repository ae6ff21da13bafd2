"""A small generated image-classification dataset, so image training works with no download.

    python -m training.data.synthetic_images --out data/synthetic_images --seed 0

Ten classes of simple shapes (disc, square, triangle, ring, cross, stripes, ...) in a random
colour, position and size over a noisy, randomly tinted background, written as JPEG files in
the ImageNet layout ``out/{train,val}/<class>/*.jpg``. Deterministic given the seed.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
from PIL import Image

Mask = Callable[[np.ndarray, np.ndarray, float], np.ndarray]


def _disc(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return x**2 + y**2 <= r**2


def _square(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return (np.abs(x) <= r * 0.8) & (np.abs(y) <= r * 0.8)


def _triangle(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return (y <= r * 0.7) & (y >= -r * 0.9 + 1.8 * np.abs(x))


def _ring(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    d = np.sqrt(x**2 + y**2)
    return (d <= r) & (d >= r * 0.55)


def _cross(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    bar = r * 0.28
    return ((np.abs(x) <= bar) & (np.abs(y) <= r)) | ((np.abs(y) <= bar) & (np.abs(x) <= r))


def _horizontal_stripes(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return _square(x, y, r) & (np.floor(y / (r * 0.3)) % 2 == 0)


def _vertical_stripes(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return _square(x, y, r) & (np.floor(x / (r * 0.3)) % 2 == 0)


def _checker(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return _square(x, y, r) & ((np.floor(x / (r * 0.4)) + np.floor(y / (r * 0.4))) % 2 == 0)


def _diamond(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return np.abs(x) + np.abs(y) <= r


def _half_disc(x: np.ndarray, y: np.ndarray, r: float) -> np.ndarray:
    return _disc(x, y, r) & (y >= 0)


SHAPES: dict[str, Mask] = {
    "disc": _disc,
    "square": _square,
    "triangle": _triangle,
    "ring": _ring,
    "cross": _cross,
    "horizontal_stripes": _horizontal_stripes,
    "vertical_stripes": _vertical_stripes,
    "checker": _checker,
    "diamond": _diamond,
    "half_disc": _half_disc,
}


def render(shape: Mask, size: int, rng: np.random.Generator) -> np.ndarray:
    """One ``(size, size, 3)`` uint8 image of ``shape``."""
    background = rng.uniform(0.1, 0.6, size=3)
    image = background + rng.normal(0, 0.08, size=(size, size, 3))
    radius = size * rng.uniform(0.2, 0.38)
    cx, cy = rng.uniform(radius, size - radius, size=2)
    ys, xs = np.mgrid[0:size, 0:size].astype(np.float32)
    mask = shape(xs - cx, ys - cy, radius)
    colour = rng.uniform(0.4, 1.0, size=3)
    image[mask] = colour + rng.normal(0, 0.05, size=(int(mask.sum()), 3))
    return (np.clip(image, 0, 1) * 255).astype(np.uint8)


def generate(
    out: str | Path, seed: int = 0, train_per_class: int = 200, val_per_class: int = 50, size: int = 32
) -> Path:
    """Write the dataset under ``out`` (skipped when a complete one is already there)."""
    out = Path(out)
    manifest = out / "dataset.json"
    config = {"seed": seed, "train_per_class": train_per_class, "val_per_class": val_per_class, "size": size}
    if manifest.exists() and json.loads(manifest.read_text()).get("config") == config:
        return out
    rng = np.random.default_rng(seed)
    for split, count in (("train", train_per_class), ("val", val_per_class)):
        for name, shape in SHAPES.items():
            folder = out / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                Image.fromarray(render(shape, size, rng)).save(folder / f"{i:05d}.jpg", quality=95)
    manifest.write_text(json.dumps({"config": config, "classes": list(SHAPES)}, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.data.synthetic_images", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--out", default="data/synthetic_images")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-per-class", type=int, default=200)
    parser.add_argument("--val-per-class", type=int, default=50)
    parser.add_argument("--size", type=int, default=32)
    args = parser.parse_args(argv)
    path = generate(args.out, args.seed, args.train_per_class, args.val_per_class, args.size)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
