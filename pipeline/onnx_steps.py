"""Run an exported pipeline on ONNX Runtime, step by step with early exit (torch-free).

This is the reference loop: for each step t (frame ``order[t]``), glance (+ policy), focus on
the patch, classify with the running state, and stop at the first step whose confidence
reaches the operating point's threshold; nothing after the exit step is computed. The
service runs the steps of many requests as one batch (:func:`run_step`).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Generator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.early_exit import confidence
from pipeline.frames.transform import Normalisation

from .manifest import GraphSpec, Manifest
from .repository import LoadedPipeline


@dataclass
class ClipResult:
    """What one clip gave: logits after each processed step, patch locations, the exit step."""

    step_logits: list[np.ndarray] = field(default_factory=list)  # (K,) per processed step
    locations: list[np.ndarray | None] = field(default_factory=list)  # (2,) in (0, 1)^2, or None
    exit_step: int = -1
    seconds: dict[str, float] = field(default_factory=lambda: {"glance": 0.0, "focus": 0.0, "classify": 0.0})

    @property
    def logits(self) -> np.ndarray:
        return self.step_logits[self.exit_step]


def tensorrt_profile(graph: GraphSpec, batch: int) -> str:
    """ONNX Runtime's TensorRT profile string for ``graph`` at ``batch`` rows: ``name:1x3x128x128,...``."""
    return ",".join(
        f"{spec.name}:" + "x".join(str(batch if d == "batch" else d) for d in spec.shape) for spec in graph.inputs
    )


def provider_options(
    graph: GraphSpec,
    providers: Sequence[str],
    cache_dir: str | Path | None = None,
    max_batch: int = 64,
    opt_batch: int = 8,
    fp16: bool = False,
) -> list[str | tuple[str, dict[str, str]]]:
    """Execution providers for one graph, in order of preference, with their options.

    TensorRT gets an explicit optimisation profile for the batch axis (1 .. ``max_batch``,
    tuned for ``opt_batch``), an engine cache and a timing cache under ``cache_dir`` (so a
    restart loads engines instead of rebuilding them), and FP16 on request. FP16 engines are
    cached in ``cache_dir/fp16``: ONNX Runtime's engine cache does not tell precisions apart (its
    documentation asks for the cache to be cleared when the precision changes), so turning
    FP16 on or off must not pick up the other precision's engines.
    """
    chosen: list[str | tuple[str, dict[str, str]]] = []
    for provider in providers:
        if provider == "TensorrtExecutionProvider":
            options = {
                "trt_profile_min_shapes": tensorrt_profile(graph, 1),
                "trt_profile_opt_shapes": tensorrt_profile(graph, opt_batch),
                "trt_profile_max_shapes": tensorrt_profile(graph, max_batch),
                "trt_fp16_enable": str(fp16),
            }
            if cache_dir is not None:
                engines = Path(cache_dir) / "fp16" if fp16 else Path(cache_dir)
                options.update(
                    trt_engine_cache_enable="True",
                    trt_engine_cache_path=str(engines),
                    trt_timing_cache_enable="True",
                    trt_timing_cache_path=str(engines),
                )
            chosen.append((provider, options))
        else:
            chosen.append(provider)
    return chosen


_shared_cpu_arena_registered = False


def _register_shared_cpu_arena() -> None:
    """One CPU memory arena for every session of the process that asks for it, which grows by
    what is requested rather than by powers of two (ONNX Runtime's ``kSameAsRequested``).
    Each session's own arena keeps the peak of its largest batch for good: p128 at batch 32
    held 596 MB over its weights' 230, one shared arena 523 (and the glance, focus and
    classifier sessions, and the models, no longer keep one peak each)."""
    global _shared_cpu_arena_registered
    if _shared_cpu_arena_registered:
        return
    import onnxruntime as ort

    memory = ort.OrtMemoryInfo("Cpu", ort.OrtAllocatorType.ORT_ARENA_ALLOCATOR, 0, ort.OrtMemType.DEFAULT)
    # OrtArenaCfg(max_mem: 0 = no cap, extend strategy: 1 = kSameAsRequested, chunk defaults)
    ort.create_and_register_allocator(memory, ort.OrtArenaCfg(0, 1, -1, -1))
    _shared_cpu_arena_registered = True


