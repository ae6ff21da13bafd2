"""Decoding in separate processes, so that a hostile file can crash or hang only a worker.

Each request's video is opened once, in one worker, as a :class:`pipeline.frames.decode.ClipReader`
(a *session*): the early-exit loop asks for its samples a few at a time and the worker
decodes on from where it stopped. Uploads stay in memory (bounded by the upload limit; no
temporary file) and go to the worker once. A worker that crashes is replaced and the request
it was decoding gets a 422; one that outlives the hard deadline is killed and replaced and
the request gets a 504. Other sessions of a replaced worker are opened again in its
successor at their next read, transparently, and a session whose worker is stalled on
another request's file moves to another worker.

The event loop only awaits: it talks to each worker over the worker's socket with asyncio
streams, in the framing of ``multiprocessing.connection`` (which the worker side keeps), so
an exchange costs no thread hop. An upload goes to its worker as raw bytes after the message
that opens it (no pickled copy of it on the event loop). Frames come back as uint8 crops (a
quarter of the bytes of normalised ones); the batch that runs them normalises them with
the model's own statistics (``pipeline.onnx_steps.run_step``).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import itertools
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.connection import Connection
from typing import Any, Protocol

import numpy as np

from pipeline.frames.decode import Clip, ClipReader
from pipeline.frames.limits import DecodeLimits
from pipeline.frames.transform import FrameGeometry

from .problems import Problem

# The frames pipeline stops itself at its own deadline (DecodeTimeoutError, 504); this margin
# is the backstop for a decoder stuck inside FFmpeg, where no Python code runs.
HARD_DEADLINE_MARGIN_S = 5.0
# A stage normally takes milliseconds; a worker busy with one exchange for this long holds a
# slow (or hostile) file, and the videos waiting for it move to another worker.
STALLED_AFTER_S = 0.5
# The stream reader's buffer: a reply of a few hundred kB arrives without pausing the socket.
STREAM_LIMIT = 1 << 24


def open_reader(data: bytes, num_samples: int, geometry: FrameGeometry, limits: DecodeLimits) -> ClipReader:
    """What a worker runs to open a session (module-level, so a worker can unpickle it)."""
    return ClipReader(io.BytesIO(data), num_samples, geometry, limits, threads=1)


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.dumps(error)
        return error
    except Exception:
        return RuntimeError(repr(error))


def _serve(connection: Connection) -> None:
    """A worker's loop: one message at a time, sessions kept open between reads.

    Messages: ``("read", id, opening, positions, previews)`` -> ``("ok", Clip)`` (uint8
    crops) or ``("error", exception)``, where ``opening`` is ``(open_function, args)`` when the
    session is not open here yet, followed by the video's bytes as a message of their own
    (``open_function(data, *args)``); ``("close", id)`` (no reply); ``("ping",)`` -> ``("ok", None)``;
    ``("count",)`` -> ``("ok", open sessions)``. The loop ends when the server closes its end.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server, which stops us
    sessions: dict[int, Any] = {}

    def end(session_id: int) -> None:
        reader = sessions.pop(session_id, None)
        if reader is not None:
            reader.close()

    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return  # the server has gone
        kind = message[0]
        if kind == "close":
            end(message[1])
            continue
        if kind == "ping":
            connection.send(("ok", None))
            continue
        if kind == "count":
            connection.send(("ok", len(sessions)))
            continue
        _, session_id, opening, positions, previews = message
        try:
            if opening is not None:
                open_function, args = opening
                data = connection.recv_bytes()  # always read it: the next message comes after it
                sessions[session_id] = open_function(data, *args)
            # uint8 crops, normalised by the server: a quarter of the bytes through the pipe
            reply = ("ok", sessions[session_id].read(positions, previews, normalised=False))
        except Exception as error:  # a bad file: the request gets the error, the session ends
            end(session_id)
            reply = ("error", _picklable(error))
        connection.send(reply)


def _raw_frame(data: bytes) -> list[bytes]:
    """``data`` as ``multiprocessing.connection.Connection.recv_bytes`` reads it: a big-endian
    4-byte length (or -1 and an 8-byte length past 2 GiB), then the bytes themselves."""
    size = len(data)
    header = struct.pack("!i", size) if size <= 0x7FFFFFFF else struct.pack("!iQ", -1, size)
    return [header, data]


