"""Decoding in a process of its own, so that a file that crashes or hangs FFmpeg costs only its row.

A segfault inside FFmpeg would end the Ray worker running the decode task, and Ray would run
the task again, on the same file, forever; a decoder stuck inside FFmpeg (where the frame
pipeline's own deadline cannot act) would hold its task forever. So each Ray worker that
decodes keeps one child process (:class:`DecoderProcess`, started at its first video, reused
for every later one) and reads each video there, as the service's decoder pool does
(``service/decoding.py``) and with the same answers: a child that dies is replaced and the read
tried once more in the new one, a second death is the file's fault (422 "Undecodable video");
a read past the decode time limit plus a margin is killed (504 "Decoding timed out").
"""

from __future__ import annotations

import multiprocessing
import pickle
import signal
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from multiprocessing.connection import Connection
from typing import Any

import numpy as np

from pipeline.answers import DECODER_CRASHED, Problem
from pipeline.frames.decode import ClipReader, LoopFilterSkip
from pipeline.frames.limits import DecodeLimits
from pipeline.frames.sampling import Samples
from pipeline.frames.transform import FrameGeometry

from .inputs import open_video

# The frame pipeline stops itself at its deadline; past it by this margin the child is stuck in FFmpeg.
HARD_DEADLINE_MARGIN_S = 5.0
# A new child (forkserver, then PyAV's import) may take seconds on a loaded machine: not a video's time.
STARTUP_TIMEOUT_S = 60.0


@dataclass
class ReadResult:
    """What a read gives back: the uint8 crops of the positions asked for, and the video's facts."""

    frames: np.ndarray  # (len(positions), S, S, 3) uint8
    num_frames: int
    original_size: tuple[int, int]
    decoded_frames: int


def read_samples(
    path: str,
    samples: Samples,
    geometry: FrameGeometry,
    limits: DecodeLimits,
    positions: Sequence[int],
    skip_loop_filter: LoopFilterSkip = "none",
) -> ReadResult:
    """Open ``path`` and read ``positions`` of its samples as the service's decoders do (one
    reader, one decoding thread, uint8 crops, the service's ``skip_loop_filter``); runs in the
    child process."""
    source = open_video(path, limits.max_bytes)
    with ClipReader(source, samples, geometry, limits, threads=1, skip_loop_filter=skip_loop_filter) as reader:
        clip = reader.read(positions, normalised=False)
    return ReadResult(clip.frames, clip.num_frames, clip.original_size, clip.decoded_frames)


ReadFunction = Callable[..., ReadResult]  # module-level (the child unpickles it); tests pass stand-ins


def _picklable(error: BaseException) -> BaseException:
    try:
        pickle.dumps(error)
        return error
    except Exception:  # noqa: BLE001 - whatever it holds, the parent gets a description
        return RuntimeError(f"{type(error).__name__}: {error}")


def _serve(connection: Connection) -> None:
    """The child's loop: ``("ping",)`` -> ``("ok", None)``; ``(read_function, args)`` -> ``("ok",
    result)`` or ``("error", exception)``. It ends when the parent closes its end."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the job, which ends us
    while True:
        try:
            message = connection.recv()
        except (EOFError, OSError):
            return
        if message == ("ping",):
            connection.send(("ok", None))
            continue
        function, args = message
        try:
            reply = ("ok", function(*args))
        except Exception as error:  # noqa: BLE001 - a bad file: the parent gets its error
            reply = ("error", _picklable(error))
        connection.send(reply)


class ChildDied(Exception):
    """The decoder process ended during a read."""


class ChildTimedOut(Exception):
    """The decoder process did not answer in time (and was killed)."""


class DecoderProcess:
    """One decoder child process, started on first use and replaced when it dies or hangs."""

    def __init__(self) -> None:
        self._context = multiprocessing.get_context("forkserver")  # no fork under a Ray worker's threads
        self._process: Any = None
        self._connection: Connection | None = None

    def _start(self) -> None:
        ours, theirs = self._context.Pipe()
        self._process = self._context.Process(target=_serve, args=(theirs,), daemon=True, name="adafocus-decoder")
        self._process.start()
        theirs.close()
        self._connection = ours
        try:  # its start-up is not a video's decode time
            self._exchange(("ping",), STARTUP_TIMEOUT_S)
        except (ChildDied, ChildTimedOut):
            raise RuntimeError("a decoder process did not start") from None

    def _exchange(self, message: tuple, timeout_s: float) -> tuple[str, Any]:
        assert self._connection is not None
        try:
            self._connection.send(message)
            if not self._connection.poll(timeout_s):
                self.stop()
                raise ChildTimedOut
            return self._connection.recv()
        except (EOFError, OSError, BrokenPipeError):
            self.stop()
            raise ChildDied from None

    def run(self, function: ReadFunction, args: tuple, timeout_s: float) -> Any:
        """``function(*args)`` in the child; its result, or the exception it raised (re-raised
        here). Raises :class:`ChildDied` or :class:`ChildTimedOut` (the child is gone then)."""
        if self._process is None:
            self._start()
        status, payload = self._exchange((function, args), timeout_s)
        if status == "error":
            raise payload
        return payload

    def stop(self) -> None:
        """End the child (killed: a hung decoder ignores anything else)."""
        if self._connection is not None:
            self._connection.close()
            self._connection = None
        if self._process is not None:
            if self._process.is_alive():
                self._process.kill()
            self._process.join()
            self._process = None


_DECODER: DecoderProcess | None = None  # this worker process's child, kept between tasks


def read_isolated(function: ReadFunction, args: tuple, limits: DecodeLimits, margin_s: float) -> ReadResult:
    """``function(*args)`` (:func:`read_samples`) in this worker's decoder child. Raises what it
    raised (a frames ``VideoError``), or the service's :class:`IsolatedProblem` for a child
    that died twice on the file or outlived the decode time limit by ``margin_s``."""
    global _DECODER
    if _DECODER is None:
        _DECODER = DecoderProcess()
    deadline_s = (limits.max_wall_s or 60.0) + margin_s
    for attempt in (1, 2):
        try:
            return _DECODER.run(function, args, deadline_s)
        except ChildTimedOut:
            raise IsolatedProblem(
                Problem("Decoding timed out", 504, f"the decoder did not finish within {deadline_s:.0f} s")
            ) from None
        except ChildDied:
            if attempt == 2:  # a fresh process died on it too: the file is at fault
                raise IsolatedProblem(DECODER_CRASHED) from None
    raise AssertionError("unreachable")


class IsolatedProblem(Exception):
    """A read the child could not give an answer for; ``problem`` is the service's answer."""

    def __init__(self, problem: Problem) -> None:
        super().__init__(problem.detail)
        self.problem = problem
