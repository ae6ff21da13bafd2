"""Receiving a classify upload under its limits.

One concept: the video's bytes, read from the request body as they stream in, under

- a size limit (``max_upload_mb``): 413 the moment it is passed, for every body form (a raw
  ``video/*`` body, ``multipart/form-data``, with a ``Content-Length`` or chunked);
- a body timeout: 408 when nothing arrives for ``upload_idle_timeout_s``, or when the upload,
  once older than that, averages less than ``upload_min_kb_per_s``;
- an admission limit (``max_uploads`` received at once; when they are all taken, the slowest
  one under the minimum rate is cut for a newcomer, see :class:`UploadGate`) and a memory budget
  (``upload_memory_mb``, the upload bytes all requests hold together, from the first byte
  until the request is done: the decoder session keeps them): 503 with ``Retry-After``.

Multipart bodies are parsed while they stream in (python-multipart's push parser, the one
Starlette uses), keeping only the ``video`` file part, in memory: no temporary file, ever.
The refusals that leave a body unread close the connection (``Connection: close``), so the
rest of it is never read.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import aclosing, asynccontextmanager
from dataclasses import dataclass

from python_multipart import MultipartParser
from python_multipart.exceptions import FormParserError
from python_multipart.multipart import parse_options_header
from starlette.requests import Request
from starlette.types import Message

from .metrics import Metrics
from .problems import Problem, shown
from .settings import Settings

VIDEO_CONTENT_TYPES = ("video/", "application/octet-stream")
# What a multipart body may carry besides the video: boundaries, part headers, small fields.
MULTIPART_OVERHEAD = 64 * 1024
MAX_PARTS = 16  # a form with the video and a few fields; more is not a client of ours
CLOSE = {"Connection": "close"}  # the rest of the body is never read
# How long an upload runs before its rate counts for cutting it to make room for another
# (UploadGate): a second at least, so that a rate measures more than the first packets.
EVICTION_GRACE_S = 1.0


@dataclass(frozen=True)
class UploadLimits:
    """The limits an upload is received under (see the module's docstring)."""

    max_bytes: int
    idle_timeout_s: float
    min_bytes_per_s: float
    max_uploads: int
    memory_bytes: int

    @classmethod
    def from_settings(cls, settings: Settings) -> UploadLimits:
        return cls(
            max_bytes=int(settings.max_upload_mb * 1e6),
            idle_timeout_s=settings.upload_idle_timeout_s,
            min_bytes_per_s=settings.upload_min_kb_per_s * 1e3,
            max_uploads=settings.max_uploads,
            memory_bytes=int(settings.upload_memory_mb * 1e6),
        )


class UploadGate:
    """Admission of uploads, one per app: the uploads being received, and the bytes all
    requests hold, against their limits; both are kept in ``metrics`` (uploads in progress,
    upload bytes held). Used from the event loop only, so it needs no lock.

    When every upload slot is taken, a new upload does not get a 503 while one of them is
    slower than the minimum rate (past :data:`EVICTION_GRACE_S`): the slowest of those is cut
    (408) and its slot goes to the newcomer. So slow-loris connections cannot hold the slots
    for the whole idle timeout; uploads at the minimum rate or better are never cut for another."""

    def __init__(self, limits: UploadLimits, metrics: Metrics) -> None:
        self.limits, self.metrics = limits, metrics
        self.receiving: set[Progress] = set()
        self.held = 0

    def admit(self) -> Progress:
        """One more upload being received (its :class:`Progress`); 503 past ``max_uploads``
        unless a slower one can be cut. :meth:`received` ends it."""
        if len(self.receiving) >= self.limits.max_uploads:
            victim = self._slowest_below_minimum()
            if victim is None:
                raise Problem(
                    503, "Too many uploads", "too many uploads are being received; retry shortly", _retry_and_close()
                )
            self.received(victim)
            victim.evict()
        progress = Progress(self.limits)
        self.receiving.add(progress)
        self.metrics.uploads_in_progress.set(len(self.receiving))
        return progress

    def received(self, progress: Progress) -> None:
        """``progress``'s upload is no longer being received (complete, refused or cut)."""
        self.receiving.discard(progress)
        self.metrics.uploads_in_progress.set(len(self.receiving))

    def _slowest_below_minimum(self) -> Progress | None:
        now = asyncio.get_running_loop().time()
        slow = [p for p in self.receiving if p.age(now) >= EVICTION_GRACE_S and p.too_slow(now)]
        return min(slow, key=lambda p: p.rate(now), default=None)

    def reserve(self, size: int) -> None:
        """Hold ``size`` more bytes; 503 if all uploads together would pass the memory budget."""
        if self.held + size > self.limits.memory_bytes:
            raise Problem(
                503,
                "Upload memory exhausted",
                f"the uploads being served hold {self.held / 1e6:.0f} MB of the service's "
                f"{self.limits.memory_bytes / 1e6:.0f} MB; retry shortly",
                _retry_and_close(),
            )
        self._add(size)

    def release(self, size: int) -> None:
        self._add(-size)

    def _add(self, size: int) -> None:
        self.held += size
        self.metrics.upload_bytes_held.set(self.held)


def _retry_and_close() -> dict[str, str]:
    return {"Retry-After": "1", **CLOSE}


class Reservation:
    """The bytes of one upload held in the gate's budget: grown as the body comes in (its
    declared length up front), settled to the video's size once read, released at the end."""

    def __init__(self, gate: UploadGate) -> None:
        self.gate = gate
        self.size = 0

    def grow_to(self, size: int) -> None:
        if size > self.size:
            self.gate.reserve(size - self.size)
            self.size = size

    def settle(self, size: int) -> None:
        if size < self.size:
            self.gate.release(self.size - size)
            self.size = size
        self.grow_to(size)

    def release(self) -> None:
        self.gate.release(self.size)
        self.size = 0


@asynccontextmanager
async def receive_upload(request: Request, gate: UploadGate) -> AsyncIterator[bytearray]:
    """The request's video (multipart field ``video``, or the whole body with a video content
    type), held in the gate's memory budget until the ``async with`` block ends, on every path.

    Refused: 413 past the size limit, 415 for another content type, 400 for a malformed
    multipart body, 422 without a ``video`` file or for an empty one, 408 for a body too slow,
    503 past ``max_uploads`` or the memory budget."""
    limits = gate.limits
    declared = _declared_length(request)
    if declared is not None and declared > limits.max_bytes + MULTIPART_OVERHEAD:
        raise _too_large(limits.max_bytes)
    reader = _reader_for(request.headers.get("content-type", ""), limits.max_bytes)
    reservation = Reservation(gate)
    progress = gate.admit()
    try:
        try:
            reservation.grow_to(declared or 0)
            async with aclosing(_chunks(request, limits, reservation, progress)) as chunks:
                video = await reader.read(chunks)
        finally:
            gate.received(progress)
        if not video:
            raise Problem(422, "Empty upload", "the uploaded video is empty")
        reservation.settle(len(video))
        yield video
    finally:
        reservation.release()


def _declared_length(request: Request) -> int | None:
    declared = request.headers.get("content-length")
    return int(declared) if declared is not None and declared.isdigit() else None


def _too_large(limit: int) -> Problem:
    return Problem(413, "Video too large", f"the upload exceeds the limit of {limit / 1e6:.0f} MB", CLOSE)


# -- the body as it streams in ----------------------------------------------------------------
class Progress:
    """One upload's progress, and when its next chunk must have come: within the idle timeout
    of the last one, and, once the upload is older than the idle timeout, before its average
    rate falls below the minimum. :meth:`evict` ends the wait at once (with a 408)."""

    def __init__(self, limits: UploadLimits) -> None:
        self.limits = limits
        self.started = self.last = asyncio.get_running_loop().time()
        self.received = 0
        self.waiting: asyncio.Timeout | None = None  # while it waits for a chunk
        self.evicted = False

    def arrived(self, size: int) -> None:
        self.received += size
        self.last = asyncio.get_running_loop().time()

    def age(self, now: float) -> float:
        return now - self.started

    def rate(self, now: float) -> float:
        """Average bytes per second so far."""
        return self.received / max(self.age(now), 1e-9)

    def too_slow(self, now: float) -> bool:
        return self.rate(now) < self.limits.min_bytes_per_s

    def idle_deadline(self) -> float:
        return self.last + self.limits.idle_timeout_s

    def rate_deadline(self) -> float:
        """When the average falls below the minimum (never before the idle timeout)."""
        if self.limits.min_bytes_per_s <= 0:
            return float("inf")
        return self.started + max(self.limits.idle_timeout_s, self.received / self.limits.min_bytes_per_s)

    def deadline(self) -> float:
        return min(self.idle_deadline(), self.rate_deadline())

    def evict(self) -> None:
        """Cut this upload (it is too slow and another needs its slot)."""
        self.evicted = True
        if self.waiting is not None:
            self.waiting.reschedule(asyncio.get_running_loop().time())

    def timed_out(self) -> Problem:
        now = asyncio.get_running_loop().time()
        # Name the rule whose deadline came first, not whichever holds by the time the timer
        # fired (both often do, and which one then depends on the event loop's latency).
        if not self.evicted and self.idle_deadline() <= self.rate_deadline():
            detail = f"nothing was received for {self.limits.idle_timeout_s:g} s"
        else:
            detail = (
                f"the upload averaged {self.rate(now) / 1e3:.3g} KB/s, below the minimum of "
                f"{self.limits.min_bytes_per_s / 1e3:g} KB/s"
            )
            if self.evicted:
                detail += ", and was cut to make room for another upload"
        return Problem(408, "Upload too slow", detail + "; the connection is closed", CLOSE)


async def _chunks(
    request: Request, limits: UploadLimits, reservation: Reservation, progress: Progress
) -> AsyncIterator[bytes]:
    """The body's chunks as they arrive, each counted against the memory budget (503) and the
    body's size limit with a multipart form's overhead (413), under the body timeouts (408)."""
    total = 0
    while True:
        message = await _next_message(request, progress)
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limits.max_bytes + MULTIPART_OVERHEAD:
            raise _too_large(limits.max_bytes)
        reservation.grow_to(total)
        progress.arrived(len(chunk))
        if chunk:
            yield chunk
        if not message.get("more_body", False):
            return


async def _next_message(request: Request, progress: Progress) -> Message:
    try:
        async with asyncio.timeout_at(progress.deadline()) as waiting:
            if progress.evicted:
                raise TimeoutError
            progress.waiting = waiting
            message = await request.receive()
    except TimeoutError:
        raise progress.timed_out() from None
    finally:
        progress.waiting = None
    if message["type"] == "http.disconnect":
        raise Problem(400, "Upload interrupted", "the client closed the connection before the upload was complete")
    return message


# -- the body's forms -------------------------------------------------------------------------
class _RawBody:
    """A whole body that is the video (``video/*``, ``application/octet-stream``)."""

    def __init__(self, limit: int) -> None:
        self.limit = limit

    async def read(self, chunks: AsyncIterator[bytes]) -> bytearray:
        video = bytearray()
        async for chunk in chunks:
            video += chunk
            if len(video) > self.limit:
                raise _too_large(self.limit)
        return video


def _reader_for(content_type: str, limit: int) -> _RawBody | _MultipartBody:
    """How the body is read, from its content type (case-insensitive); 415 for another, 400
    for a multipart one without a boundary."""
    media_type = content_type.split(";", 1)[0].strip().lower()
    if media_type == "multipart/form-data":
        boundary = parse_options_header(content_type)[1].get(b"boundary")
        if not boundary:
            raise Problem(400, "Malformed multipart body", "a multipart/form-data body needs a boundary parameter")
        return _MultipartBody(boundary, limit)
    if media_type.startswith(VIDEO_CONTENT_TYPES):
        return _RawBody(limit)
    raise Problem(
        415, "Unsupported media type", f"expected multipart/form-data or a video/* body, got {shown(content_type)}"
    )


class _MultipartBody:
    """A ``multipart/form-data`` body, parsed as it streams in: the ``video`` file part is kept
    in memory; every other part is read past and dropped. One file at most (400 for a second)."""

    def __init__(self, boundary: bytes, limit: int) -> None:
        self.boundary, self.limit = boundary, limit
        self.video: bytearray | None = None
        self.target: bytearray | None = None  # where the current part's data goes (None: dropped)
        self.parts = self.files = 0
        self.field, self.value = bytearray(), bytearray()
        self.headers: dict[bytes, bytes] = {}
        self.ended = False

    async def read(self, chunks: AsyncIterator[bytes]) -> bytearray:
        try:
            parser = MultipartParser(self.boundary, self._callbacks())
            async for chunk in chunks:
                parser.write(chunk)
        except FormParserError as error:
            raise Problem(400, "Malformed multipart body", f"the multipart body cannot be parsed: {error}") from None
        if not self.ended:
            raise Problem(400, "Malformed multipart body", "the multipart body ended before its closing boundary")
        if self.video is None:
            raise Problem(422, "No video", "send the video as the multipart field 'video' (a file)")
        return self.video

    def _callbacks(self) -> dict:
        return {
            "on_part_begin": self._part_begin,
            "on_header_field": lambda data, start, end: self.field.extend(memoryview(data)[start:end]),
            "on_header_value": lambda data, start, end: self.value.extend(memoryview(data)[start:end]),
            "on_header_end": self._header_end,
            "on_headers_finished": self._headers_finished,
            "on_part_data": self._part_data,
            "on_end": self._end,
        }

    def _part_begin(self) -> None:
        self.parts += 1
        if self.parts > MAX_PARTS:
            raise Problem(400, "Malformed multipart body", f"a form of more than {MAX_PARTS} parts")
        self.headers, self.target = {}, None

    def _header_end(self) -> None:
        self.headers[bytes(self.field).lower()] = bytes(self.value)
        self.field.clear()
        self.value.clear()

    def _headers_finished(self) -> None:
        _, options = parse_options_header(self.headers.get(b"content-disposition"))
        if b"filename" not in options:
            return  # a plain field: dropped
        self.files += 1
        if self.files > 1:
            raise Problem(400, "Too many files", "send one file, the multipart field 'video'")
        if options.get(b"name") == b"video":
            self.video = self.target = bytearray()

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self.target is None:
            return
        self.target += memoryview(data)[start:end]
        if len(self.target) > self.limit:
            raise _too_large(self.limit)

    def _end(self) -> None:
        self.ended = True
