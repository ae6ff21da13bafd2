"""The pipeline manifest: everything the service needs to run one exported model version.

Layout of a repository (Triton's, plus one manifest per pipeline version)::

    model_repo/
      manifest.schema.json                  # JSON Schema of the manifest (generated from Manifest)
      <name>.v<version>.json                # the pipeline manifest (a top-level file: Triton ignores it)
      <name>_glance/config.pbtxt            # one Triton model per graph ...
      <name>_glance/<version>/model.onnx
      <name>_focus/...
      <name>_classifier/config.pbtxt, labels.txt, <version>/model.onnx

The manifest is the contract between export and serving: frame sampling and geometry,
normalisation, the graphs and their tensors, the exit operating points, GMACs per graph,
the training run it came from, and the sha256 of every file it names.
"""

from __future__ import annotations

import json
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_FORMAT = "adafocus-pipeline/1"

# Where the local network looks, one vocabulary for the model (training) and the manifest:
# the policy's patch, a random patch, the centre patch, the whole frame, nowhere (glance only).
Focus = Literal["policy", "random", "centre", "full_frame", "none"]
# What an exported pipeline can do: a random patch is a training comparison, never served.
ServedFocus = Literal["policy", "centre", "full_frame", "none"]
# The focus kinds that crop a patch (the others see the whole frame, or nothing).
PATCH_FOCUS: tuple[Focus, ...] = ("policy", "random", "centre")


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TensorSpec(_Strict):
    """One graph input or output: name, element type and shape (``"batch"`` marks the dynamic axis)."""

    name: str
    dtype: Literal["float32", "int64"]
    shape: list[int | Literal["batch"]]


class GraphSpec(_Strict):
    """One ONNX graph of the pipeline, as a Triton model of its own."""

    triton_model: str = Field(description="folder of this graph under the repository root")
    file: str = Field(description="the ONNX file, relative to the repository root")
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    gmacs_per_frame: float = Field(ge=0, description="computed from the model by the profiler at export")


class FrameSpec(_Strict):
    """How a video becomes the model's input (the shared ``frames`` pipeline does exactly this)."""

    num_frames: int = Field(gt=0, description="T: frames sampled per video (uniform segments, centre of each)")
    order: list[int] = Field(description="processing order: order[t] is the sampled frame used at step t")
    resize: int = Field(gt=0, description="shorter side after resizing")
    crop: int = Field(gt=0, description="side of the centre square crop (the model's frame size)")
    mean: list[float] = Field(min_length=3, max_length=3, description="RGB mean, on [0, 1] pixels")
    std: list[float] = Field(min_length=3, max_length=3, description="RGB std, on [0, 1] pixels")
    glance_size: int = Field(gt=0)
    patch_size: int | None = Field(description="side of the focus patch; null: the local network sees the full frame")


class OperatingPointSpec(_Strict):
    """A calibrated exit operating point (``pipeline.early_exit.OperatingPoint.as_dict``)."""

    name: str | None = Field(description="the point's own name (full, accurate, balanced, fast) or null")
    names: list[str]
    p: float | None
    thresholds: list[float | Literal["inf", "-inf"]]
    expected_gmacs: float = Field(description="average GMACs per video on the calibration split")
    accuracy: float = Field(description="on the calibration split")
    exit_fractions: list[float]


class SourceRun(_Strict):
    """Where the model came from."""

    run_dir: str
    config: dict
    test_top1: float | None = None
    test_videos: int | None = None


class Manifest(_Strict):
    """One exported pipeline version (``<name>.v<version>.json``)."""

    format: Literal["adafocus-pipeline/1"] = MANIFEST_FORMAT
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: int = Field(ge=1)
    method: Literal["adafocus_v2", "adafocus_v1"]
    variant: str = Field(description="adafocus_v2, or a baseline: full_frame, centre_patch, glance_only")
    focus: ServedFocus = Field(
        description="where the local network looks: the policy's patch, the centre patch, the whole frame, nowhere"
    )
    labels: list[str] = Field(min_length=1)
    multi_label: bool
    frames: FrameSpec
    confidence: Literal["max_prob", "max_logit", "entropy"]
    operating_points: list[OperatingPointSpec] = Field(min_length=1)
    graphs: dict[Literal["glance", "focus", "classifier"], GraphSpec]
    state_sizes: dict[Literal["policy", "classifier"], int]
    gmacs_per_frame: float = Field(description="every graph, one frame")
    source: SourceRun
    files: dict[str, str] = Field(description="sha256 of every file of this version, by path relative to the root")

    @staticmethod
    def file_name(name: str, version: int) -> str:
        return f"{name}.v{version}.json"

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def manifest_schema() -> str:
    """The JSON Schema of :class:`Manifest`, as committed in ``model_repo/manifest.schema.json``."""
    return json.dumps(Manifest.model_json_schema(), indent=2) + "\n"