def _frame(message: tuple) -> list[bytes]:
    """``message`` as ``Connection.recv`` reads it: the raw frame of its pickle."""
    return _raw_frame(pickle.dumps(message, protocol=pickle.HIGHEST_PROTOCOL))


def socket_of(connection: Connection) -> socket.socket:
    """``connection``'s socket as a ``socket.socket`` for asyncio streams (it takes a duplicate
    of the descriptor and closes ``connection``)."""
    sock = socket.socket(fileno=os.dup(connection.fileno()))
    connection.close()
    return sock


async def _read_framed(reader: asyncio.StreamReader) -> Any:
    """One message in ``Connection.send``'s framing (raises ``asyncio.IncompleteReadError``,
    an ``EOFError``, when the other side is gone)."""
    (size,) = struct.unpack("!i", await reader.readexactly(4))
    if size == -1:
        (size,) = struct.unpack("!Q", await reader.readexactly(8))
    return pickle.loads(await reader.readexactly(size))


class _Worker:
    """The server's handle on one decoder process: its socket (as asyncio streams, opened on
    first use on the running loop), and a lock that keeps one message in flight at a time.
    ``open_ids`` mirrors the sessions the process holds open."""

    def __init__(self, context) -> None:
        self.context = context
        self.lock = asyncio.Lock()
        self.open_ids: set[int] = set()
        self.sessions = 0  # sessions assigned here (to spread new ones)
        self.busy_since: float | None = None  # when the exchange in flight started
        self._start()

    def _start(self) -> None:
        ours, theirs = self.context.Pipe()  # duplex: a Unix socket pair
        self.process = self.context.Process(target=_serve, args=(theirs,), daemon=True, name="decoder")
        self.process.start()
        theirs.close()
        self._socket = socket_of(ours)
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None

    async def _open_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            self._streams = await asyncio.open_unix_connection(sock=self._socket, limit=STREAM_LIMIT)
        return self._streams

    def stalled(self, now: float) -> bool:
        return self.busy_since is not None and now - self.busy_since > STALLED_AFTER_S

    def _close_socket(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
        else:
            self._socket.close()

    def replace(self) -> None:
        """Kill the process (a hung decoder ignores everything else) and start a new one."""
        self.process.kill()
        self.process.join()
        self._close_socket()
        self.open_ids.clear()  # its successor holds nothing: sessions open again at their next read
        self._start()

    async def exchange(self, message: tuple, timeout_s: float, data: bytes | None = None) -> tuple[str, Any]:
        """Send ``message`` (and ``data`` after it, raw) and wait for the reply. Raises
        ``TimeoutError``, or ``EOFError``/``OSError`` when the process died."""
        reader, writer = await self._open_streams()
        async with asyncio.timeout(timeout_s):
            writer.writelines(_frame(message) + (_raw_frame(data) if data is not None else []))
            await writer.drain()
            return await _read_framed(reader)

    async def send(self, message: tuple) -> None:
        """Send a message that has no reply (a process that died finds out at the next exchange)."""
        _, writer = await self._open_streams()
        if not writer.is_closing():
            writer.writelines(_frame(message))

    async def stop(self) -> None:
        """Close the socket (the worker's loop ends at the end of its input), then wait for it."""
        self._close_socket()
        if self._streams is not None:
            with contextlib.suppress(OSError):  # closed for real: the worker sees the end now
                await self._streams[1].wait_closed()
        await asyncio.to_thread(self.process.join, 2.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join()


class DecoderPool:
    """Decoder processes with crash and hang recovery; :meth:`session` opens a video."""

    def __init__(self, workers: int, limits: DecodeLimits, open_function: Callable[..., Any] = open_reader) -> None:
        self.limits = limits
        # Module-level, so that the workers can unpickle it; tests swap in hostile stand-ins.
        self.open_function = open_function
        context = multiprocessing.get_context("forkserver")  # no fork under ONNX Runtime's threads
        self._workers = [_Worker(context) for _ in range(workers)]
        self._ids = itertools.count()
        self._background: set[asyncio.Task] = set()

    @property
    def hard_deadline_s(self) -> float:
        return (self.limits.max_wall_s or 60.0) + HARD_DEADLINE_MARGIN_S

    def session(self, data: bytes, num_samples: int, geometry: FrameGeometry) -> DecodeSession:
        """A video to read in stages, in the worker with the fewest open sessions."""
        worker = self._least_loaded()
        worker.sessions += 1
        opening = (self.open_function, (num_samples, geometry, self.limits))
        return DecodeSession(self, worker, next(self._ids), opening, data)

    def _least_loaded(self) -> _Worker:
        now = time.monotonic()
        candidates = [w for w in self._workers if not w.stalled(now)] or self._workers
        return min(candidates, key=lambda w: w.sessions)

    def _unstall(self, session: DecodeSession) -> None:
        """Move ``session`` off a stalled worker: it opens again elsewhere (the server holds its
        bytes), rather than waiting behind another request's slow file."""
        if not session.worker.stalled(time.monotonic()):
            return
        target = self._least_loaded()
        if target is not session.worker:
            session.worker.sessions -= 1
            target.sessions += 1
            session.worker = target

    async def _exchange(self, worker: _Worker, message: tuple, data: bytes | None = None) -> tuple[str, Any]:
        """Send ``message`` and wait for the reply; call with ``worker.lock`` held. A crashed or
        hung worker is replaced, and the caller gets a 422 or a 504."""
        worker.busy_since = time.monotonic()
        try:
            return await worker.exchange(message, self.hard_deadline_s, data)
        except TimeoutError:
            worker.replace()
            raise Problem(
                504, "Decoding timed out", f"the decoder did not finish within {self.hard_deadline_s:.0f} s"
            ) from None
        except (EOFError, OSError):
            worker.replace()
            raise Problem(422, "Undecodable video", "the decoder crashed on this file") from None
        finally:
            worker.busy_since = None

    @staticmethod
    async def _shielded(exchange: Awaitable[tuple[str, Any]]) -> Any:
        """Run a locked exchange to its end even if the caller is cancelled: a reply left in
        the pipe would be read as the next request's. Returns the payload or raises the error."""
        task = asyncio.ensure_future(exchange)
        task.add_done_callback(lambda t: t.cancelled() or t.exception())  # retrieved if abandoned
        status, payload = await asyncio.shield(task)
        if status == "error":
            raise payload
        return payload

    async def _read(self, worker: _Worker, session: DecodeSession, positions: list[int], previews: bool) -> Clip:
        """Samples of ``session`` from ``worker``, opening it there first (its upload sent
        along) if it is not open."""
        session_id = session.id

        async def exchange() -> tuple[str, Any]:
            async with worker.lock:
                if session_id in worker.open_ids:
                    message, data = ("read", session_id, None, positions, previews), None
                else:
                    message, data = ("read", session_id, session.opening, positions, previews), session.data
                reply = await self._exchange(worker, message, data)
                if reply[0] == "ok":
                    worker.open_ids.add(session_id)
                else:
                    worker.open_ids.discard(session_id)  # the process ended it
                return reply

        return await self._shielded(exchange())

    def _forget(self, worker: _Worker, session_id: int) -> None:
        """Close ``session_id`` in ``worker``, in the background (no reply to wait for; a
        worker that does not have it ignores it)."""

        async def send_close() -> None:
            async with worker.lock:
                worker.open_ids.discard(session_id)
                await worker.send(("close", session_id))

        task = asyncio.get_running_loop().create_task(send_close())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def open_sessions(self) -> list[int]:
        """How many videos each worker holds open (a check that closed ones are gone)."""

        async def count(worker: _Worker) -> tuple[str, Any]:
            async with worker.lock:
                return await self._exchange(worker, ("count",))

        return [await self._shielded(count(worker)) for worker in self._workers]

    async def warm_up(self) -> None:
        """Wait until every worker has started (and imported PyAV)."""
        for worker in self._workers:
            async with worker.lock:
                await self._exchange(worker, ("ping",))

    async def close(self) -> None:
        await asyncio.gather(*(worker.stop() for worker in self._workers))


class DecodeSession:
    """One request's video, open in one decoder worker; see :meth:`DecoderPool.session`."""

    def __init__(self, pool: DecoderPool, worker: _Worker, session_id: int, opening: tuple, data: bytes) -> None:
        self.pool, self.worker, self.id = pool, worker, session_id
        self.opening, self.data = opening, data  # kept: a replaced worker's successor opens it again
        self._sent_to: set[_Worker] = set()  # workers that may hold it (closed at the end)
        self.closed = False

    async def read(self, positions: Sequence[int], previews: bool = False) -> Clip:
        """Samples ``positions``; raises ``VideoError`` or a ``Problem``."""
        if self.closed:
            raise RuntimeError("read from a closed decode session")
        self.pool._unstall(self)
        self._sent_to.add(self.worker)
        return await self.pool._read(self.worker, self, list(positions), previews)

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.worker.sessions -= 1
            for worker in self._sent_to:
                self.pool._forget(worker, self.id)


class ClipSession(Protocol):
    """What :class:`LazyClip` reads from (a :class:`DecodeSession`, or a stand-in in tests)."""

    async def read(self, positions: Sequence[int], previews: bool = False) -> Clip: ...

    def close(self) -> None: ...


def decode_schedule(order: Sequence[int]) -> list[list[int]]:
    """Sample positions grouped into decode calls, in the order the step loop asks for them.

    Step 0 alone, then step 1, then blocks that double: ``[0], [1], [2, 3], [4..7], [8..15]``.
    The worker decodes on from where the previous call stopped, so a video that exits at
    step k costs the frames up to the end of k's stage (at most about twice those up to step
    k), one that never exits costs one full decode, and a clip takes about log2(T) round trips.
    """
    stages: list[list[int]] = []
    start = 0
    while start < len(order):
        size = max(1, start)
        stages.append(list(order[start : start + size]))
        start += size
    return stages


class LazyClip:
    """A request's video, decoded as the step loop asks for its samples.

    With ``order`` (the positions in step order) the samples are read in the stages of
    :func:`decode_schedule`, so frames after an early exit are mostly never decoded; without
    it (no early exit possible) every sample is read in one call at the first request. The
    samples are the same, bit for bit, as a full decode (``read_clip``). With ``previews``,
    each decoded sample also comes with a JPEG of its whole frame (web page). :meth:`close`
    it when the request is done.
    """

    def __init__(
        self,
        session: ClipSession,
        num_samples: int,
        previews: bool = False,
        order: Sequence[int] | None = None,
    ) -> None:
        self.session, self.num_samples = session, num_samples
        self.want_previews = previews
        self.stages = decode_schedule(order) if order is not None else [list(range(num_samples))]
        self.previews: dict[int, bytes] = {}
        self.frames: dict[int, np.ndarray] = {}
        self.frame_indices: dict[int, int] = {}
        self.timestamps: dict[int, float] = {}
        self.original_size: tuple[int, int] = (0, 0)
        self.num_frames = 0
        self.decoded_frames = 0
        self.decodes = 0

    def _stage_of(self, position: int) -> list[int]:
        stage = next((stage for stage in self.stages if position in stage), [position])
        return [p for p in stage if p not in self.frames]

    async def frame(self, position: int) -> np.ndarray:
        """Sample ``position`` as a ``(1, S, S, 3)`` uint8 crop (``run_step`` normalises it)."""
        if position not in self.frames:
            wanted = self._stage_of(position)
            clip = await self.session.read(wanted, self.want_previews)
            for row, p in enumerate(wanted):
                self.frames[p] = clip.frames[row : row + 1]
                if clip.previews is not None:
                    self.previews[p] = clip.previews[row]
                self.frame_indices[p] = int(clip.frame_indices[row])
                self.timestamps[p] = float(clip.timestamps[row])
            self.original_size, self.num_frames = clip.original_size, clip.num_frames
            self.decoded_frames += clip.decoded_frames
            self.decodes += 1
        return self.frames[position]

    def close(self) -> None:
        self.session.close()
