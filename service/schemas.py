"""The API's answers as pydantic models, so that ``/openapi.json`` (and ``/docs``) document them.

``POST /v1/classify`` answers a :class:`ClassifyResponse`, ``GET /v1/models`` a
:class:`ModelsResponse`. A field that is absent from an answer (a thumbnail not asked for,
the time of a frame never decoded) is left unset and the routes leave unset fields out
(``response_model_exclude_unset``): the JSON has no such key rather than a ``null``.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field, create_model

from pipeline.frames.sampling import Sampling
from pipeline.manifest import Manifest


class ModelRef(BaseModel):
    """The pipeline version that answered."""

    name: str
    version: int


class LabelScore(BaseModel):
    label: str
    score: float = Field(description="softmax probability (per-label sigmoid for a multi-label model)")


class ExitSummary(BaseModel):
    """Where the step loop stopped, and what it cost in frames."""

    operating_point: str | None = Field(description="the operating point as asked for; null with exit=off")
    step: int = Field(description="the step (0-based) whose scores are the answer")
    frame_index: int = Field(
        description="index in the video of the frame processed at that step (a whole-clip model: its latest sample)"
    )
    time_s: float = Field(description="its timestamp")
    frames_processed: int
    frames_sampled: int = Field(description="the frames a full run would process (the manifest's num_frames)")
    frames_decoded: int = Field(description="frames the decoder decoded to reach them (seeking skips some)")


class Gmacs(BaseModel):
    """Compute, in GMACs per video."""

    spent: float = Field(description="the processed frames")
    full_model: float = Field(description="every sampled frame")


class FocusBox(BaseModel):
    """The focus patch in pixels of the video as displayed: ``[x, x + width) x [y, y + height)``."""

    x: float
    y: float
    width: float
    height: float


class ProcessedFrame(BaseModel):
    step: int
    frame_index: int
    time_s: float
    box: FocusBox | None = Field(description="where the local network looked; null: the whole frame, or nowhere")
    thumbnail: str | None = Field(None, description="JPEG data URL of the whole frame; only with thumbnails=true")


class SkippedFrame(BaseModel):
    """A sampled frame after the exit: never processed, and decoded only if it shared a decode stage."""

    step: int
    decoded: bool
    frame_index: int = Field(description="where it is (or, not decoded, would be) in the video")
    time_s: float | None = Field(None, description="only if it was decoded")
    thumbnail: str | None = Field(None, description="only if it was decoded, with thumbnails=true")


class VideoInfo(BaseModel):
    width: int = Field(description="as displayed (rotation applied)")
    height: int
    frames: int = Field(description="frames in the video (counted or estimated by the decoder)")


class StageTimings(BaseModel):
    """Seconds this request spent in each stage (a batched step's time shared as the batch spent it)."""

    decode: float
    glance: float
    focus: float
    classify: float


class ClassifyResponse(BaseModel):
    """What ``POST /v1/classify`` answers."""

    model: ModelRef
    request_id: str = Field(description="also the X-Request-ID response header")
    labels: list[LabelScore] = Field(description="the top_k labels, best first")
    exit: ExitSummary
    gmacs: Gmacs
    frames: list[ProcessedFrame] = Field(
        description="the processed frames, in step order (a whole-clip model: every sample at step 0, in sample order)"
    )
    skipped_frames: list[SkippedFrame] = Field(description="the sampled frames after the exit, in step order")
    video: VideoInfo
    sampling: Sampling = Field(
        "uniform",
        description="how the samples were chosen: uniform (segment centres, as trained) or keyframes "
        "(each moved to its nearest keyframe)",
    )
    timings_s: StageTimings


def _manifest_fields(*excluded: str) -> dict[str, Any]:
    """The manifest's fields (types, defaults, descriptions) but ``excluded``, for ``create_model``:
    the served answer follows the manifest as it changes."""
    return {name: (field.annotation, field) for name, field in Manifest.model_fields.items() if name not in excluded}


# Checksums and the training run stay private: a client needs neither to call the model. The
# reference outputs are the service's own check at start-up (and 80 numbers per model).
_PRIVATE_FIELDS = ("files", "source", "reference")
_ADDED_FIELDS = ("providers", "status")

ServedPipeline = create_model(
    "ServedPipeline",
    __doc__="A served pipeline version: its manifest without checksums and source run, and its providers.",
    **_manifest_fields(*_PRIVATE_FIELDS),
    providers=(list[str], Field(description="ONNX Runtime execution providers its sessions run on, preferred first")),
    status=(Literal["available"], Field("available", description="always available: see `unavailable`")),
)


def served_pipeline(manifest: Manifest, providers: list[str]) -> BaseModel:
    """``manifest`` as ``GET /v1/models`` lists it."""
    fields = {name: getattr(manifest, name) for name in ServedPipeline.model_fields if name not in _ADDED_FIELDS}
    return ServedPipeline(**fields, providers=providers)


class UnavailablePipeline(BaseModel):
    """A pipeline version of the repository that is not served: it failed verification (a missing
    or corrupt file), ONNX Runtime refused it, or its warm-up failed or differed from its reference."""

    name: str
    version: int | None = Field(description="null: the settings name a pipeline the repository does not have")
    status: Literal["unavailable"] = "unavailable"
    reason: str = Field(description="why, in one line (also logged at start-up)")


class ModelsResponse(BaseModel):
    """What ``GET /v1/models`` answers."""

    models: list[ServedPipeline]  # type: ignore[valid-type]  # a model built by create_model
    unavailable: list[UnavailablePipeline] = Field(
        default_factory=list, description="versions that could not be served, with the reason (requests get 503)"
    )


class ReadinessResponse(BaseModel):
    """What ``GET /readyz`` answers (200 when ready, 503 otherwise). The model lists are left out
    when an API key is set and the models are not public (``ADAFOCUS_PUBLIC_ENDPOINTS``)."""

    status: Literal["ready", "loading", "not ready"]
    reason: str | None = Field(None, description="why it is not ready (ADAFOCUS_READY_WHEN)")
    models: list[str] | None = Field(None, description="the served versions, as 'name vN'")
    unavailable: list[UnavailablePipeline] | None = None
