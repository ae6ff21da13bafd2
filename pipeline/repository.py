"""Find, validate and verify exported pipelines in a model repository (shared by the service)."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from .manifest import Manifest

_MANIFEST_NAME = re.compile(r"^(?P<name>[A-Za-z0-9][A-Za-z0-9_.-]*)\.v(?P<version>[0-9]+)\.json$")


class ModelRepositoryError(Exception):
    """A missing, corrupt or mismatched file in the model repository; the message says which."""


@dataclass(frozen=True)
class LoadedPipeline:
    """A verified pipeline version: its manifest and the absolute paths of its graphs."""

    root: Path
    manifest: Manifest

    def graph_path(self, graph: str) -> Path:
        return self.root / self.manifest.graphs[graph].file


def sha256_of(path: Path, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def find_pipelines(root: str | Path) -> dict[str, list[int]]:
    """``{name: [versions, ascending]}`` of the manifests under ``root`` (not verified)."""
    found: dict[str, list[int]] = {}
    for path in sorted(Path(root).glob("*.v*.json")):
        match = _MANIFEST_NAME.match(path.name)
        if match:
            found.setdefault(match["name"], []).append(int(match["version"]))
    return {name: sorted(versions) for name, versions in found.items()}


def _read_manifest(path: Path) -> Manifest:
    try:
        data = json.loads(path.read_text())
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
        raise ModelRepositoryError(f"manifest {path} cannot be read as JSON: {error}") from error
    try:
        return Manifest.model_validate(data)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or '(top level)'}: {e['msg']}" for e in error.errors()[:5]
        )
        raise ModelRepositoryError(f"manifest {path} is invalid: {problems}") from error


def _verify_files(root: Path, manifest: Manifest) -> None:
    for graph, spec in manifest.graphs.items():
        if spec.file not in manifest.files:
            raise ModelRepositoryError(
                f"{manifest.name} v{manifest.version}: graph {graph} ({spec.file}) has no checksum"
            )
    for relative, expected in manifest.files.items():
        path = root / relative
        if not path.is_file():
            raise ModelRepositoryError(f"{manifest.name} v{manifest.version}: missing file {path}")
        actual = sha256_of(path)
        if actual != expected:
            raise ModelRepositoryError(
                f"{manifest.name} v{manifest.version}: {path} is corrupt or was replaced "
                f"(sha256 {actual[:12]}..., manifest says {expected[:12]}...); export the model again"
            )
        if path.name == "labels.txt" and path.read_text().splitlines() != manifest.labels:
            raise ModelRepositoryError(f"{path} does not list the manifest's labels")


def load_pipeline(root: str | Path, name: str, version: int | None = None) -> LoadedPipeline:
    """The verified pipeline ``name`` (its latest version unless ``version`` is given).

    Raises :class:`ModelRepositoryError` on a missing manifest, an invalid one, a missing file,
    a checksum mismatch, or a manifest whose name or version disagrees with its file name.
    """
    root = Path(root)
    if not root.is_dir():
        raise ModelRepositoryError(f"model repository {root} does not exist")
    available = find_pipelines(root)
    if name not in available or (version is not None and version not in available[name]):
        listing = ", ".join(f"{n} (versions {', '.join(map(str, v))})" for n, v in available.items()) or "none"
        wanted = name if version is None else f"{name} version {version}"
        raise ModelRepositoryError(f"no pipeline {wanted} in {root}; available: {listing}")
    version = version if version is not None else available[name][-1]
    manifest = _read_manifest(root / Manifest.file_name(name, version))
    if (manifest.name, manifest.version) != (name, version):
        raise ModelRepositoryError(
            f"{Manifest.file_name(name, version)} describes {manifest.name} v{manifest.version}, not {name} v{version}"
        )
    _verify_files(root, manifest)
    return LoadedPipeline(root, manifest)
