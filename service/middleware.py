"""Request ids, request latency and the last-resort 500 answer, as plain ASGI middleware.

Starlette's ``@app.middleware("http")`` (BaseHTTPMiddleware) runs every request through an
extra task and memory streams; measured on the 2-core bench, that was a visible share of a
request's CPU time, so this one only wraps ``send``.
"""

from __future__ import annotations

import re
import time
import uuid
from collections.abc import Callable

from starlette.datastructures import Headers, MutableHeaders
from starlette.requests import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .metrics import ModelLabels, labels_of
from .problems import handle_unexpected_error

# A request id taken from a client: bounded and safe to echo (headers, bodies, logs).
REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,128}")


def request_id_of(headers: Headers) -> str:
    """The client's ``X-Request-ID`` if it is up to 128 characters of ``[A-Za-z0-9._-]``,
    otherwise a fresh one."""
    given = headers.get("x-request-id")
    if given is not None and REQUEST_ID.fullmatch(given):
        return given
    return uuid.uuid4().hex


class RequestIdMiddleware:
    """Gives every HTTP request an id (``X-Request-ID``, taken from the request if it has a
    safe one, see :func:`request_id_of`; in ``request.state.request_id`` and the response
    header) and reports the latency and status of the paths in ``timed_paths`` to
    ``observe(model, status, seconds)``, ``model`` the labels of the model the request was
    given (``request.state.model_labels``; ``NO_MODEL`` if it failed before one was chosen).

    An exception that escapes the app before its answer has started is answered here, as a
    500 problem (:func:`service.problems.handle_unexpected_error`, which logs it). Starlette's
    own last-resort handler would answer the same but then re-raise the exception to the
    server, which logs its traceback a second time."""

    def __init__(
        self, app: ASGIApp, observe: Callable[[ModelLabels, int, float], None], timed_paths: tuple[str, ...]
    ) -> None:
        self.app = app
        self.observe = observe
        self.timed_paths = timed_paths

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request_id = request_id_of(Headers(scope=scope))
        state = scope.setdefault("state", {})
        state["request_id"] = request_id
        started = time.perf_counter()
        status = 500  # if the app fails before it answers

        async def send_with_id(message: Message) -> None:
            nonlocal status, started_answer
            if message["type"] == "http.response.start":
                status, started_answer = message["status"], True
                MutableHeaders(scope=message)["X-Request-ID"] = request_id  # set, never twice
            await send(message)

        started_answer = False
        try:
            await self.app(scope, receive, send_with_id)
        except Exception as error:
            if started_answer:
                raise  # too late for an answer: the server logs it and closes the connection
            response = await handle_unexpected_error(Request(scope, receive), error)
            await response(scope, receive, send_with_id)
        finally:
            if scope["path"] in self.timed_paths:
                self.observe(labels_of(state), status, time.perf_counter() - started)
