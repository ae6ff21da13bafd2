"""Errors as RFC 9457 problem details (``application/problem+json``)."""

from __future__ import annotations

from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from pipeline.frames.errors import VideoError

PROBLEM_JSON = "application/problem+json"


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
    if metrics is not None:
        metrics.errors.labels(title).inc()
    return JSONResponse(body, status_code=status, media_type=PROBLEM_JSON, headers=headers)


async def handle_problem(request: Request, error: Problem) -> JSONResponse:
    return problem_response(request, error.status, error.title, error.detail, error.headers)


async def handle_video_error(request: Request, error: VideoError) -> JSONResponse:
    # Each frames error carries its HTTP status and title (frames/errors.py).
    return problem_response(request, error.status, error.title, str(error))


async def handle_validation_error(request: Request, error: RequestValidationError) -> JSONResponse:
    problems = "; ".join(f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()[:5])
    return problem_response(request, 422, "Invalid request", problems)
