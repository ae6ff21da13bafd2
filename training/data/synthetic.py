"""The synthetic video benchmark: the out-of-the-box dataset, built so AdaFocus's premise holds.

    python -m training.data.synthetic --out data/synthetic --seed 0
    python -m training.data.synthetic --version 2 --out data/synthetic-v2 --seed 0

This module is version 1 (the default) and the pieces both versions share; version 2, where
the target keeps away from the centre and distractors carry other classes' textures, is
``training.data.synthetic_v2`` (its docstring gives its design and recommended sizes).

Each clip (32 frames, 128x128, 16 fps, H.264 MP4) shows a *target* tile moving smoothly
across a cluttered background among *distractor* tiles. The class is the fine texture inside
the target tile: a 4x4-pixel binary motif, repeated, with exactly half of its pixels white.
At full resolution a CNN reads it; any 4x4 box average of it is the same mid grey for every
class, so a quarter-resolution glance cannot. The target is easy to *find* at low resolution
(it has a bright yellow frame; distractors have other colours and carry non-periodic noise),
hard to *read* there: a glance locates the target, a focus patch on it reads the class.
Deterministic given the seed (each clip is seeded by seed, split and index, so the worker
count does not matter).

Writes ``out/{train,calibration,test}/<class>/<id>.mp4``, beside each clip its ground-truth
target boxes ``<id>.boxes.json`` (see ``read_target_boxes``; both versions), ``out/{split}.csv``
lists (``path,label``, paths relative to ``out``), ``out/classes.txt`` and ``out/dataset.json``
(the configuration, the version and the recommended frame, glance and patch sizes).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path

import av
import numpy as np
from tqdm import tqdm

NUM_CLASSES = 10
MOTIF = 4  # the class texture repeats every 4 pixels ...
REPEATS = 6  # ... 6 times each way: a 24x24 interior
MIN_MOTIF_DISTANCE = 4  # motifs differ in at least 4 of 16 pixels, however they are shifted
BORDER = 3  # coloured frame around the texture: tiles are 30x30
TARGET_COLOUR = (255, 220, 0)
DISTRACTOR_COLOURS = ((0, 170, 255), (255, 60, 160), (90, 220, 90))
BOXES_FORMAT = "adafocus-target-boxes/1"
VERSIONS = (1, 2)


@dataclass(frozen=True)
class SyntheticConfig:
    seed: int = 0
    train: int = 2000
    calibration: int = 500
    test: int = 500
    frames: int = 32
    size: int = 128
    fps: int = 16
    distractors: int = 3
    version: int = 1  # 1: the original benchmark (bit for bit); 2: training.data.synthetic_v2

    def __post_init__(self) -> None:
        if self.version not in VERSIONS:
            raise ValueError(f"synthetic benchmark version must be one of {VERSIONS}, not {self.version}")


def _shift_distance(a: np.ndarray, b: np.ndarray) -> int:
    """Hamming distance between two motifs, minimised over cyclic shifts (tiled, they are the same texture)."""
    return min(int((a != np.roll(b, (dy, dx), (0, 1))).sum()) for dy in range(MOTIF) for dx in range(MOTIF))


def class_patterns(seed: int = 1234) -> np.ndarray:
    """``(NUM_CLASSES, 4, 4)`` binary motifs, fixed for the benchmark: half white, pairwise far apart."""
    rng = np.random.default_rng(seed)
    patterns: list[np.ndarray] = []
    while len(patterns) < NUM_CLASSES:
        candidate = np.zeros(MOTIF * MOTIF, dtype=np.int64)
        candidate[rng.choice(MOTIF * MOTIF, MOTIF * MOTIF // 2, replace=False)] = 1
        candidate = candidate.reshape(MOTIF, MOTIF)
        if all(_shift_distance(candidate, p) >= MIN_MOTIF_DISTANCE for p in patterns):
            patterns.append(candidate)
    return np.stack(patterns)


def class_texture(label: int) -> np.ndarray:
    """The ``(24, 24)`` binary interior of a target tile of class ``label``."""
    return np.tile(class_patterns()[label], (REPEATS, REPEATS))


def _tile(interior: np.ndarray, colour: tuple[int, int, int]) -> np.ndarray:
    inner = np.where(interior[..., None] == 1, 255, 0).astype(np.uint8).repeat(3, axis=2)
    side = inner.shape[0] + 2 * BORDER
    tile = np.empty((side, side, 3), dtype=np.uint8)
    tile[:] = colour
    tile[BORDER:-BORDER, BORDER:-BORDER] = inner
    return tile


def _trajectory(rng: np.random.Generator, frames: int, span: int) -> np.ndarray:
    """``(frames, 2)`` top-left corners of a smooth path (a random-phase Lissajous arc)."""
    t = np.linspace(0, 1, frames)
    centre = rng.uniform(0.3, 0.7, 2)
    amplitude = rng.uniform(0.15, 0.3, 2)
    speed = rng.uniform(0.6, 1.4, 2)
    phase = rng.uniform(0, 2 * np.pi, 2)
    path = centre + amplitude * np.sin(2 * np.pi * speed * t[:, None] + phase)
    return np.clip(np.round(path * span), 0, span).astype(np.int64)


def _background(rng: np.random.Generator, size: int) -> np.ndarray:
    base = rng.uniform(40, 140, 3)
    yy, xx = np.mgrid[0:size, 0:size] / size
    gradient = 40 * np.sin(2 * np.pi * (rng.uniform(0.5, 1.5) * xx + rng.uniform(0.5, 1.5) * yy))
    image = base + gradient[..., None] + rng.normal(0, 6, (size, size, 3))
    for _ in range(12):  # clutter: soft blobs in random colours
        cy, cx = rng.uniform(0, size, 2)
        radius = rng.uniform(3, 10)
        blob = np.exp(-((yy * size - cy) ** 2 + (xx * size - cx) ** 2) / (2 * radius**2))
        image += blob[..., None] * rng.uniform(-60, 60, 3)
    # Keep blue high: no clutter pixel looks like the target's yellow frame.
    image[..., 2] = np.maximum(image[..., 2], 110)
    return np.clip(image, 0, 255)


def render_clip(config: SyntheticConfig, label: int, rng: np.random.Generator) -> np.ndarray:
    """``(frames, size, size, 3)`` uint8 frames of one clip of class ``label`` (of ``config.version``)."""
    return render_clip_with_boxes(config, label, rng)[0]


def render_clip_with_boxes(
    config: SyntheticConfig, label: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """The frames of one clip and its target's ``(frames, 4)`` boxes ``[x0, y0, x1, y1]`` (x1, y1 exclusive)."""
    if config.version == 2:
        from .synthetic_v2 import render_clip_v2  # imported here: synthetic_v2 builds on this module

        clip = render_clip_v2(config, label, rng)
        return clip.video, clip.boxes
    return _render_v1(config, label, rng)


