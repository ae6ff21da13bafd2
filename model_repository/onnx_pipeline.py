"""Run an exported pipeline on ONNX Runtime, step by step with early exit (torch-free).

This is the reference loop: for each step t (frame ``order[t]``), glance (+ policy), focus on
the patch, classify with the running state, and stop at the first step whose confidence
reaches the operating point's threshold; nothing after the exit step is computed. The
service batches the same calls across requests.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from early_exit import confidence

from .loader import LoadedPipeline
from .manifest import GraphSpec, Manifest


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
    restart loads engines instead of rebuilding them), and FP16 on request.
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
                options.update(
                    trt_engine_cache_enable="True",
                    trt_engine_cache_path=str(cache_dir),
                    trt_timing_cache_enable="True",
                    trt_timing_cache_path=str(cache_dir),
                )
            chosen.append((provider, options))
        else:
            chosen.append(provider)
    return chosen


def create_sessions(
    pipeline: LoadedPipeline,
    providers: Sequence[str] = ("CPUExecutionProvider",),
    threads: int = 0,
    allow_spinning: bool = False,
    **options,
) -> dict:
    """One ``onnxruntime.InferenceSession`` per graph; providers in order of preference (:func:`provider_options`).

    ``allow_spinning``: let idle intra-op threads spin for the next call (ONNX Runtime's
    default; lower latency for back-to-back calls on an otherwise idle machine).
    """
    import onnxruntime as ort

    session_options = ort.SessionOptions()
    if threads:
        session_options.intra_op_num_threads = threads
    # A spinning intra-op pool keeps its threads busy between calls; in the service those
    # cycles belong to the decoder processes and the other sessions (measured on 2 cores:
    # 36 -> 59-66 videos/s at concurrency 16 with spinning off).
    session_options.add_session_config_entry("session.intra_op.allow_spinning", "1" if allow_spinning else "0")
    return {
        name: ort.InferenceSession(
            str(pipeline.graph_path(name)), session_options, providers=provider_options(graph, providers, **options)
        )
        for name, graph in pipeline.manifest.graphs.items()
    }


GraphCall = tuple[str, dict]  # (graph name, one row of inputs), or (FRAME, {"position": p})
FRAME = "frame"  # not a graph: the loop asks its driver for sample ``position`` (decoded lazily or not)
STAGE_OF_GRAPH = {FRAME: "decode", "glance": "glance", "focus": "focus", "classifier": "classify"}


def clip_steps(
    manifest: Manifest, thresholds: Sequence[float] | None = None
) -> Generator[GraphCall, list[np.ndarray], ClipResult]:
    """The step loop of one clip, without running anything: it yields each call it needs.

    Before each step it asks for that step's frame (``FRAME``, by sample position), then for
    the graph calls. A driver sends back the outputs (one row each) and finally receives the
    :class:`ClipResult` from ``StopIteration``. The same loop serves the plain sequential
    driver (:meth:`OnnxPipeline.run_clip`) and the service's driver, which decodes frames only
    when asked (nothing after the exit) and batches graph calls of many clips together.

    Frames are ``(1, 3, S, S)`` float32, normalised; ``thresholds``: one per step (an
    operating point's), or ``None`` to process every frame.
    """
    order = manifest.frames.order
    policy_state = np.zeros((1, manifest.state_sizes["policy"]), dtype=np.float32)
    classifier_state = np.zeros((1, manifest.state_sizes["classifier"]), dtype=np.float32)
    has_glance, has_focus = "glance" in manifest.graphs, "focus" in manifest.graphs
    result = ClipResult()
    for step, index in enumerate(order):
        (frame,) = yield FRAME, {"position": index}
        frame = np.ascontiguousarray(frame, dtype=np.float32)
        features, location = {}, None
        if has_glance:
            if manifest.focus == "policy":
                glance, location, policy_state = yield "glance", {"frames": frame, "policy_state": policy_state}
            else:
                (glance,) = yield "glance", {"frames": frame}
            features["global_features"] = glance
        if manifest.focus == "centre":
            location = np.full((1, 2), 0.5, dtype=np.float32)
        if has_focus:
            feeds = {"frames": frame} if manifest.focus == "full_frame" else {"frames": frame, "location": location}
            (features["local_features"],) = yield "focus", feeds
        feeds = {**features, "classifier_state": classifier_state, "step": np.array([step], dtype=np.int64)}
        logits, classifier_state = yield "classifier", feeds
        result.step_logits.append(logits[0])
        result.locations.append(None if location is None else location[0])
        result.exit_step = step
        if thresholds is not None:
            score = float(confidence(logits[0], manifest.confidence, manifest.multi_label))
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
        """Run :func:`clip_steps` to the end on ``(T, 3, S, S)`` frames in sampling order."""
        if frames.shape[0] != self.manifest.frames.num_frames:
            raise ValueError(f"expected {self.manifest.frames.num_frames} frames, got {frames.shape[0]}")
        steps = clip_steps(self.manifest, thresholds)
        seconds = {stage: 0.0 for stage in STAGE_OF_GRAPH.values() if stage != "decode"}
        try:
            graph, feeds = next(steps)
            while True:
                if graph == FRAME:
                    position = feeds["position"]
                    graph, feeds = steps.send([frames[position : position + 1]])
                    continue
                started = time.perf_counter()
                outputs = self.sessions[graph].run(None, feeds)
                seconds[STAGE_OF_GRAPH[graph]] += time.perf_counter() - started
                graph, feeds = steps.send(outputs)
        except StopIteration as finished:
            result: ClipResult = finished.value
        result.seconds = seconds
        return result
