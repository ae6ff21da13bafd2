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
the training run it came from, the sha256 of every file it names, and (optional) the outputs
on a fixed computed clip that the service checks before serving the model (``reference``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from pipeline.frames.sampling import Samples

MANIFEST_FORMAT = "adafocus-pipeline/1"

# Where the local network looks, one vocabulary for the model (training) and the manifest:
# the policy's patch, a random patch, the centre patch, a patch on the ground-truth target
# (the oracle of a benchmark with target boxes), the whole frame, nowhere (glance only).
Focus = Literal["policy", "random", "centre", "oracle", "full_frame", "none"]
# What an exported pipeline can do: random and oracle patches are training comparisons, never served.
ServedFocus = Literal["policy", "centre", "full_frame", "none"]
# The focus kinds that crop a patch (the others see the whole frame, or nothing).
PATCH_FOCUS: tuple[Focus, ...] = ("policy", "random", "centre", "oracle")
# How a model consumes time: ``streaming``, a step per frame with running states and early
# exit (glance, focus and classifier graphs); ``whole_clip``, one pass over every sampled
# frame (a bidirectional temporal shift needs them all before any answer: the ``clip`` graph).
Temporal = Literal["streaming", "whole_clip"]
GRAPHS_OF: dict[str, set[str]] = {"streaming": {"glance", "focus", "classifier"}, "whole_clip": {"clip"}}


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


class SampleSet(_Strict):
    """One set of frames a whole-clip model samples on its own (TSN segment centres)."""

    segments: int = Field(gt=0, description="frames of this set: the centres of this many equal segments")
    network: Literal["glance", "focus"] = Field(description="the network that sees these frames")


class FrameSpec(_Strict):
    """How a video becomes the model's input (the shared ``frames`` pipeline does exactly this)."""

    num_frames: int = Field(gt=0, description="T: frames sampled per video (uniform segments, centre of each)")
    sets: list[SampleSet] | None = Field(
        None,
        description=(
            "frame sets sampled separately, their frames concatenated in this order (a whole-clip TSM "
            "model: its glance frames, then its focus frames); null: one set of num_frames segments"
        ),
    )
    order: list[int] = Field(
        description="processing order: order[t] is the sampled frame used at step t (whole clip: all, in one step)"
    )
    resize: int = Field(gt=0, description="shorter side after resizing")
    crop: int = Field(gt=0, description="side of the centre square crop (the model's frame size)")
    mean: list[float] = Field(min_length=3, max_length=3, description="RGB mean, on [0, 1] pixels")
    std: list[float] = Field(min_length=3, max_length=3, description="RGB std, on [0, 1] pixels")
    glance_size: int = Field(gt=0)
    patch_size: int | None = Field(description="side of the focus patch; null: the local network sees the full frame")

    @model_validator(mode="after")
    def _sets_fit(self) -> FrameSpec:
        if self.sets is not None and sum(s.segments for s in self.sets) != self.num_frames:
            sizes = [s.segments for s in self.sets]
            raise ValueError(f"frame sets of {sizes} frames do not add up to {self.num_frames}")
        if sorted(self.order) != list(range(self.num_frames)):
            raise ValueError(f"order must be a permutation of 0..{self.num_frames - 1}")
        return self

    @property
    def samples(self) -> Samples:
        """What the decoder samples (``pipeline.frames.sampling.sample_indices``)."""
        return self.num_frames if self.sets is None else tuple(s.segments for s in self.sets)

    def network_of(self, position: int) -> str | None:
        """The network that sees sample ``position`` of a model with frame sets (None: every one)."""
        if self.sets is None:
            return None
        end = 0
        for frame_set in self.sets:
            end += frame_set.segments
            if position < end:
                return frame_set.network
        raise IndexError(f"sample {position} of {self.num_frames}")


class OperatingPointSpec(_Strict):
    """A calibrated exit operating point (``pipeline.early_exit.OperatingPoint.as_dict``)."""

    name: str | None = Field(description="the point's own name (full, accurate, balanced, fast) or null")
    names: list[str]
    p: float | None
    thresholds: list[float | Literal["inf", "-inf"]]
    expected_gmacs: float = Field(description="average GMACs per video on the calibration split")
    accuracy: float | None = Field(
        description="on the calibration split; null: not measured (an imported model's points before calibration)"
    )
    exit_fractions: list[float]


class SourceRun(_Strict):
    """Where the model came from."""

    run_dir: str
    config: dict
    test_top1: float | None = None
    test_videos: int | None = None


REFERENCE_INPUT = "adafocus-reference/1"


def reference_clip(frames: FrameSpec, formula: str = REFERENCE_INPUT) -> np.ndarray:
    """The reference clip of a pipeline: ``(num_frames, crop, crop, 3)`` uint8 crops, indexed by
    sample position, as the decoder hands them to the step loop.

    ``adafocus-reference/1``: pixel ``[t, y, x, c] = (x (2c + 3) + y (c + 5) + 29 t
    + 64 ((x // 16 + y // 16 + t) mod 2)) mod 256``: ramps in every channel under a
    checkerboard that moves with t. Integer arithmetic only, so every machine and numpy version
    computes the same bytes (a random generator's stream, or a float ``sin``, could change).
    """
    if formula != REFERENCE_INPUT:
        raise ValueError(f"unknown reference input {formula!r} (known: {REFERENCE_INPUT})")
    t, y, x, c = np.ogrid[0 : frames.num_frames, 0 : frames.crop, 0 : frames.crop, 0:3]
    pixels = (x * (2 * c + 3) + y * (c + 5) + 29 * t + 64 * ((x // 16 + y // 16 + t) % 2)) % 256
    return np.ascontiguousarray(pixels, dtype=np.uint8)


class ReferenceOutputs(_Strict):
    """What the pipeline computes on its reference clip (:func:`reference_clip`), recorded at export
    with ONNX Runtime on CPU: every step run (``OnnxPipeline.run_clip`` without exit). The
    service runs the same clip at warm-up and serves the model only if its outputs match."""

    input: Literal["adafocus-reference/1"] = Field(
        REFERENCE_INPUT, description="the reference clip's formula (pipeline.manifest.reference_clip)"
    )
    step_logits: list[list[float]] = Field(min_length=1, description="logits after each step, in processing order")
    logits: list[float] = Field(description="the final logits (the last step's)")
    atol: float = Field(gt=0, description="absolute tolerance of the comparison")
    rtol: float = Field(ge=0, description="relative tolerance: |got - expected| <= atol + rtol |expected|")

    @model_validator(mode="after")
    def _final_is_last(self) -> ReferenceOutputs:
        if self.logits != self.step_logits[-1]:
            raise ValueError("logits must be the last step's logits")
        return self

    def mismatch(self, step_logits: Sequence[np.ndarray]) -> str | None:
        """None if ``step_logits`` (one row per step) match within the tolerance, else where they differ most."""
        if len(step_logits) != len(self.step_logits):
            return f"{len(step_logits)} steps computed, {len(self.step_logits)} recorded"
        got = np.asarray([np.asarray(row, dtype=np.float64).ravel() for row in step_logits])
        expected = np.asarray(self.step_logits, dtype=np.float64)
        if got.shape != expected.shape:
            return f"logits of shape {got.shape}, {expected.shape} recorded"
        excess = np.abs(got - expected) - (self.atol + self.rtol * np.abs(expected))
        if not np.isfinite(got).all() or (excess > 0).any():
            step, label = np.unravel_index(int(np.argmax(np.where(np.isfinite(got), excess, np.inf))), got.shape)
            return (
                f"step {step}, logit {label}: {got[step, label]:.5g} against {expected[step, label]:.5g} "
                f"(tolerance {self.atol:g} + {self.rtol:g} x |expected|)"
            )
        return None


class Manifest(_Strict):
    """One exported pipeline version (``<name>.v<version>.json``)."""

    format: Literal["adafocus-pipeline/1"] = MANIFEST_FORMAT
    name: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
    version: int = Field(ge=1)
    method: Literal["adafocus_v2", "adafocus_v1"]
    temporal: Temporal = Field(
        "streaming",
        description=(
            "streaming: one step per frame (running states, early exit); whole_clip: one pass over every "
            "sampled frame (the clip graph), no early exit"
        ),
    )
    variant: str = Field(description="adafocus_v2, or a baseline: full_frame, centre_patch, glance_only")
    focus: ServedFocus = Field(
        description="where the local network looks: the policy's patch, the centre patch, the whole frame, nowhere"
    )
    labels: list[str] = Field(min_length=1)
    multi_label: bool
    frames: FrameSpec
    confidence: Literal["max_prob", "max_logit", "entropy"]
    operating_points: list[OperatingPointSpec] = Field(min_length=1)
    graphs: dict[Literal["glance", "focus", "classifier", "clip"], GraphSpec]
    state_sizes: dict[Literal["policy", "classifier"], int]
    gmacs_per_frame: float = Field(
        description="every graph, one frame (a whole-clip model: its pass over a clip over num_frames)"
    )
    precision: Literal["fp32", "int8"] = Field(
        "fp32", description="int8: the CNN graphs statically quantized (training/exporter/quantize.py)"
    )
    source: SourceRun
    files: dict[str, str] = Field(description="sha256 of every file of this version, by path relative to the root")
    reference: ReferenceOutputs | None = Field(
        None, description="outputs on a fixed computed clip, checked before the model is served (optional)"
    )

    @property
    def num_steps(self) -> int:
        """Steps of a full run: one per frame, or the one pass of a whole-clip model."""
        return 1 if self.temporal == "whole_clip" else self.frames.num_frames

    @model_validator(mode="after")
    def _graphs_fit(self) -> Manifest:
        needed, present = GRAPHS_OF[self.temporal], set(self.graphs)
        if self.temporal == "whole_clip":
            fits = present == needed
        else:  # a baseline may lack a graph (glance only has no focus), never the classifier
            fits = present <= needed and "classifier" in present
        if not fits:
            raise ValueError(f"a {self.temporal} pipeline has graphs {sorted(needed)}, got {sorted(present)}")
        for point in self.operating_points:
            if len(point.thresholds) != self.num_steps:
                raise ValueError(
                    f"operating point {point.name or point.p}: {len(point.thresholds)} thresholds for "
                    f"{self.num_steps} steps"
                )
        return self

    @model_validator(mode="after")
    def _reference_fits(self) -> Manifest:
        if self.reference is not None:
            steps, width = len(self.reference.step_logits), {len(row) for row in self.reference.step_logits}
            if steps != self.num_steps or width != {len(self.labels)}:
                raise ValueError(
                    f"reference: {steps} steps of {sorted(width)} logits, expected {self.num_steps} "
                    f"of {len(self.labels)}"
                )
        return self

    @staticmethod
    def file_name(name: str, version: int) -> str:
        return f"{name}.v{version}.json"

    def to_json(self) -> str:
        return json.dumps(self.model_dump(mode="json"), indent=2) + "\n"


def manifest_schema() -> str:
    """The JSON Schema of :class:`Manifest`, as committed in ``model_repo/manifest.schema.json``."""
    return json.dumps(Manifest.model_json_schema(), indent=2) + "\n"
