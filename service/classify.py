"""One classify request's journey, from its checked options to its answer.

``routes.py`` does the HTTP (admission, the exit option checked by :func:`choose_exit`, the
upload received by ``uploads.py``) and hands over a :class:`ClassifyRequest`;
:func:`classify_video` does the rest: open a decode session (a :class:`LazyClip`: frames are
decoded as the steps ask for them), drive the step loop through the model's batcher (glance ->
policy -> crop -> focus -> classify, with early exit), describe the result, record its stage
and exit metrics. Data flows one way: routes -> classify -> decoding and batching -> back.
"""

from __future__ import annotations

import base64
import math
from dataclasses import dataclass

import numpy as np

from pipeline.early_exit import OperatingPoint, choose_operating_point
from pipeline.frames.patch import box_in_original, patch_origin
from pipeline.frames.sampling import Sampling, sample_indices
from pipeline.frames.transform import FrameGeometry
from pipeline.manifest import Manifest
from pipeline.onnx_steps import ClipResult

from .batching import run_clip_batched
from .decoding import DecoderPool, LazyClip, need_probabilities
from .metrics import Metrics, model_labels
from .problems import Problem, shown
from .registry import ServedModel
from .schemas import (
    ClassifyResponse,
    ExitSummary,
    FocusBox,
    Gmacs,
    LabelScore,
    ModelRef,
    ProcessedFrame,
    SkippedFrame,
    StageTimings,
    VideoInfo,
)


@dataclass(frozen=True)
class ClassifyRequest:
    """What a classify request asks for, its options checked by the HTTP layer."""

    model: ServedModel
    # The video's bytes, received under the upload limits (uploads.py). A bytearray, not
    # bytes: a copy of up to the upload limit would double the memory it holds.
    video: bytes | bytearray
    exit: ExitChoice | None  # from choose_exit; None runs every frame
    top_k: int
    thumbnails: bool  # a JPEG of each decoded frame in the answer (the web page's)
    request_id: str
    sampling: Sampling = "uniform"  # or keyframes: each sample moved to its nearest keyframe


async def classify_video(request: ClassifyRequest, decoder: DecoderPool, metrics: Metrics) -> ClassifyResponse:
    """Classify the request's video: the answer of ``POST /v1/classify``.

    Raises :class:`Problem` (unknown operating point, bad upload, decoder crash or timeout)
    or a frames ``VideoError`` (a file that is not a readable video); both become problem details.
    """
    model, exit = request.model, request.exit
    clip = _open_clip(model, request.video, decoder, exit, request.thumbnails, request.sampling)
    try:
        result = await _run_steps(model, clip, exit)
    finally:
        clip.close()
    _record(metrics, model, result)
    return describe(model, clip, exit, result, request.top_k, request.request_id, request.sampling)


def choose_exit(model: ServedModel, value: str) -> ExitChoice | None:
    """The exit a request's ``exit`` option names for ``model`` (:func:`parse_exit`, then
    :func:`choose_point`); 422 for a bad one."""
    return choose_point(model, parse_exit(value))


def default_exit(model: ServedModel, value: str) -> ExitChoice | None:
    """The exit of a request that names none: the server's default (``ADAFOCUS_DEFAULT_EXIT``) where
    ``model`` has it, else every frame. An imported model has only the ``full`` point until it is
    calibrated; a request to it without ``exit`` is served in full, not refused for a name it
    never asked for. (A request that names a point the model lacks is still a 422.)"""
    try:
        return choose_exit(model, value)
    except Problem:
        return None


def parse_exit(value: str) -> str | float | None:
    """``off`` (every frame), an operating point's name, or a GMACs-per-video budget: a finite
    positive number (422 otherwise, never another operating point in silence)."""
    if value == "off":
        return None
    try:
        budget = float(value)
    except ValueError:
        return value
    if not math.isfinite(budget) or budget <= 0:  # nan, inf, 0, -1, and 1e-400 (which is 0.0)
        raise Problem(
            422,
            "Invalid exit",
            f"an exit budget must be a finite positive number of GMACs per video, got {shown(value)}",
        )
    return budget


@dataclass(frozen=True)
class ExitChoice:
    """The operating point a request exits with, and the name its answer gives it."""

    point: OperatingPoint
    label: str