class ArenaShrinkingSession:
    """An ``InferenceSession`` whose every run hands the CPU arena's free chunks back to the system.

    ONNX Runtime's arena keeps the peak of the largest batch it has served for good; with the
    run option ``memory.enable_memory_arena_shrinkage`` it returns the chunks the run no longer
    uses once the run ends. Measured on the paper-size p128 model (batch-16 steps, 2 cores):
    resident memory after the steps 803 -> 623 MB, peak 803 -> 728 MB, time per frame within
    run-to-run noise. Everything else (``get_inputs``, ``get_providers``, ...) is the session's.
    """

    def __init__(self, session: Any) -> None:
        import onnxruntime as ort

        self.session = session
        self.run_options = ort.RunOptions()
        self.run_options.add_run_config_entry("memory.enable_memory_arena_shrinkage", "cpu:0")

    def run(self, output_names: Sequence[str] | None, feeds: Mapping[str, np.ndarray]) -> list[np.ndarray]:
        return self.session.run(output_names, feeds, self.run_options)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.session, name)


def create_sessions(
    pipeline: LoadedPipeline,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    threads: int = 0,
    allow_spinning: bool = False,
    shared_cpu_arena: bool = False,
    shrink_arena: bool = False,
    **options,
) -> dict:
    """One ``onnxruntime.InferenceSession`` per graph; providers in order of preference (:func:`provider_options`).

    ``allow_spinning``: let idle intra-op threads spin for the next call (ONNX Runtime's
    default; lower latency for back-to-back calls on an otherwise idle machine).
    ``shared_cpu_arena``: allocate CPU tensors from one process-wide arena
    (:func:`_register_shared_cpu_arena`) instead of one arena per session (a server's memory).
    ``shrink_arena``: after each run, give the arena's unused memory back
    (:class:`ArenaShrinkingSession`).
    """
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    if threads:
        session_options.intra_op_num_threads = threads
    if shared_cpu_arena:
        _register_shared_cpu_arena()
        session_options.add_session_config_entry("session.use_env_allocators", "1")
    # A spinning intra-op pool keeps its threads busy between calls; in the service those
    # cycles belong to the decoder processes and the other sessions (measured on 2 cores:
    # 36 -> 59-66 videos/s at concurrency 16 with spinning off).
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    sessions = {
        name: ort.InferenceSession(
            str(pipeline.graph_path(name)), session_options, providers=provider_options(graph, providers, **options)
        )
        for name, graph in pipeline.manifest.graphs.items()
    }
    if shrink_arena:
        return {name: ArenaShrinkingSession(session) for name, session in sessions.items()}
    return sessions


@functools.lru_cache(maxsize=32)
def _normalisation(mean: tuple[float, ...], std: tuple[float, ...]) -> Normalisation:
    return Normalisation(mean=mean, std=std)  # type: ignore[arg-type]  # the manifest checks there are 3


def normalisation_of(manifest: Manifest) -> Normalisation:
    """The normalisation ``manifest`` was trained with (``frames.mean``, ``frames.std``).

    One instance per statistics (the manifest is frozen, so the cache is keyed on its values):
    its lookup table is built once, not in every batch."""
    return _normalisation(tuple(manifest.frames.mean), tuple(manifest.frames.std))


Call = tuple[str, dict]  # (STEP, one row of step inputs), or (FRAME, {"position": p})
FRAME = "frame"  # the loop asks its driver for sample ``position`` (decoded lazily or not)
STEP = "step"  # the loop asks its driver to run one step (:func:`run_step`) on a row
STAGES = ("glance", "focus", "classify")  # where a step's time goes (the response's stage timings)


