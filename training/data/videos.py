"""Video datasets decoded on the fly with the shared frame pipeline (no frame extraction).

Two layouts:

* a folder per class: ``root/<class>/*.mp4|webm|avi|mkv`` (single label);
* a list file: CSV lines ``path,label[,label...]`` (several labels: a multi-label dataset
  such as ActivityNet or FCVID), or JSON ``[{"path": ..., "labels": [...]}, ...]``. Paths
  are relative to the list's folder unless absolute. Labels are class names, resolved with
  ``classes.txt`` beside the list when it exists (in its order), or integer ids.

An unreadable video does not stop training: its item comes back with ``valid=False`` (the
trainer skips and reports it) unless ``strict`` is set.

A video with ground-truth target boxes beside it (``<stem>.boxes.json``, the synthetic
benchmark's; ``training.data.synthetic.read_target_boxes``) gives them for its sampled frames,
in the model's frame (through the same resize and crop as the frames, a training draw's too);
NaN boxes otherwise. The oracle baseline and the focus-quality measure read them.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

from pipeline.frames.decode import clip_from_resized, read_clip
from pipeline.frames.errors import VideoError
from pipeline.frames.limits import DecodeLimits
from pipeline.frames.patch import boxes_in_crop
from pipeline.frames.transform import IMAGENET, FrameGeometry, Normalisation

from .frame_cache import FrameCache
from .synthetic import boxes_path, read_target_boxes

VIDEO_SUFFIXES = {".mp4", ".webm", ".avi", ".mkv", ".mov"}


@dataclass(frozen=True)
class VideoSample:
    path: Path
    labels: tuple[int, ...]


class VideoItem(NamedTuple):
    """One item; a NamedTuple so the default DataLoader collation batches each field."""

    frames: np.ndarray  # float32 (T, 3, H, W)
    target: int | np.ndarray  # class index, or a multi-hot float32 vector
    index: int
    valid: bool
    boxes: np.ndarray  # float32 (T, 4): the target's [x0, y0, x1, y1) in the model's frame; NaN: none


def scan_video_folder(root: str | Path) -> tuple[list[str], list[VideoSample]]:
    """Classes (sorted folder names) and every video under ``root/<class>/``."""
    root = Path(root)
    if not root.is_dir():
        raise FileNotFoundError(f"dataset folder {root} does not exist")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    samples = [
        VideoSample(path, (label,))
        for label, name in enumerate(classes)
        for path in sorted((root / name).rglob("*"))
        if path.suffix.lower() in VIDEO_SUFFIXES and path.is_file()
    ]
    if not samples:
        raise FileNotFoundError(f"no videos ({', '.join(sorted(VIDEO_SUFFIXES))}) under {root}/<class>/")
    return classes, samples


def read_video_list(list_path: str | Path) -> tuple[list[str], list[VideoSample]]:
    """Classes and samples of a CSV or JSON list (see the module docstring)."""
    list_path = Path(list_path)
    if not list_path.is_file():
        raise FileNotFoundError(f"video list {list_path} does not exist")
    if list_path.suffix == ".json":
        entries = [(e["path"], e.get("labels", [e.get("label")])) for e in json.loads(list_path.read_text())]
    else:
        with list_path.open(newline="") as f:
            entries = [(row[0], row[1:]) for row in csv.reader(f) if row and not row[0].startswith("#")]
        if entries and entries[0][0].strip().lower() == "path":
            entries = entries[1:]  # a header line
    classes_file = list_path.parent / "classes.txt"
    known = classes_file.read_text().split() if classes_file.exists() else None
    classes, to_id = _label_mapping([str(label).strip() for _, labels in entries for label in labels], known)
    samples = []
    for path, labels in entries:
        full = Path(path) if Path(path).is_absolute() else list_path.parent / path
        ids = tuple(sorted({to_id(str(label).strip()) for label in labels if str(label).strip()}))
        if not ids:
            raise ValueError(f"{list_path}: {path} has no label")
        samples.append(VideoSample(full, ids))
    if not samples:
        raise ValueError(f"{list_path} lists no videos")
    return classes, samples


def _label_mapping(labels: list[str], known: list[str] | None):
    if known is not None:
        lookup = {name: i for i, name in enumerate(known)}

        def to_id(label: str) -> int:
            if label in lookup:
                return lookup[label]
            if label.isdigit() and int(label) < len(known):
                return int(label)
            raise ValueError(f"label {label!r} is not in classes.txt")

        return list(known), to_id
    if all(label.isdigit() for label in labels):
        count = max(int(label) for label in labels) + 1
        return [str(i) for i in range(count)], int
    names = sorted(set(labels))
    lookup = {name: i for i, name in enumerate(names)}
    return names, lookup.__getitem__


class VideoDataset:
    """Map-style dataset; items are indexed by ``(index, epoch)`` (see ``EpochSampler``).

    Training items (``train=True``) draw their frames and crop from a generator seeded by
    ``(seed, epoch, index)``, so a run is reproducible whatever the number of loader workers.
    Load it with ``multiprocessing_context="forkserver"`` (or ``"spawn"``): a worker forked
    from a process that has already run FFmpeg's decoder threads can deadlock.
    """

    def __init__(
        self,
        samples: Sequence[VideoSample],
        num_classes: int,
        num_frames: int,
        geometry: FrameGeometry,
        train: bool,
        seed: int = 0,
        multi_label: bool = False,
        limits: DecodeLimits | None = None,
        strict: bool = False,
        cache: FrameCache | None = None,
        normalisation: Normalisation = IMAGENET,
    ) -> None:
        self.samples = list(samples)
        self.num_classes = num_classes
        self.num_frames = num_frames
        self.geometry = geometry
        self.train = train
        self.seed = seed
        self.multi_label = multi_label
        self.limits = limits
        self.strict = strict
        self.cache = cache
        self.normalisation = normalisation

    def __len__(self) -> int:
        return len(self.samples)

    def target(self, sample: VideoSample) -> int | np.ndarray:
        if not self.multi_label:
            return sample.labels[0]
        hot = np.zeros(self.num_classes, dtype=np.float32)
        hot[list(sample.labels)] = 1.0
        return hot

    def __getitem__(self, key: tuple[int, int] | int) -> VideoItem:
        index, epoch = key if isinstance(key, tuple) else (key, 0)
        sample = self.samples[index]
        rng = np.random.default_rng((self.seed, epoch, index)) if self.train else None
        try:
            if self.cache is not None:
                resized = self.cache.get(sample.path, self.geometry, self.limits)
                clip = clip_from_resized(resized, self.num_frames, self.geometry, rng, self.normalisation)
            else:
                clip = read_clip(
                    sample.path,
                    self.num_frames,
                    self.geometry,
                    self.limits,
                    rng,
                    threads=1,
                    normalisation=self.normalisation,
                )
        except (VideoError, OSError):
            if self.strict:
                raise
            crop = self.geometry.crop
            blank = np.zeros((self.num_frames, 3, crop, crop), dtype=np.float32)
            return VideoItem(blank, self.target(sample), index, False, self._no_boxes())
        return VideoItem(clip.frames, self.target(sample), index, True, self._boxes(sample, clip))

    def _no_boxes(self) -> np.ndarray:
        return np.full((self.num_frames, 4), np.nan, dtype=np.float32)

    def _boxes(self, sample: VideoSample, clip) -> np.ndarray:
        """The target boxes of the clip's frames in the model's frame, if the video has a boxes file."""
        path = boxes_path(sample.path)
        if not path.is_file():
            return self._no_boxes()
        boxes = read_target_boxes(path)  # a malformed file is an error naming it, not a silent NaN
        frames = np.minimum(clip.frame_indices, len(boxes) - 1)
        return boxes_in_crop(boxes[frames], self.geometry, clip.crop_box, clip.original_size)
