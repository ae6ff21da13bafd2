"""One video's journey through a batch job: decoded in Ray tasks, classified in Ray actors.

A :class:`Video` record travels between the stages, pickled in the ``video`` column of the
dataset. With an exit that can stop early (streaming models), the job reads a video in two
rounds, as the service reads it in stages (``service/decoding.py``'s ``LazyClip``):

1. a decode task reads the sample of step 0 only (:func:`decode_batch`, ``first=True``);
2. an actor runs the step loops of its batch of videos in lockstep
   (:func:`pipeline.step_batches.run_in_lockstep`); most exit at step 0 and get their answer,
   the others pause at their first missing sample, their steps so far recorded;
3. a decode task opens the paused ones again and reads every sample left;
4. an actor resumes their loops (replaying the recorded steps) and answers them.

Without early exit (``off``, ``full``, a whole-clip model) every sample is read in step 1 and
the job is stages 1 and 2. A file that cannot be decoded becomes a problem (the service's
title and status) at the stage that found it, and passes through the others untouched.
"""

from __future__ import annotations

import dataclasses
import pickle
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.answers import (
    EMPTY_VIDEO,
    OK,
    Exit,
    Problem,
    frames_processed,
    gmacs_spent,
    labels_and_scores,
    problem_of,
    top_labels,
)
from pipeline.frames.decode import LoopFilterSkip
from pipeline.frames.errors import VideoError
from pipeline.frames.limits import DecodeLimits
from pipeline.frames.sampling import Samples
from pipeline.frames.transform import FrameGeometry
from pipeline.manifest import Manifest, reference_clip
from pipeline.onnx_steps import STAGES, OnnxPipeline, create_sessions
from pipeline.repository import LoadedPipeline, load_pipeline
from pipeline.step_batches import ClipRun, Row, run_in_lockstep

from .inputs import size_of
from .isolation import HARD_DEADLINE_MARGIN_S, IsolatedProblem, ReadFunction, read_isolated, read_samples

# Problems of a batch job that the service never meets (it receives bytes, not paths).
UNREADABLE = "Unreadable file"
INTERNAL = "Internal server error"  # the service's title for an unexpected error


@dataclass
class Video:
    """What the job knows of one input so far; ``answer`` is its output row once it has one."""

    path: str
    problem: Problem | None = None
    frames: dict[int, np.ndarray] = field(default_factory=dict)  # (1, S, S, 3) uint8 crop by sample position
    num_frames: int = 0  # frames in the video
    size: tuple[int, int] = (0, 0)  # (width, height) as displayed
    decoded_frames: int = 0
    decode_s: float = 0.0
    recorded: list[Row] = field(default_factory=list)  # outputs of the steps run so far
    seconds: dict[str, float] = field(default_factory=lambda: dict.fromkeys(STAGES, 0.0))
    answer: dict[str, Any] | None = None

    @property
    def settled(self) -> bool:
        """Nothing left to do: answered, or refused."""
        return self.answer is not None or self.problem is not None


def pack(video: Video) -> bytes:
    return pickle.dumps(video, protocol=pickle.HIGHEST_PROTOCOL)


def unpack(data: bytes) -> Video:
    return pickle.loads(data)


# -- decoding (Ray tasks) ---------------------------------------------------------------------
@dataclass(frozen=True)
class DecodeSpec:
    """How a job's model samples a video, and the limits a decode runs under."""

    samples: Samples
    num_samples: int
    geometry: FrameGeometry
    limits: DecodeLimits
    first: tuple[int, ...] | None  # the positions of the first read; None: every sample at once
    isolated: bool = True  # read in the worker's decoder child (batch.isolation), not in the task
    read_function: ReadFunction = read_samples  # tests pass stand-ins that crash or hang
    hard_margin_s: float = HARD_DEADLINE_MARGIN_S
    skip_loop_filter: LoopFilterSkip = "none"  # the service's ADAFOCUS_DECODE_SKIP_LOOP_FILTER

    @classmethod
    def of(
        cls, manifest: Manifest, limits: DecodeLimits, exit: Exit | None, skip_loop_filter: LoopFilterSkip = "none"
    ) -> DecodeSpec:
        frames = manifest.frames
        staged = exit is not None and exit.may_stop_early() and manifest.temporal == "streaming"
        return cls(
            samples=frames.samples,
            num_samples=frames.num_frames,
            geometry=FrameGeometry(frames.resize, frames.crop),
            limits=limits,
            first=(frames.order[0],) if staged else None,
            skip_loop_filter=skip_loop_filter,
        )