def run_step(
    sessions: Mapping[str, Any], manifest: Manifest, feeds: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """One step of the pipeline on a batch of rows: glance (+ policy), focus on the patch, classify.

    ``feeds``: ``frames`` ``(B, 3, S, S)`` float32 (normalised) or ``(B, S, S, 3)`` uint8 crops
    (normalised here with the manifest's statistics, :func:`normalisation_of`), ``policy_state`` and
    ``classifier_state`` (the running states, ``(B, n)``), ``step`` ``(B,)`` int64. Rows are
    independent (different videos at different steps can share a batch). Returns the
    outputs, ``logits``, ``classifier_state``, ``policy_state`` and, where the pipeline
    picks a patch, ``location`` ``(B, 2)`` in (0, 1); and the seconds spent in each stage.
    The service runs it on rows of many requests at once; :class:`OnnxPipeline`, one row.
    A whole-clip pipeline's one step is :func:`run_clip_pass`.
    """
    if manifest.temporal == "whole_clip":
        return run_clip_pass(sessions, manifest, feeds)
    started = time.perf_counter()  # normalising the crops counts as glance time: its input
    frames = feeds["frames"]
    if frames.dtype == np.uint8:
        frames = normalisation_of(manifest)(frames)
    outputs: dict[str, np.ndarray] = {"policy_state": feeds["policy_state"]}
    features: dict[str, np.ndarray] = {}
    if "glance" in sessions:
        if manifest.focus == "policy":
            glance_feeds = {"frames": frames, "policy_state": feeds["policy_state"]}
            features["global_features"], outputs["location"], outputs["policy_state"] = sessions["glance"].run(
                None, glance_feeds
            )
        else:
            (features["global_features"],) = sessions["glance"].run(None, {"frames": frames})
    if manifest.focus == "centre":
        outputs["location"] = np.full((len(frames), 2), 0.5, dtype=np.float32)
    glanced = time.perf_counter()
    if "focus" in sessions:
        focus_feeds = {"frames": frames}
        if manifest.focus != "full_frame":
            focus_feeds["location"] = outputs["location"]
        (features["local_features"],) = sessions["focus"].run(None, focus_feeds)
    focused = time.perf_counter()
    classifier_feeds = {**features, "classifier_state": feeds["classifier_state"], "step": feeds["step"]}
    outputs["logits"], outputs["classifier_state"] = sessions["classifier"].run(None, classifier_feeds)
    seconds = {"glance": glanced - started, "focus": focused - glanced, "classify": time.perf_counter() - focused}
    return outputs, seconds


def run_clip_pass(
    sessions: Mapping[str, Any], manifest: Manifest, feeds: Mapping[str, np.ndarray]
) -> tuple[dict[str, np.ndarray], dict[str, float]]:
    """The one step of a whole-clip pipeline on a batch of clips: the ``clip`` graph.

    ``feeds["frames"]``: ``(B, T, 3, S, S)`` float32 (normalised) or ``(B, T, S, S, 3)`` uint8
    crops, every sampled frame of each clip in sample order. Returns ``logits`` ``(B, K)`` and
    ``location`` ``(B, 2)`` (one patch per clip), and the seconds: one graph does the work of
    all three stages, so its time is reported as ``classify``.
    """
    started = time.perf_counter()
    frames = feeds["frames"]
    if frames.dtype == np.uint8:
        clips, steps = frames.shape[:2]
        frames = normalisation_of(manifest)(frames.reshape(clips * steps, *frames.shape[2:]))
        frames = frames.reshape(clips, steps, *frames.shape[1:])
    logits, location = sessions["clip"].run(["logits", "location"], {"frames": frames})
    seconds = {"glance": 0.0, "focus": 0.0, "classify": time.perf_counter() - started}
    return {"logits": logits, "location": location}, seconds


def _whole_clip(manifest: Manifest) -> Generator[Call, Any, ClipResult]:
    """:func:`clip_steps` of a whole-clip pipeline: every sample, then the one pass (step 0)."""
    frames = []
    for position in range(manifest.frames.num_frames):
        frame = yield FRAME, {"position": position}
        frames.append(np.ascontiguousarray(frame, dtype=np.uint8 if frame.dtype == np.uint8 else np.float32))
    outputs = yield STEP, {"frames": np.concatenate(frames)[None]}
    return ClipResult(step_logits=[outputs["logits"][0]], locations=[outputs["location"][0]], exit_step=0)


def clip_steps(manifest: Manifest, thresholds: Sequence[float] | None = None) -> Generator[Call, Any, ClipResult]:
    """The step loop of one clip, without running anything: it yields each call it needs.

    Before each step it asks for that step's frame (``FRAME``, by sample position; the
    driver sends back the ``(1, 3, S, S)`` normalised frame, or the ``(1, S, S, 3)`` uint8
    crop that :func:`run_step` normalises), then for the step
    (``STEP`` with one row of :func:`run_step`'s inputs; the driver sends back that row's
    outputs), and finally returns the :class:`ClipResult` (``StopIteration.value``). The
    same loop serves the plain sequential driver (:meth:`OnnxPipeline.run_clip`) and the
    service's, which decodes frames only when asked (nothing after the exit) and runs the
    steps of many clips as one batch.

    ``thresholds``: one per step (an operating point's), or ``None`` to process every frame.
    A whole-clip pipeline asks for every frame, then for its one step (``frames`` ``(1, T, ...)``),
    which always exits.
    """
    if manifest.temporal == "whole_clip":
        return (yield from _whole_clip(manifest))
    policy_state = np.zeros((1, manifest.state_sizes["policy"]), dtype=np.float32)
    classifier_state = np.zeros((1, manifest.state_sizes["classifier"]), dtype=np.float32)
    result = ClipResult()
    for step, index in enumerate(manifest.frames.order):
        frame = yield FRAME, {"position": index}
        feeds = {
            "frames": np.ascontiguousarray(frame, dtype=np.uint8 if frame.dtype == np.uint8 else np.float32),
            "policy_state": policy_state,
            "classifier_state": classifier_state,
            "step": np.array([step], dtype=np.int64),
        }
        outputs = yield STEP, feeds
        policy_state, classifier_state = outputs["policy_state"], outputs["classifier_state"]
        logits = outputs["logits"][0]
        result.step_logits.append(logits)
        result.locations.append(outputs["location"][0] if "location" in outputs else None)
        result.exit_step = step
        if thresholds is not None:
            score = float(confidence(logits, manifest.confidence, manifest.multi_label))
            if score >= thresholds[step]:
                break
    return result


class OnnxPipeline:
    """One pipeline version on ONNX Runtime; :meth:`run_clip` processes one clip, one call at a time."""

    def __init__(self, pipeline: LoadedPipeline, sessions: dict | None = None) -> None:
        self.pipeline = pipeline
        self.manifest = pipeline.manifest
        self.sessions = sessions if sessions is not None else create_sessions(pipeline)

    def run_clip(self, frames: np.ndarray, thresholds: Sequence[float] | None = None) -> ClipResult:
        """Run :func:`clip_steps` to the end on ``(T, 3, S, S)`` normalised frames (or ``(T, S, S, 3)``
        uint8 crops) in sampling order."""
        if frames.shape[0] != self.manifest.frames.num_frames:
            raise ValueError(f"expected {self.manifest.frames.num_frames} frames, got {frames.shape[0]}")
        steps = clip_steps(self.manifest, thresholds)
        seconds = dict.fromkeys(STAGES, 0.0)
        try:
            call, feeds = next(steps)
            while True:
                if call == FRAME:
                    position = feeds["position"]
                    reply: Any = frames[position : position + 1]
                else:
                    reply, took = run_step(self.sessions, self.manifest, feeds)
                    for stage, spent in took.items():
                        seconds[stage] += spent
                call, feeds = steps.send(reply)
        except StopIteration as finished:
            result: ClipResult = finished.value
        result.seconds = seconds
        return result
