"""HTTP endpoint POST /v1/classify (alias /classify).

Only the HTTP lives here (admission, the upload under its size limit, the query options);
a classify request's work is :func:`service.classify.classify_video`'s. Health, readiness,
metrics and the model list are in ``operations.py``."""

from __future__ import annotations

from functools import partial
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request

from .classify import ClassifyRequest, classify_video
from .dependencies import DecoderDep, MetricsDep, RegistryDep, SettingsDep, require_api_key
from .metrics import MODEL_LABELS_KEY, model_labels
from .problems import Problem
from .registry import ModelRegistry, ServedModel
from .schemas import ClassifyResponse

router = APIRouter()

# The dependencies (service/dependencies.py) are ``async def``: FastAPI runs plain ``def`` ones
# in a worker thread, a thread hop per dependency per request (about 20 per classify request).

VIDEO_CONTENT_TYPES = ("video/", "application/octet-stream")
CLASSIFY_PATHS = ("/v1/classify", "/classify")  # the route and its alias (the latency metric times both)

# The classify routes read their body themselves (read_video: the size limit holds while it
# streams in; an UploadFile parameter would spool the whole upload first), so FastAPI cannot
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


async def _read_limited(chunks, limit: int) -> bytes:
    data = bytearray()
    async for chunk in chunks:
        data += chunk
        if len(data) > limit:
            raise Problem(413, "Video too large", f"the upload exceeds the limit of {limit / 1e6:.0f} MB")
    return bytes(data)


async def read_video(request: Request, limit: int) -> bytes:
    """The uploaded video: multipart field ``video``, or the raw body with a video content type.

    Counted as it is read: an upload over ``limit`` bytes is refused (413) once it passes the
    limit, never held in memory whole. An empty one is refused (422)."""
    data = await _read_body(request, limit)
    if not data:
        raise Problem(422, "Empty upload", "the uploaded video is empty")
    return data


async def _read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit + 64 * 1024:
        raise Problem(413, "Video too large", f"the upload exceeds the limit of {limit / 1e6:.0f} MB")
    content_type = request.headers.get("content-type", "")
    media_type = content_type.split(";", 1)[0].strip().lower()  # media types are case-insensitive
    if media_type == "multipart/form-data":
        form = await request.form(max_files=1, max_fields=8)
        upload = form.get("video")
        if upload is None or isinstance(upload, str):
            raise Problem(422, "No video", "send the video as the multipart field 'video'")

        async def chunks():
            while chunk := await upload.read(1 << 20):
                yield chunk

        try:
            return await _read_limited(chunks(), limit)
        finally:
            await upload.close()
    if not media_type.startswith(VIDEO_CONTENT_TYPES):
        raise Problem(
            415, "Unsupported media type", f"expected multipart/form-data or a video/* body, got {content_type!r}"
        )
    return await _read_limited(request.stream(), limit)


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
) -> ClassifyResponse:
    if not registry.ready:
        raise Problem(503, "Not ready", "models are still loading", {"Retry-After": "5"})
    if metrics.in_flight >= settings.max_in_flight:
        raise Problem(503, "Overloaded", "too many requests in flight; retry shortly", {"Retry-After": "1"})
    metrics.enter()
    try:
        job = ClassifyRequest(
            model=served_model(request, registry, model, version),
            upload=partial(read_video, request, int(settings.max_upload_mb * 1e6)),
            exit=exit or settings.default_exit,
            top_k=top_k,
            thumbnails=thumbnails,
            request_id=request.state.request_id,
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
