"""The step loops of many clips run in lockstep, their steps batched, pausable between frames.

The service drives each request's :func:`pipeline.onnx_steps.clip_steps` from its own
coroutine and gathers concurrent steps into batches (``service/batching.py``). An offline
job has all its clips at hand: :func:`run_in_lockstep` advances every loop to its next step,
runs those steps as one batch per ``max_batch`` rows (:func:`pipeline.onnx_steps.run_step`:
rows at different steps of different clips mix freely, the running states are inputs), hands
each loop its row back, and repeats.

A loop whose next frame is not decoded yet pauses (:attr:`ClipRun.wanted`). Generators cannot
move between processes, so a paused loop is carried as what it has produced
(:attr:`ClipRun.recorded`: each step's outputs) and resumed elsewhere by replaying them:
``clip_steps`` is deterministic, so fed the same frames and outputs it reaches the same
point, and only the steps after it run. One loop, whichever machine finishes it.
"""

from __future__ import annotations

from collections.abc import Generator, Mapping, Sequence
from typing import Any

import numpy as np

from pipeline.manifest import Manifest
from pipeline.onnx_steps import FRAME, STAGES, Call, ClipResult, clip_steps, run_step

Row = dict[str, np.ndarray]


def stack_rows(rows: Sequence[Row]) -> Row:
    """Rows of step inputs (each ``(1, ...)``) as one batch (the first row itself when alone)."""
    if len(rows) == 1:
        return rows[0]
    return {name: np.concatenate([row[name] for row in rows]) for name in rows[0]}


def row_of(outputs: Mapping[str, np.ndarray], index: int) -> Row:
    """Row ``index`` of a batch's outputs, each ``(1, ...)`` as ``clip_steps`` wants it."""
    return {name: value[index : index + 1] for name, value in outputs.items()}


class ClipRun:
    """One clip's step loop, its frames given by sample position, paused where one is missing.

    ``frames``: ``{position: (1, S, S, 3) uint8 crop}`` (more may be added before :meth:`advance`);
    ``recorded``: the outputs of steps already run (elsewhere), replayed before any new step;
    ``thresholds``: the operating point's, or ``None`` for every frame. After :meth:`advance`, the
    run is :attr:`done` (:attr:`result`), wants a step (:attr:`feeds`) or a frame (:attr:`wanted`).
    """

    def __init__(
        self,
        manifest: Manifest,
        thresholds: Sequence[float] | None,
        frames: dict[int, np.ndarray],
        recorded: Sequence[Row] = (),
    ) -> None:
        self.frames = frames
        self.recorded: list[Row] = list(recorded)
        self.seconds = dict.fromkeys(STAGES, 0.0)  # this run's share of the batches it ran in
        self.result: ClipResult | None = None
        self.feeds: Row | None = None
        self.wanted: int | None = None
        self._steps: Generator[Call, Any, ClipResult] = clip_steps(manifest, thresholds)
        self._replayed = 0
        self._pending: Call | None = next(self._steps)

    @property
    def done(self) -> bool:
        return self.result is not None

    def advance(self) -> None:
        """Run the loop on to its next new step, a missing frame, or its end."""
        self.wanted = None
        while self._pending is not None and self.feeds is None:
            call, request = self._pending
            if call == FRAME:
                position = request["position"]
                if position not in self.frames:
                    self.wanted = position
                    return
                self._send(self.frames[position])
            elif self._replayed < len(self.recorded):
                self._replayed += 1
                self._send(self.recorded[self._replayed - 1])
            else:
                self.feeds = request

    def give(self, outputs: Row, seconds: Mapping[str, float]) -> None:
        """The outputs of the step :attr:`feeds` asked for, and this row's share of its batch's time."""
        self.feeds = None
        self.recorded.append(outputs)
        self._replayed += 1
        for stage, spent in seconds.items():
            self.seconds[stage] += spent
        self._send(outputs)

    def _send(self, reply: Any) -> None:
        try:
            self._pending = self._steps.send(reply)
        except StopIteration as finished:
            self._pending = None
            self.result = finished.value
            self.result.seconds = self.seconds


def run_in_lockstep(
    sessions: Mapping[str, Any], manifest: Manifest, runs: Sequence[ClipRun], max_batch: int = 32
) -> int:
    """Advance every run until it is done or wants a frame it lacks; steps run ``max_batch`` rows
    at a time, each row's share of a batch's stage times going to its run. Returns the number of
    batches run."""
    batches = 0
    for run in runs:
        run.advance()
    while waiting := [run for run in runs if run.feeds is not None]:
        for start in range(0, len(waiting), max_batch):
            group = waiting[start : start + max_batch]
            outputs, seconds = run_step(sessions, manifest, stack_rows([run.feeds for run in group]))
            share = {stage: spent / len(group) for stage, spent in seconds.items()}
            for index, run in enumerate(group):
                run.give(row_of(outputs, index), share)
                run.advance()
            batches += 1
    return batches