def choose_point(model: ServedModel, choice: str | float | None) -> ExitChoice | None:
    """The exit for ``choice`` (see :func:`parse_exit`); ``None`` runs every frame.

    One calibrated point can carry several names (on an easy dataset ``fast``, ``balanced`` and
    ``accurate`` may be the same thresholds): the answer names the point as it was asked for.
    An unknown name is a 422 that lists every valid value; so is a budget below the cheapest
    point's expected cost, which the answer gives (a budget of that value chooses that point).
    """
    if choice is None:
        return None
    manifest = model.pipeline.manifest
    if manifest.temporal == "whole_clip" and isinstance(choice, str) and choice != "full":
        raise Problem(
            422,
            "No early exit",
            f"{model.name} v{model.version} runs each video as one whole-clip pass (its temporal shift needs every "
            f"frame before any answer), so it has no operating point {shown(choice)}; use exit=off or full",
        )
    cheapest = min(point.expected_gmacs for point in model.operating_points)
    if isinstance(choice, float) and choice < cheapest:
        raise Problem(
            422,
            "Exit budget too small",
            f"a budget of {choice!r} GMACs per video is below the cheapest operating point of "
            f"{model.name} v{model.version}, which costs {cheapest!r} GMACs per video",
        )
    try:
        point = choose_operating_point(model.operating_points, choice)
    except KeyError:
        names = sorted({name for point in model.operating_points for name in point.names})
        raise Problem(
            422,
            "Unknown operating point",
            f"no operating point named {shown(str(choice))}; use one of: {', '.join(['off', *names])}, "
            f"or a budget in GMACs per video of at least {cheapest!r}",
        ) from None
    if isinstance(choice, str):
        return ExitChoice(point, choice)
    return ExitChoice(point, point.names[0] if point.names else f"p={point.p:.3g}")


def _softmax(logits: np.ndarray, multi_label: bool) -> np.ndarray:
    logits = logits.astype(np.float64)
    if multi_label:
        return 1.0 / (1.0 + np.exp(-logits))
    shifted = np.exp(logits - logits.max())
    return shifted / shifted.sum()


def _open_clip(
    model: ServedModel,
    data: bytes | bytearray,
    decoder: DecoderPool,
    exit: ExitChoice | None,
    thumbnails: bool,
    sampling: Sampling = "uniform",
) -> LazyClip:
    """``data`` as a clip of ``model``'s samples, opened in a decoder process and read as needed.
    :meth:`LazyClip.close` it when done."""
    manifest = model.pipeline.manifest
    frames = manifest.frames
    # Without an exit that can stop early (or with a whole-clip model) every sample is needed: one read.
    order = frames.order if _may_stop_early(exit) and manifest.temporal == "streaming" else None
    # How many videos read each stage (the point's calibrated exits): the reader seeks past
    # samples that few will need rather than decode on through them.
    need = need_probabilities(order, exit.point.exit_fractions) if order is not None and exit is not None else None
    geometry = FrameGeometry(frames.resize, frames.crop)
    session = decoder.session(data, frames.samples, geometry, sampling, need)
    return LazyClip(session, frames.num_frames, thumbnails, order)


def _may_stop_early(exit: ExitChoice | None) -> bool:
    """Whether ``exit`` can stop before the last step: some threshold before it is not +inf
    (``full`` and points like it need every sample, best read in one call)."""
    return exit is not None and any(threshold != math.inf for threshold in exit.point.thresholds[:-1])


async def _run_steps(model: ServedModel, clip: LazyClip, exit: ExitChoice | None) -> ClipResult:
    """The step loop on ``clip`` (its steps batched with other requests')."""
    if model.batcher is None:
        raise RuntimeError("start_batching() was not called")
    thresholds = exit.point.thresholds if exit is not None else None
    return await run_clip_batched(model.pipeline.manifest, model.batcher, clip.frame, thresholds, model.active_clips)


def _record(metrics: Metrics, model: ServedModel, result: ClipResult) -> None:
    labels = model_labels(model.name, model.version)
    metrics.observe_stages(labels, result.seconds)
    metrics.observe_exit(labels, result.exit_step)


def _thumbnail(clip: LazyClip, position: int) -> dict[str, str]:
    """``{"thumbnail": data URL}`` if the sample was decoded with a preview, else nothing (no key)."""
    if position not in clip.previews:
        return {}
    return {"thumbnail": "data:image/jpeg;base64," + base64.b64encode(clip.previews[position]).decode()}


