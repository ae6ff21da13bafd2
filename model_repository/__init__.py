"""The model repository format, torch-free: the pipeline manifest, and a loader that verifies it.

``training/export.py`` writes a repository; the service reads it through :func:`load_pipeline`.
"""

from .loader import LoadedPipeline, ModelRepositoryError, find_pipelines, load_pipeline, sha256_of
from .manifest import MANIFEST_FORMAT, GraphSpec, Manifest, TensorSpec

__all__ = [
    "MANIFEST_FORMAT",
    "GraphSpec",
    "LoadedPipeline",
    "Manifest",
    "ModelRepositoryError",
    "TensorSpec",
    "find_pipelines",
    "load_pipeline",
    "sha256_of",
]
