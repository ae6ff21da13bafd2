"""Dynamic batching: graph calls of many concurrent clips gathered into one ``session.run`` each.

Every request drives its own step loop (:func:`model_repository.onnx_pipeline.clip_steps`);
each graph call goes to that graph's :class:`GraphBatcher`, which waits at most ``max_wait_s``
for more rows (up to ``max_batch``), runs them as one batch in a worker thread, and hands
every caller its own row back. Rows at different steps of different videos mix freely: the
running states are inputs.

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

from model_repository.manifest import Manifest
from model_repository.onnx_pipeline import FRAME, STAGE_OF_GRAPH, ClipResult, clip_steps

Row = dict[str, np.ndarray]


class ActiveClips:
    """How many clips are running through one model's batchers right now."""

    def __init__(self) -> None:
        self.count = 0

    @contextmanager
    def running(self) -> Iterator[None]:
        self.count += 1
        try:
            yield
        finally:
            self.count -= 1


class GraphBatcher:
    """Batches calls of one ONNX Runtime session.

    ``active``: the clips that can send rows to this batcher; without it the batcher always
    waits ``max_wait_s`` for more rows (up to ``max_batch``).
    """

    def __init__(
        self,
        session,
        max_batch: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] | None = None,
        active: ActiveClips | None = None,
    ) -> None:
        self.session = session
        self.max_batch = max_batch
        self.max_wait_s = max_wait_s
        self.on_batch = on_batch
        self.active = active
        self.queue: asyncio.Queue[tuple[Row, asyncio.Future]] = asyncio.Queue()
        self.task = asyncio.create_task(self._serve())

    async def run(self, row: Row) -> list[np.ndarray]:
        future = asyncio.get_running_loop().create_future()
        await self.queue.put((row, future))
        return await future

    def _rows_that_can_come(self) -> int:
        if self.active is None:
            return self.max_batch
        # Each clip has at most one call in flight, so no batch can hold more rows than clips.
        return min(self.max_batch, max(1, self.active.count))

    async def _gather(self) -> list[tuple[Row, asyncio.Future]]:
        batch = [await self.queue.get()]
        deadline = asyncio.get_running_loop().time() + self.max_wait_s
        while len(batch) < self._rows_that_can_come():
            remaining = deadline - asyncio.get_running_loop().time()
            try:
                batch.append(
                    self.queue.get_nowait() if remaining <= 0 else await asyncio.wait_for(self.queue.get(), remaining)
                )
            except (asyncio.QueueEmpty, TimeoutError):
                break
        return batch

    async def _serve(self) -> None:
        while True:
            batch = await self._gather()
            feeds = {name: np.concatenate([row[name] for row, _ in batch]) for name in batch[0][0]}
            try:
                outputs = await asyncio.to_thread(self.session.run, None, feeds)
            except Exception as error:  # noqa: BLE001 - every waiting request gets the error
                for _, future in batch:
                    if not future.done():
                        future.set_exception(error)
                continue
            if self.on_batch is not None:
                self.on_batch(len(batch))
            for i, (_, future) in enumerate(batch):
                if not future.done():  # a cancelled request (client gone) is skipped
                    future.set_result([output[i : i + 1] for output in outputs])

    def close(self) -> None:
        self.task.cancel()


async def run_clip_batched(
    manifest: Manifest,
    batchers: dict[str, GraphBatcher],
    frame: Callable[[int], Awaitable[np.ndarray]],
    thresholds: Sequence[float] | None,
    active: ActiveClips | None = None,
) -> ClipResult:
    """:func:`clip_steps` driven through the batchers, frames from ``frame(position)``.

    ``active``: the counter the batchers were given; the clip counts in it while it runs.
    Stage times include the wait for a batch; ``decode`` is the time spent waiting for frames.
    """
    with active.running() if active is not None else nullcontext():
        return await _drive(clip_steps(manifest, thresholds), batchers, frame)


async def _drive(steps, batchers: dict[str, GraphBatcher], frame: Callable[[int], Awaitable[np.ndarray]]) -> ClipResult:
    seconds = {stage: 0.0 for stage in STAGE_OF_GRAPH.values()}
    try:
        graph, feeds = next(steps)
        while True:
            started = time.perf_counter()
            if graph == FRAME:
                outputs = [await frame(feeds["position"])]
            else:
                outputs = await batchers[graph].run(feeds)
            seconds[STAGE_OF_GRAPH[graph]] += time.perf_counter() - started
            graph, feeds = steps.send(outputs)
    except StopIteration as finished:
        result: ClipResult = finished.value
    result.seconds = seconds
    return result
