"""Find the train / calibration / test splits of a video dataset.

``--data`` may be:

* nothing: the synthetic benchmark in ``data/synthetic`` (generated on first use);
* a folder with lists ``train.csv|json`` and optionally ``calibration.*`` (or ``val.*``)
  and ``test.*``;
* a folder with split folders ``train/<class>/...`` and optionally ``calibration/`` (or
  ``val/``) and ``test/``;
* a folder per class (``root/<class>/*.mp4``) or a single list file: all training data.

Exit thresholds must be calibrated on videos the model did not train on: without a
calibration split, a seeded ``calibration_fraction`` of the training videos is held out.
Classes are named by the training split and every other split is mapped onto them.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from .synthetic import generate as generate_synthetic
from .videos import VideoSample, read_video_list, scan_video_folder

SYNTHETIC_ROOT = Path("data/synthetic")
CALIBRATION_NAMES = ("calibration", "val")
LIST_SUFFIXES = (".csv", ".json")


@dataclass
class VideoSplits:
    classes: list[str]
    train: list[VideoSample]
    calibration: list[VideoSample]
    test: list[VideoSample] = field(default_factory=list)
    source: str = ""
    notes: list[str] = field(default_factory=list)

    @property
    def multi_label(self) -> bool:
        return any(len(sample.labels) > 1 for sample in self.train)


def _find_list(root: Path, name: str) -> Path | None:
    for suffix in LIST_SUFFIXES:
        if (root / f"{name}{suffix}").is_file():
            return root / f"{name}{suffix}"
    return None


def _read(path: Path) -> tuple[list[str], list[VideoSample]]:
    return read_video_list(path) if path.is_file() else scan_video_folder(path)


def _remap(samples: list[VideoSample], names: list[str], classes: list[str], where: Path) -> list[VideoSample]:
    """Express ``samples`` (labelled with ``names``) in the training split's ``classes``."""
    if names == classes:
        return samples
    lookup = {name: i for i, name in enumerate(classes)}
    unknown = sorted({names[label] for s in samples for label in s.labels} - set(lookup))
    if unknown:
        raise ValueError(f"{where} has classes the training split lacks: {', '.join(unknown[:5])}")
    return [VideoSample(s.path, tuple(sorted(lookup[names[label]] for label in s.labels))) for s in samples]


def _hold_out(samples: list[VideoSample], fraction: float, seed: int) -> tuple[list[VideoSample], list[VideoSample]]:
    if not 0 < fraction < 1:
        raise ValueError(f"calibration_fraction must be in (0, 1), not {fraction}")
    order = np.random.default_rng(seed).permutation(len(samples))
    count = max(1, int(round(len(samples) * fraction)))
    held = set(order[:count].tolist())
    train = [s for i, s in enumerate(samples) if i not in held]
    return train, [s for i, s in enumerate(samples) if i in held]


def load_splits(data: str | Path | None, calibration_fraction: float = 0.1, seed: int = 0) -> VideoSplits:
    """The splits of ``data`` (see the module docstring); generates the synthetic benchmark if needed."""
    if data is None:
        generate_synthetic(SYNTHETIC_ROOT)
        root: Path = SYNTHETIC_ROOT
    else:
        root = Path(data)
    if not root.exists():
        raise FileNotFoundError(f"dataset {root} does not exist")
    split_paths: dict[str, Path | None] = {"train": None, "calibration": None, "test": None}
    if root.is_file():
        split_paths["train"] = root
    elif _find_list(root, "train") or (root / "train").is_dir():
        for split, names in (("train", ("train",)), ("calibration", CALIBRATION_NAMES), ("test", ("test",))):
            for name in names:
                found = _find_list(root, name) or ((root / name) if (root / name).is_dir() else None)
                if found is not None:
                    split_paths[split] = found
                    break
    else:
        split_paths["train"] = root
    classes, train = _read(split_paths["train"])
    splits = VideoSplits(classes, train, [], source=str(root))
    for split in ("calibration", "test"):
        path = split_paths[split]
        if path is not None:
            names, samples = _read(path)
            setattr(splits, split, _remap(samples, names, classes, path))
    if not splits.calibration:
        splits.train, splits.calibration = _hold_out(train, calibration_fraction, seed)
        splits.notes.append(f"no calibration split: held out {len(splits.calibration)} of {len(train)} training videos")
    if not splits.test:
        splits.notes.append("no test split: test metrics are not computed")
    return splits
