"""An on-disk cache of decoded, resized frames, for datasets read many times.

Each entry holds every frame of one video, upright and resized to the geometry's shorter
side (uint8, ``.npy``), so any sampling and any crop can be taken from it and gives exactly
what decoding would (``frames.decode.clip_from_resized``). Entries are keyed by the file's
path, size and modification time and the resize, written atomically (several loader
workers may fill the cache at once), and evicted least recently used first once the cache
passes ``max_bytes``. A video whose frames alone exceed a quarter of the cap is not cached.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from pathlib import Path

import numpy as np

from pipeline.frames.decode import ResizedVideo, read_all_resized
from pipeline.frames.limits import DecodeLimits
from pipeline.frames.transform import FrameGeometry


class FrameCache:
    def __init__(self, directory: str | Path, max_bytes: int) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)
        self.max_bytes = max_bytes
        self.hits = 0
        self.misses = 0

    def key(self, path: Path, geometry: FrameGeometry) -> str:
        stat = path.stat()
        ident = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}|{geometry.resize}"
        return hashlib.sha1(ident.encode()).hexdigest()

    def get(self, path: str | Path, geometry: FrameGeometry, limits: DecodeLimits | None = None) -> ResizedVideo:
        """The resized frames of ``path``, from the cache or decoded (and then cached)."""
        path = Path(path)
        key = self.key(path, geometry)
        frames_file, meta_file = self.directory / f"{key}.npy", self.directory / f"{key}.json"
        if frames_file.exists() and meta_file.exists():
            try:
                meta = json.loads(meta_file.read_text())
                frames = np.load(frames_file, mmap_mode="r")
                os.utime(frames_file)  # recently used
                self.hits += 1
                return ResizedVideo(frames, np.array(meta["timestamps"]), tuple(meta["original_size"]))
            except (OSError, ValueError, KeyError):
                pass  # a damaged entry: decode again and overwrite it
        self.misses += 1
        video = read_all_resized(path, geometry, limits)
        if video.frames.nbytes <= self.max_bytes // 4:
            self._store(key, video)
        return video

    def _store(self, key: str, video: ResizedVideo) -> None:
        meta = {"timestamps": video.timestamps.tolist(), "original_size": list(video.original_size)}
        _atomic_write(self.directory / f"{key}.json", json.dumps(meta).encode())
        fd, tmp = tempfile.mkstemp(dir=self.directory, suffix=".tmp")
        with os.fdopen(fd, "wb") as f:
            np.save(f, video.frames)
        os.replace(tmp, self.directory / f"{key}.npy")
        self._evict()

    def size(self) -> int:
        return sum(p.stat().st_size for p in self.directory.glob("*.npy"))

    def _evict(self) -> None:
        entries = sorted(self.directory.glob("*.npy"), key=lambda p: p.stat().st_mtime)
        total = sum(p.stat().st_size for p in entries)
        for entry in entries:
            if total <= self.max_bytes:
                break
            total -= entry.stat().st_size
            entry.unlink(missing_ok=True)
            entry.with_suffix(".json").unlink(missing_ok=True)


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, suffix=".tmp")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, path)
