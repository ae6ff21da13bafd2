"""The output of a job: a folder of parts, each a complete Parquet or JSONL file of rows.

The driver writes rows as they arrive, a part every ``flush_rows`` rows or ``flush_s``
seconds. A part is written under a hidden name (``.part-....tmp``) and renamed when complete,
so a part is either whole or absent: a crash or a kill loses the rows not yet in a part (at
most a flush's worth, and those in flight), never a written one. A rerun reads the paths of
every part (:func:`done_paths`) and skips them. The folder may be on object storage (any
pyarrow filesystem URI); the folder, read as a Parquet dataset, is the whole result.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterable
from typing import Any, Literal

import pyarrow as pa
import pyarrow.parquet as pq
from pyarrow import fs

Format = Literal["parquet", "jsonl"]
FORMATS: tuple[Format, ...] = ("parquet", "jsonl")
SUFFIX = {"parquet": ".parquet", "jsonl": ".jsonl"}

# One row per input. ``status`` is "ok" or the problem's title (the service's problem+json
# ``title``: "Unsupported video format", "Video too large", ...); ``http_status`` the service's
# answer's status code for it.
SCHEMA = pa.schema(
    [
        ("path", pa.string()),
        ("status", pa.string()),
        ("http_status", pa.int32()),
        ("detail", pa.string()),
        ("model", pa.string()),
        ("version", pa.int32()),
        ("operating_point", pa.string()),
        ("labels", pa.list_(pa.string())),
        ("scores", pa.list_(pa.float64())),
        ("exit_step", pa.int32()),
        ("frames_processed", pa.int32()),
        ("frames_sampled", pa.int32()),
        ("frames_decoded", pa.int32()),
        ("gmacs", pa.float64()),
        ("video_frames", pa.int32()),
        ("width", pa.int32()),
        ("height", pa.int32()),
        ("decode_s", pa.float64()),
        ("glance_s", pa.float64()),
        ("focus_s", pa.float64()),
        ("classify_s", pa.float64()),
    ]
)


def filesystem_of(folder: str) -> tuple[fs.FileSystem, str]:
    """The pyarrow filesystem of ``folder`` (a local path or a URI) and the path in it."""
    if "://" in folder:
        return fs.FileSystem.from_uri(folder)
    return fs.LocalFileSystem(), os.path.abspath(folder)


def _parts(filesystem: fs.FileSystem, folder: str) -> list[fs.FileInfo]:
    """The complete parts in ``folder`` (not the hidden ones being written), of either format."""
    info = filesystem.get_file_info(folder)
    if info.type == fs.FileType.NotFound:
        return []
    found = filesystem.get_file_info(fs.FileSelector(folder, recursive=False))
    return sorted(
        (item for item in found if item.base_name.startswith("part-") and item.extension in ("parquet", "jsonl")),
        key=lambda item: item.path,
    )


def done_paths(folder: str) -> set[str]:
    """The input paths that already have a row in ``folder``."""
    filesystem, root = filesystem_of(folder)
    done: set[str] = set()
    for part in _parts(filesystem, root):
        if part.extension == "parquet":
            done.update(pq.read_table(part.path, columns=["path"], filesystem=filesystem).column("path").to_pylist())
        else:
            done.update(row["path"] for row in _json_rows(filesystem, part.path))
    return done


def read_rows(folder: str) -> list[dict[str, Any]]:
    """Every row of the output in ``folder`` (a test's or a small job's whole result)."""
    filesystem, root = filesystem_of(folder)
    rows: list[dict[str, Any]] = []
    for part in _parts(filesystem, root):
        if part.extension == "parquet":
            rows += pq.read_table(part.path, filesystem=filesystem).to_pylist()
        else:
            rows += _json_rows(filesystem, part.path)
    return rows


def _json_rows(filesystem: fs.FileSystem, path: str) -> list[dict[str, Any]]:
    with filesystem.open_input_stream(path) as stream:
        return [json.loads(line) for line in stream.read().decode().splitlines() if line.strip()]


class PartWriter:
    """Buffers rows and writes them as parts of ``folder`` (see the module's docstring)."""

    def __init__(self, folder: str, format: Format = "parquet", flush_rows: int = 256, flush_s: float = 10.0) -> None:
        self.filesystem, self.folder = filesystem_of(folder)
        self.filesystem.create_dir(self.folder, recursive=True)
        self.format, self.flush_rows, self.flush_s = format, flush_rows, flush_s
        self.run_id = f"{time.strftime('%Y%m%dT%H%M%S')}-{uuid.uuid4().hex[:8]}"  # parts of reruns never collide
        self.buffer: list[dict[str, Any]] = []
        self.parts = 0
        self.rows = 0
        self._last_flush = time.monotonic()

    def add(self, rows: Iterable[dict[str, Any]]) -> None:
        """Add rows; a part is written once enough rows, or enough time, have gathered."""
        self.buffer.extend(rows)
        due = time.monotonic() - self._last_flush >= self.flush_s
        if len(self.buffer) >= self.flush_rows or (due and self.buffer):
            self.flush()

    def flush(self) -> None:
        """Write the buffered rows as one complete part (nothing if there are none)."""
        self._last_flush = time.monotonic()
        if not self.buffer:
            return
        name = f"part-{self.run_id}-{self.parts:05d}{SUFFIX[self.format]}"
        final, hidden = f"{self.folder}/{name}", f"{self.folder}/.{name}.tmp"
        with self.filesystem.open_output_stream(hidden) as stream:
            if self.format == "parquet":
                pq.write_table(pa.Table.from_pylist(self.buffer, schema=SCHEMA), stream)
            else:
                stream.write("".join(json.dumps(row) + "\n" for row in self.buffer).encode())
        self.filesystem.move(hidden, final)  # a rename on local disks: the part appears whole
        self.parts += 1
        self.rows += len(self.buffer)
        self.buffer = []