def decode_batch(batch: dict[str, np.ndarray], spec: DecodeSpec, first: bool) -> dict[str, np.ndarray]:
    """A Ray Data batch of ``path`` (first round) or ``video`` records, decoded: the first read
    (``first``) or every sample still missing of the videos that paused."""
    if first:
        videos = [Video(path=str(path)) for path in batch["path"]]
    else:
        videos = [unpack(data) for data in batch["video"]]
    for video in videos:
        if not video.settled:
            decode_video(video, spec, first)
    return {"path": np.asarray([v.path for v in videos], dtype=object), "video": _packed(videos)}


def _packed(videos: Sequence[Video]) -> np.ndarray:
    packed = np.empty(len(videos), dtype=object)  # not np.asarray: it would try to make bytes of a fixed width
    packed[:] = [pack(video) for video in videos]
    return packed


def decode_video(video: Video, spec: DecodeSpec, first: bool) -> None:
    """Read ``video``'s samples for this round into it, or record why they cannot be read."""
    wanted = [p for p in range(spec.num_samples) if p not in video.frames]
    if first and spec.first is not None:
        wanted = list(spec.first)
    started = time.perf_counter()
    try:
        if first and size_of(video.path) == 0:
            video.problem = EMPTY_VIDEO  # the service refuses an empty upload before decoding
            return
        _read(video, spec, wanted)
    except VideoError as error:
        video.problem = problem_of(error)
    except IsolatedProblem as error:  # the decoder died on the file twice, or hung
        video.problem = error.problem
    except OSError as error:  # missing, unreadable, a folder: the file's problem, not the job's
        video.problem = Problem(UNREADABLE, 400, f"{type(error).__name__}: {error.strerror or error}")
    except Exception as error:  # noqa: BLE001 - any other failure is this video's row, never the job's end
        video.problem = Problem(INTERNAL, 500, f"decoding failed: {type(error).__name__}: {error}")
    finally:
        video.decode_s += time.perf_counter() - started


def _read(video: Video, spec: DecodeSpec, positions: list[int]) -> None:
    # A second round opens the video again: the wall-time budget is what the first left.
    spent = video.decode_s
    limits = spec.limits
    if spent and limits.max_wall_s is not None:
        limits = dataclasses.replace(limits, max_wall_s=max(limits.max_wall_s - spent, 0.0))
    args = (video.path, spec.samples, spec.geometry, limits, positions, spec.skip_loop_filter)
    if spec.isolated:
        clip = read_isolated(spec.read_function, args, limits, spec.hard_margin_s)
    else:
        clip = spec.read_function(*args)
    for row, position in enumerate(positions):
        video.frames[position] = clip.frames[row : row + 1]
    video.num_frames, video.size = clip.num_frames, clip.original_size
    video.decoded_frames += clip.decoded_frames


# -- inference (Ray actors) -------------------------------------------------------------------
@dataclass(frozen=True)
class ModelSpec:
    """The pipeline version a job runs and how: what every inference actor loads."""

    repo: str
    name: str
    version: int
    exit: Exit | None
    top_k: int = 5
    providers: tuple[str, ...] = ("TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider")
    threads: int = 0
    trt_cache_dir: str | None = None
    trt_fp16: bool = False
    max_batch: int = 32

    def load(self) -> LoadedPipeline:
        return load_pipeline(Path(self.repo), self.name, self.version)


def available_providers(preferred: Iterable[str]) -> list[str]:
    """The preferred ONNX Runtime providers this process has, in order, CPU always last resort."""
    import onnxruntime as ort

    present = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in present]
    return chosen if "CPUExecutionProvider" in chosen else [*chosen, "CPUExecutionProvider"]