def _processed_frames(manifest: Manifest, clip: LazyClip, result: ClipResult) -> list[ProcessedFrame]:
    """The frames of the processed steps; a whole-clip model's one step processes every sample,
    with its one box on the frames its focus network sees."""
    if manifest.temporal == "streaming":
        return [
            _processed_frame(manifest, clip, step, manifest.frames.order[step], location)
            for step, location in enumerate(result.locations)
        ]
    (location,) = result.locations
    focused = [manifest.frames.network_of(position) == "focus" for position in range(manifest.frames.num_frames)]
    return [
        _processed_frame(manifest, clip, 0, position, location if focus else None)
        for position, focus in enumerate(focused)
    ]


def _processed_frame(
    manifest: Manifest, clip: LazyClip, step: int, index: int, location: np.ndarray | None
) -> ProcessedFrame:
    """Sample ``index``, processed at ``step``, with the focus box in the video's pixels where the
    model crops a patch."""
    frames = manifest.frames
    box = None
    if location is not None and frames.patch_size is not None:
        origin = patch_origin(location, frames.crop, frames.patch_size)
        geometry = FrameGeometry(frames.resize, frames.crop)
        patch = box_in_original(tuple(map(float, origin)), frames.patch_size, geometry, clip.original_size)
        box = FocusBox(**patch.as_dict())
    return ProcessedFrame(
        step=step,
        frame_index=int(clip.frame_indices[index]),
        time_s=float(clip.timestamps[index]),
        box=box,
        **_thumbnail(clip, index),
    )


def _skipped_frames(manifest: Manifest, clip: LazyClip, steps: int) -> list[SkippedFrame]:
    """The sampled frames after the exit: never processed, and never decoded if the exit came at step 0."""
    order = manifest.frames.order
    if steps >= manifest.num_steps:
        return []
    # Where the decoder sampled (or would have): uniform or keyframes, as the reader chose them.
    sampled = clip.sample_frame_indices
    if sampled is None:
        sampled = sample_indices(clip.num_frames, manifest.frames.samples)
    skipped = []
    for step in range(steps, len(order)):
        position = order[step]
        if position in clip.frames:
            entry = SkippedFrame(
                step=step,
                decoded=True,
                frame_index=clip.frame_indices[position],
                time_s=clip.timestamps[position],
                **_thumbnail(clip, position),
            )
        else:  # where it would have been sampled
            entry = SkippedFrame(step=step, decoded=False, frame_index=int(sampled[position]))
        skipped.append(entry)
    return skipped


def describe(
    model: ServedModel,
    clip: LazyClip,
    exit: ExitChoice | None,
    result: ClipResult,
    top_k: int,
    request_id: str,
    sampling: Sampling = "uniform",
) -> ClassifyResponse:
    """The answer for a processed clip: scores, exit, compute spent, the focus boxes, timings."""
    manifest = model.pipeline.manifest
    scores = _softmax(result.logits, manifest.multi_label)
    best = np.argsort(-scores)[:top_k]
    processed = _processed_frames(manifest, clip, result)
    steps = len(result.step_logits)
    # The frame the answer came at: the exit step's (the latest sample, for a whole clip).
    last = processed[-1] if manifest.temporal == "streaming" else max(processed, key=lambda frame: frame.time_s)
    return ClassifyResponse(
        model=ModelRef(name=model.name, version=model.version),
        request_id=request_id,
        labels=[LabelScore(label=manifest.labels[i], score=float(scores[i])) for i in best],
        exit=ExitSummary(
            operating_point=None if exit is None else exit.label,
            step=result.exit_step,
            frame_index=last.frame_index,
            time_s=last.time_s,
            frames_processed=len(processed),
            frames_sampled=manifest.frames.num_frames,
            frames_decoded=int(clip.decoded_frames),
        ),
        gmacs=Gmacs(
            spent=manifest.gmacs_per_frame * len(processed),
            full_model=manifest.gmacs_per_frame * manifest.frames.num_frames,
        ),
        frames=processed,
        skipped_frames=_skipped_frames(manifest, clip, steps),
        video=VideoInfo(width=clip.original_size[0], height=clip.original_size[1], frames=int(clip.num_frames)),
        sampling=sampling,
        timings_s=StageTimings(**result.seconds),
    )
