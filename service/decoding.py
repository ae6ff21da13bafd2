"""Decoding in separate processes, so that a hostile file can crash or hang only a worker.

Uploads stay in memory (bounded by the upload limit; no temporary file). A worker that
crashes is replaced and the request gets a 422; one that outlives the hard deadline is
killed and replaced and the request gets a 504. The event loop only awaits.
"""

from __future__ import annotations

import asyncio
import io
import multiprocessing
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool

import numpy as np

from frames.decode import Clip, read_clip
from frames.limits import DecodeLimits
from frames.transform import FrameGeometry

from .problems import Problem

# The frames pipeline stops itself at its own deadline (DecodeTimeoutError, 504); this margin
# is the backstop for a decoder stuck inside FFmpeg, where no Python code runs.
HARD_DEADLINE_MARGIN_S = 5.0


def _ready() -> bool:
    """Run once per worker at start-up: importing this module loads PyAV and FFmpeg there."""
    return True


def _decode(
    data: bytes,
    num_frames: int,
    geometry: FrameGeometry,
    limits: DecodeLimits,
    positions: list[int] | None = None,
    previews: bool = False,
) -> Clip:
    return read_clip(io.BytesIO(data), num_frames, geometry, limits, threads=1, positions=positions, previews=previews)


class DecoderPool:
    """A pool of decoder processes with crash and hang recovery."""

    def __init__(self, workers: int, limits: DecodeLimits, decode_function=_decode) -> None:
        self.workers = workers
        self.limits = limits
        self.decode_function = decode_function  # module-level, so the workers can import it
        self._pool = self._new_pool()

    def _new_pool(self) -> ProcessPoolExecutor:
        return ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("forkserver"))

    def _replace_pool(self) -> None:
        broken = self._pool
        self._pool = self._new_pool()
        for process in list(getattr(broken, "_processes", {}).values()):
            process.kill()  # a hung decoder ignores everything else
        broken.shutdown(wait=False, cancel_futures=True)

    async def decode(
        self,
        data: bytes,
        num_frames: int,
        geometry: FrameGeometry,
        positions: list[int] | None = None,
        previews: bool = False,
    ) -> Clip:
        """The clip's samples (those at ``positions`` only, if given; with JPEG previews if asked);
        raises ``VideoError`` or a ``Problem``."""
        loop = asyncio.get_running_loop()
        future = loop.run_in_executor(
            self._pool, self.decode_function, data, num_frames, geometry, self.limits, positions, previews
        )
        deadline = (self.limits.max_wall_s or 60.0) + HARD_DEADLINE_MARGIN_S
        try:
            return await asyncio.wait_for(future, deadline)
        except TimeoutError:
            self._replace_pool()
            raise Problem(504, "Decoding timed out", f"the decoder did not finish within {deadline:.0f} s") from None
        except BrokenProcessPool:
            self._replace_pool()
            raise Problem(422, "Undecodable video", "the decoder crashed on this file") from None

    def warm_up(self) -> None:
        """Start every worker now rather than on the first request."""
        for future in [self._pool.submit(_ready) for _ in range(self.workers)]:
            future.result()

    def close(self) -> None:
        self._pool.shutdown(wait=True, cancel_futures=True)


def decode_schedule(order: Sequence[int]) -> list[list[int]]:
    """Sample positions grouped into decode calls, in the order the step loop asks for them.

    Step 0 alone, then step 1, then blocks that double: ``[0], [1], [2, 3], [4..7], [8..15]``.
    Each call decodes from a keyframe up to its last sample, so a video that exits at step
    k costs about twice the frames up to step k rather than every sample, and one that never
    exits costs at most about twice a single full decode.
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

    With ``order`` (the positions in step order) the samples are decoded in the stages of
    :func:`decode_schedule`, so frames after an early exit are mostly never decoded; without
    it (no early exit possible) every sample is decoded in one call at the first request. The
    samples are the same, bit for bit, as a full decode (``read_clip(positions=...)``). With
    ``previews``, each decoded sample also comes with a JPEG of its whole frame (web page).
    """

    def __init__(
        self,
        pool: DecoderPool,
        data: bytes,
        num_samples: int,
        geometry: FrameGeometry,
        previews: bool = False,
        order: Sequence[int] | None = None,
    ) -> None:
        self.pool, self.data, self.num_samples, self.geometry = pool, data, num_samples, geometry
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
        """Sample ``position`` as ``(1, 3, S, S)`` float32."""
        if position not in self.frames:
            wanted = self._stage_of(position)
            clip = await self.pool.decode(self.data, self.num_samples, self.geometry, wanted, self.want_previews)
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
