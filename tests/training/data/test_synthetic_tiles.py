"""Benchmark v2's tile images (the local network's pre-training set) and unflipped image training."""

from __future__ import annotations

import json

import numpy as np
from PIL import Image

from training.data.images import ImageFolderDataset, ImageSample
from training.data.synthetic import class_texture
from training.data.synthetic_tiles import (
    CLASS_NAMES,
    CLASSES,
    FRAME_COLOURS,
    block_average,
    generate,
    render_tile_image,
)
from training.data.synthetic_v2 import TILE

BORDER = 3


def _tile_position(image: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    """The pixels of the tile's coloured frame."""
    return np.argwhere((image == np.array(colour, dtype=np.uint8)).all(axis=-1))


def test_each_image_shows_its_class_texture_in_its_colour_at_least_half_inside():
    rng = np.random.default_rng(0)
    for label, (texture, colour) in enumerate(CLASSES):
        image = render_tile_image(texture, colour, rng)
        assert image.shape == (40, 40, 3) and image.dtype == np.uint8
        frame = _tile_position(image, FRAME_COLOURS[colour])
        assert len(frame) > 0, CLASS_NAMES[label]
        # The tile's visible part: the bounding box of its frame colour, at least half of a tile.
        (top, left), (bottom, right) = frame.min(0), frame.max(0) + 1
        assert (bottom - top) * (right - left) >= TILE * TILE / 2
    # A tile placed whole shows the class texture exactly inside its frame.
    for _ in range(50):
        image = render_tile_image(4, "pink", rng)
        frame = _tile_position(image, FRAME_COLOURS["pink"])
        (top, left), (bottom, right) = frame.min(0), frame.max(0) + 1
        if bottom - top == TILE and right - left == TILE:
            inside = image[top + BORDER : bottom - BORDER, left + BORDER : right - BORDER, 0] == 255
            np.testing.assert_array_equal(inside, class_texture(4) == 1)
            break
    else:
        raise AssertionError("no whole tile in 50 draws")


def test_the_set_has_a_class_per_texture_and_colour_and_is_deterministic(tmp_path):
    first, second = tmp_path / "a", tmp_path / "b"
    generate(first, seed=1, train_per_class=2, val_per_class=1)
    generate(second, seed=1, train_per_class=2, val_per_class=1)
    assert sorted(p.name for p in (first / "train").iterdir()) == sorted(CLASS_NAMES)
    assert len(CLASS_NAMES) == 40 and "pattern_3-blue" in CLASS_NAMES
    assert len(list((first / "val").rglob("*.png"))) == 40
    for path in (first / "train").rglob("*.png"):
        assert (second / path.relative_to(first)).read_bytes() == path.read_bytes()
    assert json.loads((first / "dataset.json").read_text())["classes"] == list(CLASS_NAMES)


def test_no_hflip_keeps_training_images_as_they_are(tmp_path):
    array = np.zeros((40, 40, 3), dtype=np.uint8)
    array[:, :10] = 255  # not mirror-symmetric
    path = tmp_path / "image.png"
    Image.fromarray(array).save(path)
    samples = [ImageSample(path, 0)]
    kept = ImageFolderDataset(samples, 40, True, crop_scale=(1.0, 1.0), hflip=False)
    flipped = ImageFolderDataset(samples, 40, True, crop_scale=(1.0, 1.0))
    first = kept[(0, 0)][0]
    assert all(np.array_equal(kept[(0, epoch)][0], first) for epoch in range(20))
    assert any(not np.array_equal(flipped[(0, epoch)][0], first) for epoch in range(20))


def test_block_average_is_the_glance_average_pool():
    """The glance-scale set must show the tiles as the model's 4x average pool does (128 -> 32)."""
    import torch
    import torch.nn.functional as F

    image = render_tile_image(7, "yellow", np.random.default_rng(3))
    pooled = F.avg_pool2d(torch.from_numpy(image).permute(2, 0, 1).double()[None], 4)[0].permute(1, 2, 0)
    np.testing.assert_array_equal(block_average(image, 4), torch.round(pooled).numpy().astype(np.uint8))
    assert block_average(image, 1) is image


def test_the_glance_scale_set_keeps_the_frame_colour_and_is_keyed_apart(tmp_path):
    full, glance = tmp_path / "full", tmp_path / "glance"
    generate(full, seed=2, train_per_class=1, val_per_class=1)
    generate(glance, seed=2, train_per_class=1, val_per_class=1, downsample=4)
    name = "pattern_5-yellow/00000.png"
    big = np.asarray(Image.open(full / "train" / name))
    small = np.asarray(Image.open(glance / "train" / name))
    assert small.shape == (10, 10, 3)
    np.testing.assert_array_equal(small, block_average(big, 4))

    # The frame's colour survives the average (the texture, one pixel fine, does not): some pixel is
    # nearer the yellow than any pixel is to another frame colour.
    def nearest(colour: str) -> float:
        return float(np.abs(small.astype(float) - np.array(FRAME_COLOURS[colour], float)).sum(axis=-1).min())

    assert nearest("yellow") < min(nearest(c) for c in FRAME_COLOURS if c != "yellow")
    assert json.loads((glance / "dataset.json").read_text())["config"]["downsample"] == 4
    assert "downsample" not in json.loads((full / "dataset.json").read_text())["config"]
