"""Video datasets: folder and list layouts, multi-label, augmentation, unreadable files."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import DataLoader

from pipeline.frames import FrameGeometry, UnsupportedFormatError
from pipeline.frames.decode import read_clip
from tests.videos import CONTAINERS, brightness_index, make_video
from training.data.frame_cache import FrameCache
from training.data.videos import VideoDataset, read_video_list, scan_video_folder
from training.engine.sampler import EpochSampler

GEOMETRY = FrameGeometry(40, 32)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    root = tmp_path_factory.mktemp("videos")
    for k, (fmt, ext, codec, pix_fmt) in enumerate(CONTAINERS):
        cls = "cats" if k % 2 else "dogs"
        (root / cls).mkdir(exist_ok=True)
        make_video(root / cls / f"v{k}.{ext}", frames=16, codec=codec, pix_fmt=pix_fmt, container=fmt)
    return root


def test_folder_layout(folder):
    classes, samples = scan_video_folder(folder)
    assert classes == ["cats", "dogs"]
    assert len(samples) == 4 and {s.labels for s in samples} == {(0,), (1,)}


def test_csv_list_with_names_header_and_classes_file(tmp_path, folder):
    (tmp_path / "classes.txt").write_text("dogs\ncats\n")
    rows = ["path,label"] + [f"{p},{p.parent.name}" for p in sorted(folder.rglob("*.mp4"))]
    (tmp_path / "list.csv").write_text("\n".join(rows) + "\n")
    classes, samples = read_video_list(tmp_path / "list.csv")
    assert classes == ["dogs", "cats"]
    assert samples[0].labels == ((1,) if samples[0].path.parent.name == "cats" else (0,))


def test_multi_label_lists(tmp_path, folder):
    video = next(folder.rglob("*.mp4"))
    (tmp_path / "list.csv").write_text(f"{video},2,0\n{video},1\n")
    classes, samples = read_video_list(tmp_path / "list.csv")
    assert classes == ["0", "1", "2"] and samples[0].labels == (0, 2)
    (tmp_path / "list.json").write_text(json.dumps([{"path": str(video), "labels": ["run", "jump"]}]))
    classes, samples = read_video_list(tmp_path / "list.json")
    assert classes == ["jump", "run"] and samples[0].labels == (0, 1)
    dataset = VideoDataset(samples, len(classes), 4, GEOMETRY, train=False, multi_label=True)
    assert dataset[0].target.tolist() == [1.0, 1.0]


def test_relative_paths_are_relative_to_the_list(tmp_path):
    make_video(tmp_path / "a.mp4")
    (tmp_path / "list.csv").write_text("a.mp4,0\n")
    _, samples = read_video_list(tmp_path / "list.csv")
    assert samples[0].path == tmp_path / "a.mp4"


def test_evaluation_items_equal_the_pipeline(folder):
    classes, samples = scan_video_folder(folder)
    dataset = VideoDataset(samples, len(classes), 4, GEOMETRY, train=False)
    for i, sample in enumerate(samples):
        item = dataset[(i, 3)]
        assert item.valid and item.index == i
        assert np.array_equal(item.frames, read_clip(sample.path, 4, GEOMETRY).frames)


def test_training_items_are_augmented_per_epoch_and_reproducible(folder):
    classes, samples = scan_video_folder(folder)
    dataset = VideoDataset(samples, len(classes), 4, GEOMETRY, train=True, seed=1)
    a, b, c = dataset[(0, 0)], dataset[(0, 0)], dataset[(0, 1)]
    assert np.array_equal(a.frames, b.frames)
    assert not np.array_equal(a.frames, c.frames)
    indices = [brightness_index(f) for f in a.frames]  # one random frame per 4-frame segment
    assert all(4 * k <= i < 4 * (k + 1) for k, i in enumerate(indices))


def test_unreadable_videos_are_flagged_not_fatal(tmp_path, folder):
    classes, samples = scan_video_folder(folder)
    bad = tmp_path / "dogs" / "bad.mp4"
    bad.parent.mkdir()
    bad.write_bytes(b"\x00" * 1000)
    samples = samples + [samples[0].__class__(bad, (1,))]
    dataset = VideoDataset(samples, 2, 4, GEOMETRY, train=True)
    item = dataset[len(samples) - 1]
    assert not item.valid and item.frames.shape == (4, 3, 32, 32)
    missing = VideoDataset([samples[0].__class__(tmp_path / "gone.mp4", (0,))], 2, 4, GEOMETRY, train=False)
    assert not missing[0].valid
    strict = VideoDataset(samples, 2, 4, GEOMETRY, train=True, strict=True)
    with pytest.raises(UnsupportedFormatError):
        strict[len(samples) - 1]


def test_batches_through_a_dataloader_with_workers(folder):
    classes, samples = scan_video_folder(folder)
    dataset = VideoDataset(samples, len(classes), 4, GEOMETRY, train=True)
    # Never fork a process that has run FFmpeg threads: the children can deadlock.
    loader = DataLoader(
        dataset, batch_size=2, sampler=EpochSampler(len(dataset)), num_workers=2, multiprocessing_context="forkserver"
    )
    batches = list(loader)
    assert len(batches) == 2
    frames, target, index, valid, boxes = batches[0]
    assert frames.shape == (2, 4, 3, 32, 32) and frames.dtype == torch.float32
    assert valid.all() and target.dtype == torch.int64
    assert boxes.shape == (2, 4, 4) and torch.isnan(boxes).all()  # no boxes beside these videos


def test_frame_cache_gives_exactly_the_decoded_clips(tmp_path, folder):
    classes, samples = scan_video_folder(folder)
    cache = FrameCache(tmp_path / "cache", max_bytes=50_000_000)
    for train in (False, True):
        plain = VideoDataset(samples, len(classes), 4, GEOMETRY, train=train, seed=2)
        cached = VideoDataset(samples, len(classes), 4, GEOMETRY, train=train, seed=2, cache=cache)
        for epoch in (0, 1):
            for i in range(len(samples)):
                assert np.array_equal(plain[(i, epoch)].frames, cached[(i, epoch)].frames)
    assert cache.misses == len(samples) and cache.hits >= 3 * len(samples)


def test_frame_cache_stays_under_its_cap(tmp_path, folder):
    _, samples = scan_video_folder(folder)
    one_entry = FrameCache(tmp_path / "probe", 10**9)
    entry_bytes = one_entry.get(samples[0].path, GEOMETRY).frames.nbytes
    cache = FrameCache(tmp_path / "cache", max_bytes=4 * entry_bytes + 300)  # 3 entries and their headers fit
    for sample in samples:
        cache.get(sample.path, GEOMETRY)
    assert cache.size() <= cache.max_bytes
    assert len(list((tmp_path / "cache").glob("*.npy"))) < len(samples)
