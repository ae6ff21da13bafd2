"""The videos a job classifies, and how a decode task opens one.

``INPUT`` is a folder (every video file under it, recursively), a ``.txt`` list (one path a
line) or ``.csv`` list (the ``path`` column, else the first), or a glob (``clips/**/*.mp4``).
A URI (``s3://bucket/prefix``, ``gs://...``, ``file:///...``) is read through pyarrow's
filesystems, the same three ways. Paths in a list are relative to the list's folder. Local
paths are made absolute, so a rerun from another folder finds the rows it already wrote.
"""

from __future__ import annotations

import csv
import fnmatch
import glob
import io
from pathlib import Path
from typing import BinaryIO

from pipeline.frames.errors import VideoTooLargeError

# What a folder or a glob over a folder yields (case-insensitive); a list names files itself.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".mkv", ".webm", ".avi", ".3gp")
LIST_EXTENSIONS = (".txt", ".csv")
_GLOB_CHARACTERS = set("*?[")


def is_uri(path: str) -> bool:
    """Whether ``path`` names a filesystem by scheme (``s3://...``), not a local path."""
    return "://" in path


def _filesystem(uri: str):
    """``(pyarrow filesystem, path in it)`` for a URI."""
    from pyarrow import fs

    return fs.FileSystem.from_uri(uri)


def _prefix_of(uri: str) -> str:
    """``s3://bucket/a/b`` -> ``s3://``: what turns a path in the filesystem back into a URI."""
    return uri.split("://", 1)[0] + "://"


def list_inputs(spec: str, extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[str]:
    """The video paths (or URIs) ``spec`` names, sorted and without repeats.

    Raises ``FileNotFoundError`` when ``spec`` is none of the three kinds of input."""
    if is_uri(spec):
        return sorted(set(_list_uri(spec, extensions)))
    if _GLOB_CHARACTERS & set(spec):
        found = (Path(p) for p in glob.glob(spec, recursive=True))
        return sorted({str(p.resolve()) for p in found if p.is_file() and _wanted(p.name, extensions)})
    path = Path(spec)
    if path.is_dir():
        return sorted(str(p.resolve()) for p in path.rglob("*") if p.is_file() and _wanted(p.name, extensions))
    if path.is_file() and path.suffix.lower() in LIST_EXTENSIONS:
        entries = _entries(path.read_text(), path.suffix)
        return sorted({entry if is_uri(entry) else str((path.parent / entry).resolve()) for entry in entries})
    raise FileNotFoundError(f"{spec} is not a folder, a .txt or .csv list of videos, or a glob that matches any")


def _wanted(name: str, extensions: tuple[str, ...]) -> bool:
    return not extensions or name.lower().endswith(tuple(e.lower() for e in extensions))


def _entries(text: str, suffix: str) -> list[str]:
    """The paths of a list file: a ``.txt`` line each (``#`` comments and blanks skipped), or a
    ``.csv``'s ``path`` column (its first column without such a header)."""
    if suffix.lower() == ".txt":
        return [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    rows = [row for row in csv.reader(io.StringIO(text)) if row and row[0].strip()]
    if not rows:
        return []
    header = [cell.strip().lower() for cell in rows[0]]
    if "path" in header:
        column = header.index("path")
        return [row[column].strip() for row in rows[1:] if len(row) > column]
    return [row[0].strip() for row in rows]


def _list_uri(uri: str, extensions: tuple[str, ...]) -> list[str]:
    from pyarrow import fs

    filesystem, path = _filesystem(uri)
    prefix = _prefix_of(uri)
    pattern = None
    if _GLOB_CHARACTERS & set(path):  # list from the folder before the first wildcard, then match
        pattern = path
        path = path[: min(path.index(c) for c in _GLOB_CHARACTERS if c in path)].rsplit("/", 1)[0]
    info = filesystem.get_file_info(path)
    if info.type == fs.FileType.File and pattern is None:
        if Path(path).suffix.lower() not in LIST_EXTENSIONS:
            return [prefix + path]  # one video
        with filesystem.open_input_stream(path) as stream:
            text = stream.read().decode()
        folder = path.rsplit("/", 1)[0]
        return [entry if is_uri(entry) else f"{prefix}{folder}/{entry}" for entry in _entries(text, Path(path).suffix)]
    if info.type != fs.FileType.Directory:
        raise FileNotFoundError(f"{uri} is not a folder, a .txt or .csv list of videos, or a glob that matches any")
    found = filesystem.get_file_info(fs.FileSelector(path, recursive=True))
    return [
        prefix + item.path
        for item in found
        if item.type == fs.FileType.File
        and (fnmatch.fnmatch(item.path, pattern) if pattern is not None else _wanted(item.base_name, extensions))
    ]


def size_of(path: str) -> int:
    """The size of a video in bytes (``OSError`` if it cannot be read)."""
    if not is_uri(path):
        return Path(path).stat().st_size
    filesystem, inner = _filesystem(path)
    info = filesystem.get_file_info(inner)
    if info.size is None:
        raise FileNotFoundError(f"no file {path}")
    return info.size


def open_video(path: str, max_bytes: int | None = None) -> str | BinaryIO:
    """What the frame pipeline reads: a local path as it is (the pipeline checks its size), an
    object's bytes in memory, as the service holds an upload. An object over ``max_bytes`` is
    refused before a byte of it is fetched (``VideoTooLargeError``, the service's 413)."""
    if not is_uri(path):
        return path
    if max_bytes is not None and (size := size_of(path)) > max_bytes:
        raise VideoTooLargeError(f"{size} bytes; the limit is {max_bytes}")
    filesystem, inner = _filesystem(path)
    with filesystem.open_input_file(inner) as handle:
        return io.BytesIO(handle.read())
