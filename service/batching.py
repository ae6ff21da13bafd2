"""Dynamic batching: the steps of many concurrent clips run as one batch.

Every request drives its own step loop (:func:`pipeline.onnx_steps.clip_steps`);
each step goes to the model's :class:`StepBatcher`, which waits at most ``max_wait_s`` for
more rows (up to ``max_batch``), runs them as one batch in a worker thread (each graph of
the step once, :func:`pipeline.onnx_steps.run_step`), and hands every caller its
own row back. Rows at different steps of different videos mix freely: the running states
are inputs. One batch per step rather than one per graph: a third of the thread hops,
futures and frame copies per step (the frame goes to the glance and the focus graph as the
same array).

A batcher waits only for rows that can come: once every clip running through the model
(:class:`ActiveClips`) has a row in the batch, it runs at once. A lone request therefore
never waits, and under load a batch still gathers for up to ``max_wait_s``.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager, nullcontext

import numpy as np

from pipeline.manifest import Manifest
from pipeline.onnx_steps import FRAME, STAGES, ClipResult, clip_steps

from .problems import Problem

Row = dict[str, np.ndarray]
# Runs a batch of rows: (outputs, seconds per stage); see ``pipeline.onnx_steps.run_step``.
BatchFunction = Callable[[Row], tuple[Row, dict[str, float]]]


class ActiveClips:
    """How many clips are running through one model's batcher right now."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


class StepBatcher:
    """Batches the rows sent to :meth:`run` into calls of ``run_batch`` (in a worker thread).

    ``active``: the clips that can send rows; without it the batcher always waits
    ``max_wait_s`` for more rows (up to ``max_batch``).
    """

    def __init__(
        self,
        run_batch: BatchFunction,
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
        active: ActiveClips | None = None,
    ) -> None:
        self.run_batch = run_batch
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self.active = active
        self.queue: asyncio.Queue[tuple[Row, asyncio.Future]] = asyncio.Queue()
        self.closed = False
        self.task = asyncio.create_task(self._serve())

    async def run(self, row: Row) -> tuple[Row, dict[str, float]]:
        """This row's outputs, and the seconds per stage of the batch it ran in (a 503
        :class:`Problem` once the batcher is closed)."""
        if self.closed:
            raise _stopping()
        future = asyncio.get_running_loop().create_future()
        self.queue.put_nowait((row, future))
        return await future

    def _rows_that_can_come(self) -> int:
        if self.active is None:
            return self.max_batch
        # Each clip has at most one step in flight, so no batch can hold more rows than clips.
        return min(self.max_batch, max(1, self.active.count))

    async def _gather(self, batch: list[tuple[Row, asyncio.Future]]) -> None:
        """Fill ``batch`` (the caller's, so that closing can answer rows taken mid-gather)."""
        batch.append(await self.queue.get())
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.max_wait_s
        while len(batch) < self._rows_that_can_come():
            if not self.queue.empty():  # under load the rows are already there: no timer
                batch.append(self.queue.get_nowait())
                continue
            remaining = deadline - loop.time()
            if remaining <= 0:
                break
            try:
                batch.append(await asyncio.wait_for(self.queue.get(), remaining))
            except TimeoutError:
                break

    async def _serve(self) -> None:
        while True:
            batch: list[tuple[Row, asyncio.Future]] = []
            try:
                await self._gather(batch)
                rows = [row for row, _ in batch]
                outputs, seconds = await asyncio.to_thread(self._run, rows)
            except asyncio.CancelledError:  # closed: the rows taken get an answer, not a hang
                _fail(batch, _stopping())
                raise
            except Exception as error:  # noqa: BLE001 - every waiting request gets the error
                _fail(batch, error)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for i, (_, future) in enumerate(batch):
                if not future.done():  # a cancelled request (client gone) is skipped
                    future.set_result(({name: value[i : i + 1] for name, value in outputs.items()}, seconds))

    def _run(self, rows: list[Row]) -> tuple[Row, dict[str, float]]:
        """In the worker thread: stack the rows (a copy the event loop need not make) and run them."""
        feeds = rows[0] if len(rows) == 1 else {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}
        return self.run_batch(feeds)

    def close(self) -> None:
        """Stop batching. Rows still queued, in the batch being gathered or run, and rows sent
        later get a 503 :class:`Problem` (the service is stopping) instead of waiting forever."""
        self.closed = True
        self.task.cancel()
        waiting = []
        while not self.queue.empty():
            waiting.append(self.queue.get_nowait())
        _fail(waiting, _stopping())


def _stopping() -> Problem:
    return Problem(503, "Shutting down", "the service is shutting down", {"Retry-After": "1"})


def _fail(batch: Sequence[tuple[Row, asyncio.Future]], error: BaseException) -> None:
    for _, future in batch:
        if not future.done():  # a cancelled request (client gone) is skipped
            future.set_exception(error)


async def run_clip_batched(
    manifest: Manifest,
    batcher: StepBatcher,
    frame: Callable[[int], Awaitable[np.ndarray]],
    thresholds: Sequence[float] | None,
    active: ActiveClips | None = None,
) -> ClipResult:
    """:func:`clip_steps` driven through ``batcher``, frames from ``frame(position)``.

    ``active``: the counter the batcher was given; the clip counts in it while it runs.
    Stage times include the wait for a batch (shared among the stages as the batch's run
    time was); ``decode`` is the time spent waiting for frames.
    """
    with active.running() if active is not None else nullcontext():
        return await _drive(clip_steps(manifest, thresholds), batcher, frame)


async def _drive(steps, batcher: StepBatcher, frame: Callable[[int], Awaitable[np.ndarray]]) -> ClipResult:
    seconds = dict.fromkeys(("decode", *STAGES), 0.0)
    try:
        call, feeds = next(steps)
        while True:
            started = time.perf_counter()
            if call == FRAME:
                reply = await frame(feeds["position"])
                seconds["decode"] += time.perf_counter() - started
            else:
                reply, batch_seconds = await batcher.run(feeds)
                _share(seconds, time.perf_counter() - started, batch_seconds)
            call, feeds = steps.send(reply)
    except StopIteration as finished:
        result: ClipResult = finished.value
    result.seconds = seconds
    return result


def _share(seconds: dict[str, float], waited: float, batch_seconds: dict[str, float]) -> None:
    """Add a step's wall time (queue wait included) to its stages, in the batch's proportions."""
    total = sum(batch_seconds.values())
    for stage, spent in batch_seconds.items():
        seconds[stage] += waited * spent / total if total > 0 else waited / len(batch_seconds)
