"""Image-folder datasets (``root/<class>/*.jpg``) with the usual train and eval transforms."""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.frames.transform import IMAGENET_MEAN, IMAGENET_STD

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".webp"}


@dataclass(frozen=True)
class ImageSample:
    path: Path
    label: int


def find_classes(root: Path) -> list[str]:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise FileNotFoundError(f"no class folders in {root} (expected {root}/<class>/*.jpg)")
    return classes


def scan_image_folder(root: Path, classes: Sequence[str]) -> list[ImageSample]:
    """Every image under ``root/<class>/`` for the given classes, in a stable order."""
    samples = []
    for label, name in enumerate(classes):
        folder = root / name
        if not folder.is_dir():
            continue
        for path in sorted(folder.rglob("*")):
            if path.suffix.lower() in IMAGE_SUFFIXES and path.is_file():
                samples.append(ImageSample(path, label))
    if not samples:
        raise FileNotFoundError(f"no images ({', '.join(sorted(IMAGE_SUFFIXES))}) under {root}")
    return samples


def split_image_folder(
    root: str | Path, val_fraction: float = 0.1, seed: int = 0
) -> tuple[list[str], list[ImageSample], list[ImageSample]]:
    """Classes and train / val samples of ``root``.

    ``root/train`` + ``root/val`` (ImageNet layout) are used as they are; a plain
    ``root/<class>`` folder is split, ``val_fraction`` of each class going to val.
    """
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    if (root / "train").is_dir() and (root / "val").is_dir():
        classes = find_classes(root / "train")
        return classes, scan_image_folder(root / "train", classes), scan_image_folder(root / "val", classes)
    classes = find_classes(root)
    samples = scan_image_folder(root, classes)
    train, val = [], []
    rng = random.Random(seed)
    for label in range(len(classes)):
        members = [s for s in samples if s.label == label]
        rng.shuffle(members)
        n_val = max(1, round(len(members) * val_fraction)) if len(members) > 1 else 0
        val += members[:n_val]
        train += members[n_val:]
    return classes, train, val


def random_resized_box(
    width: int, height: int, rng: np.random.Generator, scale: tuple[float, float], ratio: tuple[float, float]
) -> tuple[int, int, int, int]:
    """An Inception-style random crop box ``(left, top, right, bottom)``."""
    area = width * height
    log_ratio = (math.log(ratio[0]), math.log(ratio[1]))
    for _ in range(10):
        target = area * rng.uniform(*scale)
        aspect = math.exp(rng.uniform(*log_ratio))
        w = int(round(math.sqrt(target * aspect)))
        h = int(round(math.sqrt(target / aspect)))
        if 0 < w <= width and 0 < h <= height:
            left = int(rng.integers(0, width - w + 1))
            top = int(rng.integers(0, height - h + 1))
            return left, top, left + w, top + h
    side = min(width, height)  # fall back to a centre square
    left, top = (width - side) // 2, (height - side) // 2
    return left, top, left + side, top + side


def centre_box(width: int, height: int, crop_fraction: float) -> tuple[float, float, float, float]:
    """The centre square covering ``crop_fraction`` of the shorter side."""
    side = min(width, height) * crop_fraction
    left, top = (width - side) / 2, (height - side) / 2
    return left, top, left + side, top + side


def to_normalised_array(image: Image.Image) -> np.ndarray:
    """``(3, H, W)`` float32, ImageNet-normalised."""
    array = np.asarray(image, dtype=np.float32) / 255.0
    return ((array - IMAGENET_MEAN) / IMAGENET_STD).transpose(2, 0, 1).copy()


class ImageFolderDataset:
    """Map-style dataset over :class:`ImageSample` items.

    Items are indexed by ``(index, epoch)`` (see :class:`training.sampler.EpochSampler`) so
    augmentation is seeded per sample and epoch. An unreadable image yields label ``-1``
    (ignored by the loss and counted by the trainer) instead of stopping training.
    """

    def __init__(
        self,
        samples: Sequence[ImageSample],
        input_size: int,
        train: bool,
        seed: int = 0,
        crop_scale: tuple[float, float] = (0.08, 1.0),
        eval_crop_fraction: float = 0.875,
        hflip: bool = True,
    ) -> None:
        self.samples = list(samples)
        self.input_size = input_size
        self.train = train
        self.seed = seed
        self.crop_scale = crop_scale
        self.eval_crop_fraction = eval_crop_fraction
        self.hflip = hflip

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, key: tuple[int, int] | int) -> tuple[np.ndarray, int, int]:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        sample = self.samples[index]
        try:
            with Image.open(sample.path) as raw:
                image = raw.convert("RGB")
        except (OSError, UnidentifiedImageError, ValueError):
            blank = np.zeros((3, self.input_size, self.input_size), dtype=np.float32)
            return blank, -1, index
        return self.transform(image, np.random.default_rng((self.seed, epoch, index))), sample.label, index

    def transform(self, image: Image.Image, rng: np.random.Generator) -> np.ndarray:
        size = (self.input_size, self.input_size)
        if self.train:
            box = random_resized_box(image.width, image.height, rng, self.crop_scale, (3 / 4, 4 / 3))
            image = image.resize(size, Image.BILINEAR, box=box)
            if self.hflip and rng.random() < 0.5:
                image = image.transpose(Image.FLIP_LEFT_RIGHT)
        else:
            box = centre_box(image.width, image.height, self.eval_crop_fraction)
            image = image.resize(size, Image.BILINEAR, box=box)
        return to_normalised_array(image)