class Classifier:
    """A Ray Data actor: one ONNX Runtime session per graph of the model, kept for the whole job.

    Each call runs the step loops of a batch of videos in lockstep; ``final``: the last round,
    which answers every video (earlier rounds pass paused ones on to be decoded further)."""

    def __init__(self, model: ModelSpec, final: bool) -> None:
        self.model, self.final = model, final
        pipeline = model.load()
        self.manifest = pipeline.manifest
        providers = available_providers(model.providers)
        options = {"cache_dir": model.trt_cache_dir, "max_batch": max(model.max_batch, 1), "fp16": model.trt_fp16}
        self.sessions = create_sessions(pipeline, providers, model.threads, **options)
        self.thresholds = model.exit.thresholds if model.exit is not None else None
        _check_reference(OnnxPipeline(pipeline, self.sessions))

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        videos = [unpack(data) for data in batch["video"]]
        runs = [(v, ClipRun(self.manifest, self.thresholds, v.frames, v.recorded)) for v in videos if not v.settled]
        run_in_lockstep(self.sessions, self.manifest, [run for _, run in runs], self.model.max_batch)
        for video, run in runs:
            for stage, spent in run.seconds.items():
                video.seconds[stage] += spent
            if run.done:
                video.answer = answer_row(self.model, self.manifest, video, run)
            elif self.final:  # every sample was read: a loop cannot still want one
                video.problem = Problem(INTERNAL, 500, f"sample {run.wanted} was never decoded")
            else:
                video.recorded = run.recorded
        for video in videos:
            if video.problem is not None and video.answer is None:
                video.answer = problem_row(self.model, self.manifest, video)
            if video.answer is not None:
                video.frames, video.recorded = {}, []  # answered: nothing more to carry
        return {"path": batch["path"], "video": _packed(videos)}


def classifier(model: ModelSpec, final: bool) -> type[Classifier]:
    """:class:`Classifier` bound to ``model`` and ``final``, for ``map_batches``: the class carries
    them, so Ray stores no constructor arguments apart (an actor restarted after its node was
    lost could not read those back)."""

    class BoundClassifier(Classifier):
        def __init__(self) -> None:
            super().__init__(model, final)

    return BoundClassifier


def _check_reference(runner: OnnxPipeline) -> None:
    """The service's warm-up: the manifest's reference clip must give the outputs recorded at export."""
    manifest = runner.manifest
    if manifest.reference is None:
        return
    result = runner.run_clip(reference_clip(manifest.frames))
    mismatch = manifest.reference.mismatch(result.step_logits)
    if mismatch is not None:
        raise RuntimeError(
            f"{manifest.name} v{manifest.version}: outputs differ from the manifest's reference: {mismatch}"
        )


# -- output rows ------------------------------------------------------------------------------
def _common(model: ModelSpec, manifest: Manifest, video: Video) -> dict[str, Any]:
    known = video.num_frames > 0
    return {
        "path": video.path,
        "model": manifest.name,
        "version": manifest.version,
        "operating_point": model.exit.label if model.exit is not None else None,
        "frames_sampled": manifest.frames.num_frames,
        "frames_decoded": video.decoded_frames,
        "video_frames": video.num_frames if known else None,
        "width": video.size[0] if known else None,
        "height": video.size[1] if known else None,
        "decode_s": video.decode_s,
        **{f"{stage}_s": video.seconds[stage] for stage in STAGES},
    }


def answer_row(model: ModelSpec, manifest: Manifest, video: Video, run: ClipRun) -> dict[str, Any]:
    """The row of a classified video: the service's labels, scores, exit step and GMACs."""
    result = run.result
    assert result is not None
    labels, scores = labels_and_scores(top_labels(manifest, result.logits, model.top_k))
    processed = frames_processed(manifest, len(result.step_logits))
    return {
        **_common(model, manifest, video),
        "status": OK,
        "http_status": 200,
        "detail": None,
        "labels": labels,
        "scores": scores,
        "exit_step": result.exit_step,
        "frames_processed": processed,
        "gmacs": gmacs_spent(manifest, processed),
    }


def problem_row(model: ModelSpec, manifest: Manifest, video: Video) -> dict[str, Any]:
    """The row of a video that got no answer: its problem's title as the status."""
    problem = video.problem
    assert problem is not None
    return {
        **_common(model, manifest, video),
        "status": problem.title,
        "http_status": problem.status,
        "detail": problem.detail,
        "labels": [],
        "scores": [],
        "exit_step": None,
        "frames_processed": 0,
        "gmacs": 0.0,
    }
