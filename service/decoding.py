"""Decoding in separate processes, so that a hostile file can crash or hang only a worker.

Each request's video is opened once, in one worker, as a :class:`pipeline.frames.decode.ClipReader`
(a *session*): the early-exit loop asks for its samples a few at a time and the worker
decodes on from where it stopped. Uploads stay in memory (bounded by the upload limit; no
temporary file) and go to the worker once.

Recovery. A worker that dies during an exchange is logged (its pid, exit code or signal,
the session), counted (``adafocus_decoder_restarts_total{cause="crash"}``) and replaced,
and the read is tried once more in the new process: a file that crashes a fresh decoder
too is the file's fault (422); a death the file does not reproduce (killed from outside,
out of memory) costs the request nothing. When the retry cannot be made (the pool is
closing, the new process does not start) the answer is 503 with ``Retry-After``. A worker
that outlives the hard deadline is killed and replaced (504, cause ``timeout``). Other
sessions of a replaced worker are opened again in its successor at their next read,
transparently, and a session whose worker is stalled on another request's file moves to
another worker.

Recycling. Decoders keep the memory FFmpeg took for their largest videos. A worker that has
opened ``max_videos`` videos, or whose resident memory (read after every exchange, and
reported as ``adafocus_decoder_rss_bytes{worker}``) passes ``max_rss_bytes``, is *draining*:
new sessions go to other workers, and once its last session closes it is replaced (cause
``recycled``). Requests in flight on it are never interrupted.

Open decoders. A video read in stages keeps its decoder (reference frames, frame buffers:
about 30 MB at 1080p) between stages, while its request waits for the model. With
``max_open_per_worker``, a video takes one of ``workers x max_open_per_worker`` decoder
slots before its first read and gives it back once every sample is read (the reader then
closes its decoder) or the request ends; more videos wait for a slot, holding only their
upload. A worker decodes one video at a time, so a few open videos per worker keep it busy.

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
import logging
import multiprocessing
import os
import pickle
import signal
import socket
import struct
import time
from collections.abc import Awaitable, Callable, Sequence
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Any, Protocol

import numpy as np

from pipeline.frames.decode import Clip, ClipReader, LoopFilterSkip
from pipeline.frames.limits import DecodeLimits
from pipeline.frames.sampling import Samples, Sampling
from pipeline.frames.transform import FrameGeometry

from .memory import release_freed_memory_eagerly, return_freed_memory
from .metrics import Metrics
from .problems import Problem

log = logging.getLogger(__name__)

# The frames pipeline stops itself at its own deadline (DecodeTimeoutError, 504); this margin
# is the backstop for a decoder stuck inside FFmpeg, where no Python code runs.
HARD_DEADLINE_MARGIN_S = 5.0
# A stage normally takes milliseconds; a worker busy with one exchange for this long holds a
# slow (or hostile) file, and the videos waiting for it move to another worker.
STALLED_AFTER_S = 0.5
# The stream reader's buffer: a reply of a few hundred kB arrives without pausing the socket.
STREAM_LIMIT = 1 << 24
# A dead worker has usually exited by the time its socket reads as closed: wait this long
# for its exit status (the cause we log) before killing it.
EXIT_WAIT_S = 0.2
RETRY_AFTER = {"Retry-After": "1"}
# A new process (forkserver, then PyAV's import) may take seconds to answer on a loaded
# machine: its first exchange waits for it this long, outside any video's decode deadline.
STARTUP_TIMEOUT_S = 60.0


class WorkerDied(Exception):
    """A decoder process ended during an exchange (the pool decides what the request gets)."""


def process_rss_bytes(pid: int) -> int | None:
    """Resident memory of process ``pid`` (Linux's ``/proc``; None where it cannot be read)."""
    try:
        with open(f"/proc/{pid}/status", "rb") as status:
            for line in status:
                if line.startswith(b"VmRSS:"):
                    return int(line.split()[1]) * 1024  # in kB
    except (OSError, ValueError, IndexError):
        pass
    return None


def exit_cause(process: BaseProcess) -> str:
    """How ``process`` ended, in words: ``exit code 1``, ``signal SIGKILL``, or still running."""
    code = process.exitcode
    if code is None:
        return "still running"
    if code < 0:
        try:
            return f"signal {signal.Signals(-code).name}"
        except ValueError:
            return f"signal {-code}"
    return f"exit code {code}"


def open_reader(
    data: bytes,
    num_samples: Samples,
    geometry: FrameGeometry,
    limits: DecodeLimits,
    sampling: Sampling = "uniform",
    skip_loop_filter: LoopFilterSkip = "none",
    need_probability: Sequence[float] | None = None,
    hwaccel: str | None = None,
) -> ClipReader:
    """What a worker runs to open a session (module-level, so a worker can unpickle it)."""
    options = {
        "sampling": sampling,
        "skip_loop_filter": skip_loop_filter,
        "need_probability": need_probability,
        "hwaccel": hwaccel,
    }
    return ClipReader(io.BytesIO(data), num_samples, geometry, limits, threads=1, **options)


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.dumps(error)
        return error
    except Exception:
        return RuntimeError(repr(error))


def _serve(connection: Connection, release_freed_memory: bool = False) -> None:
    """A worker's loop: one message at a time, sessions kept open between reads.

    Messages: ``("read", id, opening, positions, previews)`` -> ``("ok", Clip)`` (uint8
    crops) or ``("error", exception)``, where ``opening`` is ``(open_function, args)`` when the
    session is not open here yet, followed by the video's bytes as a message of their own
    (``open_function(data, *args)``); ``("close", id)`` (no reply); ``("ping",)`` -> ``("ok", None)``;
    ``("count",)`` -> ``("ok", open sessions)``. The loop ends when the server closes its end.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the server, which stops us
    if release_freed_memory:  # FFmpeg's 3 MB frame buffers: service.memory
        release_freed_memory_eagerly()
    sessions: dict[int, Any] = {}

    def end(session_id: int) -> None:
        reader = sessions.pop(session_id, None)
        if reader is not None:
            reader.close()
            return_freed_memory()

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
        try:
            connection.send(reply)
        except OSError:
            return  # the server closed our socket while we worked (shutdown, or it gave up on us)


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
    ``open_ids`` mirrors the sessions the process holds open; ``videos`` counts the videos
    it has opened, ``rss`` its resident memory after its last exchange. ``process`` is None
    while no process runs (one that could not be started is tried again at the next use)."""

    def __init__(self, context, index: int, release_freed_memory: bool = False) -> None:
        self.context = context
        self.index = index
        self.release_freed_memory = release_freed_memory  # service.memory.release_freed_memory_eagerly in the process
        self.lock = asyncio.Lock()
        self.open_ids: set[int] = set()
        self.sessions = 0  # sessions assigned here (to spread new ones)
        self.slots_held = 0  # sessions here holding a decoder slot (DecoderPool.max_open_per_worker)
        self.busy_since: float | None = None  # when the exchange in flight started
        self.process: BaseProcess | None = None
        self._socket: socket.socket | None = None
        self._streams: tuple[asyncio.StreamReader, asyncio.StreamWriter] | None = None
        self.start()

    def _spawn(self) -> tuple[BaseProcess, socket.socket]:
        """A new decoder process and the server's end of its socket."""
        ours, theirs = self.context.Pipe()  # duplex: a Unix socket pair
        process = self.context.Process(
            target=_serve, args=(theirs, self.release_freed_memory), daemon=True, name=f"decoder-{self.index}"
        )
        try:
            process.start()
        except BaseException:
            ours.close()
            raise
        finally:
            theirs.close()
        return process, socket_of(ours)

    def start(self) -> None:
        """Start a fresh process (raises what starting it raised, leaving none running)."""
        self.open_ids.clear()  # a new process holds nothing: sessions open again at their next read
        self.videos, self.rss, self.draining = 0, None, False
        self.answered = False  # the new process has not yet answered a message (see DecoderPool._exchange)
        self.process, self._socket, self._streams = None, None, None
        self.process, self._socket = self._spawn()

    async def _open_streams(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
        if self._streams is None:
            self._streams = await asyncio.open_unix_connection(sock=self._socket, limit=STREAM_LIMIT)
        return self._streams

    def stalled(self, now: float) -> bool:
        return self.busy_since is not None and now - self.busy_since > STALLED_AFTER_S

    def _close_socket(self) -> None:
        if self._streams is not None:
            self._streams[1].close()
        elif self._socket is not None:
            self._socket.close()

    def end(self, wait_s: float = 0.0) -> str:
        """End the process: wait up to ``wait_s`` for it to exit on its own, then kill it (a
        hung decoder ignores everything else). Returns how it ended (:func:`exit_cause`)."""
        process = self.process
        if process is None:
            return "not running"
        if wait_s > 0:
            process.join(wait_s)
        cause = exit_cause(process)
        if process.exitcode is None:
            process.kill()
            cause = "killed"
        process.join()
        self._close_socket()
        self.process = None
        return cause

    async def exchange(
        self, message: tuple, timeout_s: float, data: bytes | bytearray | None = None
    ) -> tuple[str, Any]:
        """Send ``message`` (and ``data`` after it, raw) and wait for the reply. Raises
        ``TimeoutError``, or ``EOFError``/``OSError`` when the process died."""
        reader, writer = await self._open_streams()
        async with asyncio.timeout(timeout_s):
            writer.writelines(_frame(message) + (_raw_frame(data) if data is not None else []))
            await writer.drain()
            return await _read_framed(reader)

    async def send(self, message: tuple) -> None:
        """Send a message that has no reply (a process that died finds out at the next exchange)."""
        if self.process is None:
            return  # nothing runs: nothing to tell
        _, writer = await self._open_streams()
        if not writer.is_closing():
            writer.writelines(_frame(message))

    async def stop(self) -> None:
        """Close the socket (the worker's loop ends at the end of its input), then wait for it."""
        process = self.process
        if process is None:
            return
        self._close_socket()
        if self._streams is not None:
            with contextlib.suppress(OSError):  # closed for real: the worker sees the end now
                await self._streams[1].wait_closed()
        await asyncio.to_thread(process.join, 2.0)
        if process.is_alive():
            process.kill()
            process.join()


class DecoderPool:
    """Decoder processes with crash and hang recovery and recycling; :meth:`session` opens a video.

    ``max_videos`` / ``max_rss_bytes`` (None: never): a worker that has opened that many
    videos, or whose resident memory passes that bound, is replaced once its last session
    closes. ``max_open_per_worker`` (None: no bound): videos holding a decoder at once, per
    worker (module docstring). ``skip_loop_filter``: the readers' decoder shortcut
    (``pipeline.frames.decode.LoopFilterSkip``); ``hwaccel``: their hardware device
    (``ClipReader``'s; None: software). ``release_freed_memory``: the workers' allocator
    gives freed memory back as it goes (``service.memory.release_freed_memory_eagerly``).
    ``metrics``: where restarts and the workers' memory are reported (none: not).
    """

    def __init__(
        self,
        workers: int,
        limits: DecodeLimits,
        open_function: Callable[..., Any] = open_reader,
        *,
        max_videos: int | None = None,
        max_rss_bytes: int | None = None,
        max_open_per_worker: int | None = None,
        skip_loop_filter: LoopFilterSkip = "none",
        hwaccel: str | None = None,
        release_freed_memory: bool = False,
        metrics: Metrics | None = None,
    ) -> None:
        self.limits = limits
        self.skip_loop_filter, self.hwaccel = skip_loop_filter, hwaccel
        self.max_open_per_worker = max_open_per_worker
        self._slots = asyncio.Semaphore(workers * max_open_per_worker) if max_open_per_worker else None
        # Module-level, so that the workers can unpickle it; tests swap in hostile stand-ins.
        self.open_function = open_function
        self.max_videos, self.max_rss_bytes, self.metrics = max_videos, max_rss_bytes, metrics
        context = multiprocessing.get_context("forkserver")  # no fork under ONNX Runtime's threads
        self._workers = [_Worker(context, index, release_freed_memory) for index in range(workers)]
        self._ids = itertools.count()
        self._background: set[asyncio.Task] = set()
        self._closing = False

    @property
    def hard_deadline_s(self) -> float:
        return (self.limits.max_wall_s or 60.0) + HARD_DEADLINE_MARGIN_S

    def session(
        self,
        data: bytes | bytearray,
        num_samples: Samples,
        geometry: FrameGeometry,
        sampling: Sampling = "uniform",
        need_probability: Sequence[float] | None = None,
    ) -> DecodeSession:
        """A video to read in stages, in the worker with the fewest open sessions; ``num_samples``
        and ``sampling`` as ``read_clip`` takes them (``num_samples``: one set of segments, or
        several: ``FrameSpec.samples``), ``need_probability`` as ``ClipReader`` does
        (:func:`need_probabilities`)."""
        worker = self._least_loaded()
        worker.sessions += 1
        args = (num_samples, geometry, self.limits, sampling, self.skip_loop_filter, need_probability, self.hwaccel)
        opening = (self.open_function, args)
        return DecodeSession(self, worker, next(self._ids), opening, data)

    def _least_loaded(self) -> _Worker:
        """The worker for a new (or moved) session: running, not stalled, not draining, with
        the fewest sessions."""
        self._revive()
        now = time.monotonic()
        live = [w for w in self._workers if not w.stalled(now)] or self._workers
        accepting = [w for w in live if not w.draining and w.process is not None]
        if accepting:
            return min(accepting, key=lambda w: w.sessions)
        # Every one is draining: the busiest takes it, so that the others empty and are recycled.
        return max(live, key=lambda w: w.sessions)

    async def _take_slot(self, session: DecodeSession) -> None:
        """Wait for a decoder slot for ``session`` (its first read); a session not sent anywhere
        yet moves to the worker holding the fewest slots, where one is free."""
        if self._slots is None:
            return
        await self._slots.acquire()
        if not session._sent_to:
            live = [w for w in self._workers if not w.draining and w.process is not None]
            target = min(live or self._workers, key=lambda w: (w.slots_held, w.sessions))
            self._move(session, target)
        session.worker.slots_held += 1
        session.slot = session.worker

    def _give_slot(self, session: DecodeSession) -> None:
        """``session``'s decoder is closed (every sample read, or the request ended): its slot
        goes to the next video waiting."""
        if session.slot is None or self._slots is None:
            return
        session.slot.slots_held -= 1
        session.slot = None
        self._slots.release()

    @staticmethod
    def _move(session: DecodeSession, target: _Worker) -> None:
        if target is not session.worker:
            session.worker.sessions -= 1
            target.sessions += 1
            session.worker = target

    def _unstall(self, session: DecodeSession) -> None:
        """Move ``session`` off a stalled worker: it opens again elsewhere (the server holds its
        bytes), rather than waiting behind another request's slow file."""
        if not session.worker.stalled(time.monotonic()):
            return
        self._move(session, self._least_loaded())

    @staticmethod
    def _unavailable(detail: str) -> Problem:
        return Problem(503, "Decoder unavailable", detail, dict(RETRY_AFTER))

    def _count_restart(self, cause: str) -> None:
        if self.metrics is not None:
            self.metrics.decoder_restarts.labels(cause).inc()

    def _revive(self) -> None:
        """Try again to start the workers whose last start failed (a failure is logged; they
        take no new session until they run)."""
        for worker in self._workers:
            if worker.process is None and not worker.lock.locked() and not self._closing:
                try:
                    worker.start()
                except Exception:
                    log.exception("decoder %d could not be started", worker.index)

    def _ensure_running(self, worker: _Worker) -> None:
        """Start ``worker``'s process if none runs (its last start failed); 503 if it still cannot."""
        if self._closing:
            raise self._unavailable("the service is shutting down")
        if worker.process is not None:
            return
        try:
            worker.start()
        except Exception:
            log.exception("decoder %d could not be started", worker.index)
            raise self._unavailable("no decoder process could be started") from None

    def _lose(self, worker: _Worker, cause: str, session_id: int | None) -> bool:
        """Log and count the end of ``worker``'s process (``cause``: crash or timeout) and start
        its successor; False when the successor could not be started."""
        pid = worker.process.pid if worker.process is not None else None
        ended = worker.end(EXIT_WAIT_S if cause == "crash" else 0.0)
        self._count_restart(cause)
        what = f"died ({ended})" if cause == "crash" else f"timed out after {self.hard_deadline_s:.0f} s ({ended})"
        log.warning("decoder %d (pid %s) %s during session %s; replacing it", worker.index, pid, what, session_id)
        try:
            worker.start()
        except Exception:
            log.exception("decoder %d could not be started again", worker.index)
            return False
        return True

    async def _exchange(
        self, worker: _Worker, message: tuple, data: bytes | bytearray | None = None, session_id: int | None = None
    ) -> tuple[str, Any]:
        """Send ``message`` and wait for the reply; call with ``worker.lock`` held. A hung worker
        is replaced (504); one that died is replaced and :class:`WorkerDied` raised (503 if
        the pool is closing or no successor starts)."""
        self._ensure_running(worker)
        worker.busy_since = time.monotonic()
        try:
            if not worker.answered:  # a fresh process: its start-up is not the video's decode time
                await self._await_start(worker, session_id)
            reply = await worker.exchange(message, self.hard_deadline_s, data)
        except TimeoutError:
            self._lose(worker, "timeout", session_id)
            raise Problem(
                504, "Decoding timed out", f"the decoder did not finish within {self.hard_deadline_s:.0f} s"
            ) from None
        except (EOFError, OSError):
            if self._closing:  # we closed its socket: not the file's fault, nor a crash
                raise self._unavailable("the service is shutting down") from None
            if not self._lose(worker, "crash", session_id):
                raise self._unavailable("the decoder process died and no new one could be started") from None
            raise WorkerDied(session_id) from None
        finally:
            worker.busy_since = None
        self._observe(worker)
        return reply

    async def _await_start(self, worker: _Worker, session_id: int | None) -> None:
        """Wait (up to :data:`STARTUP_TIMEOUT_S`) for ``worker``'s new process to answer a ping;
        one that does not, or dies first, is the server's fault: 503."""
        try:
            await worker.exchange(("ping",), STARTUP_TIMEOUT_S)
        except (TimeoutError, EOFError, OSError):
            if self._closing:
                raise self._unavailable("the service is shutting down") from None
            self._lose(worker, "crash", session_id)
            raise self._unavailable("a new decoder process did not start") from None
        worker.answered = True

    def _observe(self, worker: _Worker) -> None:
        """After an exchange: the worker's memory (reported), and whether it is due for recycling."""
        if worker.process is None:
            return
        worker.rss = process_rss_bytes(worker.process.pid)
        if worker.rss is not None and self.metrics is not None:
            self.metrics.decoder_rss_bytes.labels(worker=str(worker.index)).set(worker.rss)
        if not worker.draining and self._due(worker):
            worker.draining = True  # new sessions go elsewhere; replaced once its last one closes
            log.info("decoder %d is draining: %s", worker.index, self._usage(worker))

    def _due(self, worker: _Worker) -> bool:
        too_many = self.max_videos is not None and worker.videos >= self.max_videos
        too_big = self.max_rss_bytes is not None and worker.rss is not None and worker.rss > self.max_rss_bytes
        return too_many or too_big

    @staticmethod
    def _usage(worker: _Worker) -> str:
        rss = "unknown" if worker.rss is None else f"{worker.rss / 2**20:.0f} MiB"
        return f"{worker.videos} videos opened, resident memory {rss}"

    def _recycle_if_idle(self, worker: _Worker) -> None:
        """Replace a draining worker once it holds no session; call with ``worker.lock`` held."""
        if not worker.draining or worker.sessions or worker.open_ids or worker.process is None or self._closing:
            return
        pid, usage = worker.process.pid, self._usage(worker)
        worker.end()  # it holds nothing: killing it loses nothing
        self._count_restart("recycled")
        log.info("decoder %d (pid %s) recycled after %s", worker.index, pid, usage)
        try:
            worker.start()
        except Exception:  # tried again at its next exchange
            log.exception("decoder %d could not be started again", worker.index)

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
        along) if it is not open. If the worker dies, the read is made once more in its
        successor: a second death is the file's (422)."""

        async def exchange() -> tuple[str, Any]:
            async with worker.lock:
                try:
                    return await self._read_once(worker, session, positions, previews)
                except WorkerDied:
                    log.info("session %s: reading again in decoder %d's new process", session.id, worker.index)
                try:
                    return await self._read_once(worker, session, positions, previews)
                except WorkerDied:
                    log.warning("session %s crashed a fresh decoder too: the file is at fault", session.id)
                    raise Problem(
                        422, "Undecodable video", "the decoder crashed on this file twice, once in a fresh process"
                    ) from None

        return await self._shielded(exchange())

    async def _read_once(
        self, worker: _Worker, session: DecodeSession, positions: list[int], previews: bool
    ) -> tuple[str, Any]:
        """One read exchange; call with ``worker.lock`` held."""
        session_id = session.id
        if session_id in worker.open_ids:
            message, data = ("read", session_id, None, positions, previews), None
        else:
            message, data = ("read", session_id, session.opening, positions, previews), session.data
            worker.videos += 1  # counted for recycling whether or not it opens
        reply = await self._exchange(worker, message, data, session_id)
        if reply[0] == "ok":
            worker.open_ids.add(session_id)
        else:
            worker.open_ids.discard(session_id)  # the process ended it
            self._recycle_if_idle(worker)  # its session may have moved on while this read ran
        return reply

    def _forget(self, worker: _Worker, session_id: int, sent: bool) -> None:
        """Close ``session_id`` in ``worker`` if it was ``sent`` there, in the background (no
        reply to wait for; a worker that does not have it ignores it), then recycle the worker
        if it is draining and this was its last session."""

        async def send_close() -> None:
            async with worker.lock:
                if sent:
                    worker.open_ids.discard(session_id)
                    await worker.send(("close", session_id))
                self._recycle_if_idle(worker)

        task = asyncio.get_running_loop().create_task(send_close())
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _simple(self, worker: _Worker, message: tuple) -> Any:
        """An exchange that reads no video (``count``, ``ping``): a death is a 503."""

        async def exchange() -> tuple[str, Any]:
            async with worker.lock:
                try:
                    reply = await self._exchange(worker, message)
                except WorkerDied:
                    raise self._unavailable("a decoder process died") from None
                self._recycle_if_idle(worker)  # due, and nothing to wait for
                return reply

        return await self._shielded(exchange())

    async def open_sessions(self) -> list[int]:
        """How many videos each worker holds open (a check that closed ones are gone)."""
        return [await self._simple(worker, ("count",)) for worker in self._workers]

    async def warm_up(self) -> None:
        """Wait until every worker has started (and imported PyAV)."""
        for worker in self._workers:
            await self._simple(worker, ("ping",))

    async def close(self) -> None:
        """End every worker; reads still in flight get a 503."""
        self._closing = True
        await asyncio.gather(*(worker.stop() for worker in self._workers))


class DecodeSession:
    """One request's video, open in one decoder worker; see :meth:`DecoderPool.session`."""

    def __init__(
        self, pool: DecoderPool, worker: _Worker, session_id: int, opening: tuple, data: bytes | bytearray
    ) -> None:
        self.pool, self.worker, self.id = pool, worker, session_id
        self.opening, self.data = opening, data  # kept: a replaced worker's successor opens it again
        self._sent_to: set[_Worker] = set()  # workers that may hold it (closed at the end)
        self.closed = False
        self.slot: _Worker | None = None  # the worker whose decoder slot it holds, if any
        self._positions_read: set[int] = set()  # positions read so far
        self._all_read = False  # every sample read: the reader has closed its decoder

    async def read(self, positions: Sequence[int], previews: bool = False) -> Clip:
        """Samples ``positions``; raises ``VideoError`` or a ``Problem``."""
        if self.closed:
            raise RuntimeError("read from a closed decode session")
        if self.slot is None and not self._all_read:
            await self.pool._take_slot(self)
        self.pool._unstall(self)
        self._sent_to.add(self.worker)
        clip = await self.pool._read(self.worker, self, list(positions), previews)
        self._positions_read.update(positions)
        if clip.sample_frame_indices is not None and len(self._positions_read) >= len(clip.sample_frame_indices):
            self._all_read = True
            self.pool._give_slot(self)
        return clip

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            self.pool._give_slot(self)
            self.worker.sessions -= 1
            for worker in self._sent_to | {self.worker}:
                self.pool._forget(worker, self.id, sent=worker in self._sent_to)


class ClipSession(Protocol):
    """What :class:`LazyClip` reads from (a :class:`DecodeSession`, or a stand-in in tests)."""

    async def read(self, positions: Sequence[int], previews: bool = False) -> Clip: ...

    def close(self) -> None: ...


def decode_schedule(order: Sequence[int]) -> list[list[int]]:
    """Sample positions grouped into decode calls, in the order the step loop asks for them:
    step 0 alone, then step 1, then blocks that double (``[0], [1], [2, 3], [4..7], [8..15]``
    for chronological order; ``[7], [0], [15, 3], [11, 1, 5, 9]``, ... coarse to fine).

    The worker decodes on from where the previous call stopped, so a video that exits at step
    k costs the frames up to the end of k's stage (at most about twice those up to step k), and
    a clip takes about log2(T) round trips. In any other order than chronological, a call may
    ask for samples before the decoder's position: the reader then keeps, resized, the samples
    of later calls that it decodes on the way, and does not seek past samples it would have to
    come back for from an earlier keyframe (``pipeline.frames.decode``), so a one-keyframe
    video is still decoded in about one forward pass while one with frequent keyframes decodes
    only around the samples the exit needs.
    """
    stages: list[list[int]] = []
    start = 0
    while start < len(order):
        size = max(1, start)
        stages.append(list(order[start : start + size]))
        start += size
    return stages


def need_probabilities(order: Sequence[int], exit_fractions: Sequence[float]) -> list[float]:
    """Per sample position, the share of videos whose step loop reads it in :func:`decode_schedule`'s
    stages: a stage is read by the videos that have not exited before its first step
    (``exit_fractions``: an operating point's share of videos exiting at each step). What a
    :class:`~pipeline.frames.decode.ClipReader` weighs a seek past later samples with."""
    need = [1.0] * len(order)
    first_step = 0
    for stage in decode_schedule(order):
        reaching = max(0.0, 1.0 - sum(exit_fractions[:first_step]))
        for position in stage:
            need[position] = reaching
        first_step += len(stage)
    return need


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
        self.sample_frame_indices: np.ndarray | None = None  # every sample's frame, once a read came back
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
            self.sample_frame_indices = clip.sample_frame_indices
            self.decoded_frames += clip.decoded_frames
            self.decodes += 1
        return self.frames[position]

    def close(self) -> None:
        self.session.close()
