"""Errors as RFC 9457 problem details (``application/problem+json``).

Every error answer of the API is one: the service's own (:class:`Problem`), the frames'
typed errors, request validation, Starlette's HTTP errors (404, 405, a malformed multipart
body's 400) and, last, any unexpected exception (a 500 that says nothing of it but the
request id; the exception is logged with its traceback)."""

from __future__ import annotations

import logging
from http import HTTPStatus

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from pipeline.frames.errors import VideoError

from .metrics import labels_of

PROBLEM_JSON = "application/problem+json"

logger = logging.getLogger(__name__)


def shown(value: str, limit: int = 40) -> str:
    """A client's value, quoted, cut to ``limit`` characters (an answer never echoes much)."""
    return repr(value if len(value) <= limit else value[:limit] + "...")


class Problem(Exception):
    """An error answered with ``status`` and a problem+json body that says what was wrong."""

    def __init__(self, status: int, title: str, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(detail)
        self.status, self.title, self.detail, self.headers = status, title, detail, headers or {}


def problem_response(request: Request, status: int, title: str, detail: str, headers=None) -> JSONResponse:
    body = {
        "type": "about:blank",
        "title": title,
        "status": status,
        "detail": detail,
        "instance": request.url.path,
        "request_id": getattr(request.state, "request_id", None),
    }
    metrics = getattr(request.app.state, "metrics", None)
    if metrics is not None:  # by kind, and by the request's model ("none" before one was chosen)
        metrics.count_error(labels_of(request.scope.get("state")), title)
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def handle_problem(request: Request, error: Problem) -> JSONResponse:
    return problem_response(request, error.status, error.title, error.detail, error.headers)


async def handle_video_error(request: Request, error: VideoError) -> JSONResponse:
    # Each frames error carries its HTTP status and title (frames/errors.py).
    return problem_response(request, error.status, error.title, str(error))


async def handle_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
    return problem_response(request, 422, "Invalid request", problems)


async def handle_http_exception(request: Request, error: HTTPException) -> JSONResponse:
    # Starlette's own errors (no route, wrong method, a multipart body it cannot parse), with
    # their headers (405's Allow).
    title = HTTPStatus(error.status_code).phrase
    detail = error.detail if isinstance(error.detail, str) and error.detail else title
    return problem_response(request, error.status_code, title, detail, error.headers)


async def handle_unexpected_error(request: Request, error: Exception) -> JSONResponse:
    """Any other exception: a 500 with the request id and nothing of the exception (it is logged).

    Called by the request-id middleware (service/middleware.py); also registered with Starlette
    for an error outside that middleware, where Starlette calls it from its outermost
    middleware, so the ``X-Request-ID`` header is set here too."""
    request_id = getattr(request.state, "request_id", None)
    logger.error(
        "unexpected error answering %s %s (request id %s)", request.method, request.url.path, request_id, exc_info=error
    )
    detail = "an unexpected error occurred on the server"
    if request_id is not None:
        detail += f"; quote the request id {request_id} when reporting it"
    headers = {"X-Request-ID": request_id} if request_id is not None else None
    return problem_response(request, 500, "Internal server error", detail, headers)