def _render_v1(config: SyntheticConfig, label: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    # Draws from rng in exactly the original order: v1 clips stay the same bit for bit.
    tiles = [_tile(class_texture(label), TARGET_COLOUR)]
    for k in range(config.distractors):
        # Non-periodic noise, also half white: as grey as the target at low resolution.
        noise = rng.permutation(np.arange(MOTIF * MOTIF * REPEATS * REPEATS) % 2).reshape(MOTIF * REPEATS, -1)
        tiles.append(_tile(noise, DISTRACTOR_COLOURS[k % len(DISTRACTOR_COLOURS)]))
    side = tiles[0].shape[0]
    paths = [_trajectory(rng, config.frames, config.size - side) for _ in tiles]
    background = _background(rng, config.size)
    drift = rng.integers(-1, 2, 2)
    video = np.empty((config.frames, config.size, config.size, 3), dtype=np.uint8)
    for f in range(config.frames):
        frame = np.roll(background, shift=tuple(drift * f), axis=(0, 1)).astype(np.uint8)
        for tile, path in zip(reversed(tiles), reversed(paths)):  # the target is drawn last, on top
            y, x = path[f]
            frame[y : y + side, x : x + side] = tile
        video[f] = frame
    return video, boxes_from_corners(paths[0], side)


def boxes_from_corners(corners: np.ndarray, side: int) -> np.ndarray:
    """``(frames, 4)`` boxes ``[x0, y0, x1, y1]`` of a square tile from its ``(frames, 2)`` (y, x) top-left corners."""
    y, x = corners[:, 0], corners[:, 1]
    return np.stack([x, y, x + side, y + side], axis=1).astype(np.int64)


def boxes_path(clip: str | Path) -> Path:
    """Where the target boxes of ``clip`` (``.../<stem>.mp4``) lie: ``.../<stem>.boxes.json``."""
    clip = Path(clip)
    return clip.with_name(f"{clip.stem}.boxes.json")


def write_target_boxes(path: str | Path, boxes: np.ndarray, width: int, height: int) -> None:
    """Write ``boxes`` (one ``[x0, y0, x1, y1]`` per frame) in the ``adafocus-target-boxes/1`` format."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {"format": BOXES_FORMAT, "width": int(width), "height": int(height), "boxes": np.asarray(boxes).tolist()}
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(document, separators=(",", ":")))
    os.replace(tmp, path)


def read_target_boxes(path: str | Path) -> np.ndarray:
    """The ``(frames, 4)`` int64 target boxes ``[x0, y0, x1, y1]`` of a ``<clip stem>.boxes.json`` file.

    Pixel coordinates of the frame as encoded (``width`` x ``height``), x1 and y1 exclusive, the
    target tile including its border, one box per frame in frame order. Raises ``ValueError``
    naming the file and the fault when it is not that format.
    """
    try:
        document = json.loads(Path(path).read_text())
    except json.JSONDecodeError as error:
        raise ValueError(f"{path}: not JSON ({error})") from error
    if not isinstance(document, dict) or document.get("format") != BOXES_FORMAT:
        raise ValueError(f"{path}: not an {BOXES_FORMAT} file (its format field must be {BOXES_FORMAT!r})")
    width, height, boxes = document.get("width"), document.get("height"), document.get("boxes")
    if not all(isinstance(v, int) and not isinstance(v, bool) and v > 0 for v in (width, height)):
        raise ValueError(f"{path}: width and height must be positive integers, not {width!r} and {height!r}")
    if not isinstance(boxes, list) or not boxes:
        raise ValueError(f"{path}: boxes must be a non-empty list with one [x0, y0, x1, y1] per frame")
    for i, box in enumerate(boxes):
        if not (isinstance(box, list) and len(box) == 4 and all(type(v) is int for v in box)):
            raise ValueError(f"{path}: box {i} must be four integers [x0, y0, x1, y1], not {box!r}")
        x0, y0, x1, y1 = box
        if not (0 <= x0 < x1 <= width and 0 <= y0 < y1 <= height):
            raise ValueError(f"{path}: box {i} {box} is empty or outside the {width}x{height} frame")
    return np.asarray(boxes, dtype=np.int64).reshape(-1, 4)


def write_mp4(path: Path, video: np.ndarray, fps: int) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp.mp4")
    with av.open(str(tmp), "w") as output:
        stream = output.add_stream("libx264", rate=fps, options={"preset": "veryfast", "crf": "16"})
        stream.width, stream.height, stream.pix_fmt = video.shape[2], video.shape[1], "yuv420p"
        stream.codec_context.gop_size = 16
        stream.codec_context.thread_count = 1
        for image in video:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                output.mux(packet)
        for packet in stream.encode():
            output.mux(packet)
    os.replace(tmp, path)


def _clip_job(args: tuple[SyntheticConfig, str, int, str]) -> tuple[str, int]:
    config, split, index, out = args
    split_code = ("train", "calibration", "test").index(split)
    rng = np.random.default_rng((config.seed, split_code, index))
    label = int(rng.integers(NUM_CLASSES))
    relative = f"{split}/{label}/{index:05d}.mp4"
    target = Path(out) / relative
    boxes = boxes_path(target)
    # An interrupted generation resumes where it stopped; a clip written before boxes existed
    # gets them (rendering is deterministic) and keeps its .mp4 untouched.
    if not (target.exists() and boxes.exists()):
        video, target_boxes = render_clip_with_boxes(config, label, rng)
        write_target_boxes(boxes, target_boxes, width=video.shape[2], height=video.shape[1])
        if not target.exists():
            write_mp4(target, video, config.fps)
    return relative, label


def recommended_sizes(config: SyntheticConfig) -> dict[str, int]:
    """The model's frame, glance and patch sides this benchmark is built for (training should use them)."""
    if config.version == 2:
        from .synthetic_v2 import recommended_sizes_v2

        return recommended_sizes_v2(config)
    # v1: the default run's sizes (docs/results/synthetic.md), scaled to the frame.
    return {"frame_size": config.size, "glance_size": config.size // 4, "patch_size": config.size // 2}


def generate(out: str | Path, config: SyntheticConfig = SyntheticConfig(), workers: int | None = None) -> Path:
    """Write the benchmark under ``out``; a complete one with the same config is left as it is."""
    out = Path(out)
    manifest = out / "dataset.json"
    if manifest.exists() and json.loads(manifest.read_text()).get("config") == asdict(config):
        return out
    jobs = [
        (config, split, i, str(out))
        for split in ("train", "calibration", "test")
        for i in range(getattr(config, split))
    ]
    workers = workers or min(len(jobs), os.cpu_count() or 1)
    rows: dict[str, list[tuple[str, int]]] = {"train": [], "calibration": [], "test": []}
    # forkserver, not fork: forking a process that already runs threads (torch's, tqdm's, a
    # test runner's) can leave a worker blocked forever on a lock held at the fork.
    with ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("forkserver")) as pool:
        done = pool.map(_clip_job, jobs, chunksize=16)
        for (_, split, _, _), row in tqdm(zip(jobs, done), total=len(jobs), desc="clips", unit="clip"):
            rows[split].append(row)
    for split, entries in rows.items():
        (out / f"{split}.csv").write_text("".join(f"{path},{label}\n" for path, label in entries))
    (out / "classes.txt").write_text("".join(f"pattern_{k}\n" for k in range(NUM_CLASSES)))
    description = {
        "config": asdict(config),
        "classes": NUM_CLASSES,
        "version": config.version,
        "recommended": recommended_sizes(config),
        "target_boxes": {"format": BOXES_FORMAT, "file": "<clip stem>.boxes.json beside <clip stem>.mp4"},
    }
    manifest.write_text(json.dumps(description, indent=2))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m training.data.synthetic", description=__doc__.split("\n")[0])
    parser.add_argument("--out", default=None, help="default: data/synthetic (v1), data/synthetic-v2 (v2)")
    parser.add_argument("--version", type=int, choices=VERSIONS, default=1, help="benchmark version (default 1)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train", type=int, default=SyntheticConfig.train)
    parser.add_argument("--calibration", type=int, default=SyntheticConfig.calibration)
    parser.add_argument("--test", type=int, default=SyntheticConfig.test)
    parser.add_argument("--workers", type=int, default=None)
    args = parser.parse_args(argv)
    config = SyntheticConfig(
        seed=args.seed, train=args.train, calibration=args.calibration, test=args.test, version=args.version
    )
    out = args.out or ("data/synthetic" if args.version == 1 else f"data/synthetic-v{args.version}")
    path = generate(out, config, args.workers)
    print(f"wrote {path}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
