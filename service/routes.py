"""HTTP endpoint POST /v1/classify (alias /classify).

Only the HTTP lives here: admission and the query options. Receiving the upload under its
limits is ``uploads.py``'s; a classify request's work is :func:`service.classify.classify_video`'s.
Health, readiness, metrics and the model list are in ``operations.py``.

A request is admitted in this order: ready (503), its model (404) and exit (422), then its
upload (``uploads.receive_upload``: 413, 415, 400, 408, 503 past ``max_uploads`` or the upload
memory budget), and only once the upload is complete a slot among ``max_in_flight`` (503):
a slow upload never holds a decode or inference slot."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from pipeline.frames.sampling import Sampling

from .classify import ClassifyRequest, choose_exit, classify_video, default_exit
from .dependencies import DecoderDep, MetricsDep, RegistryDep, SettingsDep, UploadGateDep, require_api_key
from .metrics import MODEL_LABELS_KEY, model_labels
from .problems import Problem
from .registry import ModelRegistry, ServedModel
from .schemas import ClassifyResponse
from .uploads import receive_upload

router = APIRouter()

# The dependencies (service/dependencies.py) are ``async def``: FastAPI runs plain ``def`` ones
# in a worker thread, a thread hop per dependency per request (about 20 per classify request).

CLASSIFY_PATHS = ("/v1/classify", "/classify")  # the route and its alias (the latency metric times both)

# The classify routes read their body themselves (uploads.receive_upload: the limits hold while
# it streams in; an UploadFile parameter would spool the whole upload first), so FastAPI cannot
# see it: this is what /openapi.json says of it, and what lets /docs send a file.
# A file field as FastAPI writes an UploadFile's (contentMediaType, OpenAPI 3.1), and with
# OpenAPI 3.0's format too: Swagger UI shows a file picker for either.
_FILE = {"type": "string", "format": "binary", "contentMediaType": "application/octet-stream"}
_RAW = {"type": "string", "format": "binary"}  # a whole body; its media type is the content's key
VIDEO_BODY: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "description": "the video: the multipart field `video`, or the whole body with a video/* content type",
        "content": {
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"video": _FILE}, "required": ["video"]},
            },
            "video/*": {"schema": _RAW},
            "application/octet-stream": {"schema": _RAW},
        },
    }
}


def served_model(request: Request, registry: ModelRegistry, name: str | None, version: int | None) -> ServedModel:
    """The model a request names (the default one if none); 404 if it is not served. Its name
    and version label the request's metrics from here on (service/metrics.py)."""
    try:
        served = registry.get(name, version)
    except KeyError as error:
        raise Problem(404, "Unknown model", str(error.args[0])) from None
    setattr(request.state, MODEL_LABELS_KEY, model_labels(served.name, served.version))  # scope["state"]
    return served


# What both classify paths share; see VIDEO_BODY and schemas.py.
_CLASSIFY_ROUTE: dict[str, Any] = {
    "dependencies": [Depends(require_api_key)],
    "response_model": ClassifyResponse,
    "response_model_exclude_unset": True,  # absent, not null: a thumbnail not asked for (schemas.py)
    "openapi_extra": VIDEO_BODY,
}


@router.post("/v1/classify", summary="classify an uploaded video with early exit", **_CLASSIFY_ROUTE)
async def classify(
    request: Request,
    settings: SettingsDep,
    registry: RegistryDep,
    decoder: DecoderDep,
    metrics: MetricsDep,
    uploads: UploadGateDep,
    top_k: Annotated[int, Query(ge=1, le=1000)] = 5,
    exit: Annotated[
        str | None,
        Query(
            description="off, an operating point's name, or a GMACs-per-video budget "
            "(a finite positive number, at least the cheapest point's cost)"
        ),
    ] = None,
    model: Annotated[str | None, Query(description="pipeline name (default: the service's default)")] = None,
    version: Annotated[int | None, Query(ge=1)] = None,
    thumbnails: Annotated[
        bool, Query(description="add a small JPEG (data URL) of each processed frame, uncropped")
    ] = False,
    sampling: Annotated[
        Sampling,
        Query(
            description="uniform: the segment centres the model was trained on; keyframes: each sample moved to "
            "its nearest keyframe, only keyframes decoded (cheaper; less accurate, few keyframes give few distinct "
            "frames: docs/benchmarks/keyframes.md)"
        ),
    ] = "uniform",
) -> ClassifyResponse:
    if not registry.ready:
        raise Problem(503, "Not ready", "models are still loading", {"Retry-After": "5"})
    served = served_model(request, registry, model, version)
    # A bad option is refused before the upload.
    chosen = choose_exit(served, exit) if exit else default_exit(served, settings.default_exit)
    async with receive_upload(request, uploads) as video:
        if metrics.in_flight >= settings.max_in_flight:
            raise Problem(503, "Overloaded", "too many requests in flight; retry shortly", {"Retry-After": "1"})
        metrics.enter()
        try:
            job = ClassifyRequest(
                model=served,
                video=video,
                exit=chosen,
                top_k=top_k,
                thumbnails=thumbnails,
                request_id=request.state.request_id,
                sampling=sampling,
            )
            return await classify_video(job, decoder, metrics)
        finally:
            metrics.leave()


# The path before /v1, for the clients written against it: the same handler, documented as
# deprecated so that /docs sends new clients to /v1/classify.
router.add_api_route(
    "/classify",
    classify,
    methods=["POST"],
    summary="classify an uploaded video (deprecated alias of POST /v1/classify)",
    deprecated=True,
    **_CLASSIFY_ROUTE,
)
