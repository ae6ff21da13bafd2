"""The synthetic video benchmark: files, lists, determinism, and the AdaFocus premise."""

from __future__ import annotations

import av
import numpy as np
import pytest

from training.data.synthetic import (
    BORDER,
    MOTIF,
    NUM_CLASSES,
    REPEATS,
    SyntheticConfig,
    _shift_distance,
    class_patterns,
    generate,
    render_clip,
)

SMALL = SyntheticConfig(seed=3, train=6, calibration=2, test=2)


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return generate(tmp_path_factory.mktemp("synthetic"), SMALL, workers=2)


def read_frames(path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def read_label(frame: np.ndarray) -> int | None:
    """Find the yellow-framed target, fold its texture into one 4x4 motif and match it to the classes.

    The match is over cyclic shifts, so a frame edge found a pixel off (video chroma bleeds) does not matter.
    """
    yellow = (frame[..., 0] > 190) & (frame[..., 1] > 160) & (frame[..., 2] < 70)
    ys, xs = np.nonzero(yellow)
    if len(ys) < 20:
        return None
    top, left = ys.min(), xs.min()
    side = MOTIF * REPEATS
    inner = frame[top + BORDER : top + BORDER + side, left + BORDER : left + BORDER + side]
    if inner.shape[:2] != (side, side):
        return None
    motif = inner.mean(axis=2).reshape(REPEATS, MOTIF, REPEATS, MOTIF).mean(axis=(0, 2)) > 127
    distances = [_shift_distance(motif, pattern) for pattern in class_patterns()]
    return int(np.argmin(distances))


def test_files_and_lists(dataset):
    for split, count in (("train", 6), ("calibration", 2), ("test", 2)):
        rows = [line.split(",") for line in (dataset / f"{split}.csv").read_text().splitlines()]
        assert len(rows) == count
        for path, label in rows:
            assert (dataset / path).is_file() and 0 <= int(label) < NUM_CLASSES
            assert path.startswith(f"{split}/{label}/")
    assert len((dataset / "classes.txt").read_text().splitlines()) == NUM_CLASSES


def test_generation_is_deterministic(dataset, tmp_path):
    again = generate(tmp_path, SMALL, workers=1)
    assert (again / "train.csv").read_text() == (dataset / "train.csv").read_text()
    first = (dataset / "test.csv").read_text().split(",")[0]
    assert np.array_equal(read_frames(dataset / first), read_frames(again / first))


def test_class_is_readable_at_full_resolution_only():
    rng = np.random.default_rng(0)
    full, low = [], []
    for label in range(NUM_CLASSES):
        video = render_clip(SyntheticConfig(), label, rng)
        frame = video[len(video) // 2]
        full.append(read_label(frame) == label)
        # A quarter-resolution glance, blown back up: every texture is the same grey.
        small = frame.reshape(32, 4, 32, 4, 3).mean(axis=(1, 3))
        low.append(read_label(np.repeat(np.repeat(small, 4, 0), 4, 1).astype(np.uint8)) == label)
    assert all(full)
    assert sum(low) <= 5  # an oracle that knows where the target is; chance is 1 in 10


def test_class_survives_video_encoding(dataset):
    """The oracle reads the class from decoded H.264 frames, not only from the rendered ones."""
    for split in ("train", "test"):
        for line in (dataset / f"{split}.csv").read_text().splitlines():
            path, label = line.split(",")
            frames = read_frames(dataset / path)
            assert [read_label(frame) for frame in frames[::8]] == [int(label)] * len(frames[::8])
