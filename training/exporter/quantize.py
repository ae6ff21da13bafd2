"""INT8 versions of exported pipelines: ONNX Runtime static quantization.

    python training/export.py --int8 adafocus_v2:2 --data data/synthetic --out model_repo

:func:`quantize_pipeline` reads a pipeline version of a repository and writes a new version
whose heavy graphs (glance, focus, or a whole-clip model's clip graph) are quantized to INT8:

1. The FP32 pipeline runs over clips of the data's **calibration split** (every step, the same
   frame pipeline as the service); the inputs each graph receives are recorded.
2. Each heavy graph is pre-processed (shape inference, ONNX Runtime's graph optimisations) and
   quantized statically in the QDQ format: weights INT8 per output channel, activations UINT8
   with ranges from the recorded inputs (min / max). The classifier graph stays FP32: its
   MACs are a rounding error beside the CNNs', and its logits decide the exit.
3. The INT8 pipeline runs over the same calibration clips and the **exit thresholds are
   calibrated again** on its own logits (the FP32 thresholds assume the FP32 confidences).
4. Both pipelines run over the test split (when the data has one); the manifest's source
   records the INT8 test top-1, and the result carries both, so that the accuracy cost of
   INT8 is stated, not assumed.

The manifest of the new version says ``"precision": "int8"``; its reference outputs are the
INT8 graphs' own, checked with a wider tolerance (INT8 kernels differ between CPUs: VNNI or not).
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from pipeline.early_exit import OperatingPoint, calibrate, name_operating_points, simulate_exit
from pipeline.early_exit import confidence as exit_confidence
from pipeline.frames.decode import read_clip
from pipeline.frames.transform import FrameGeometry
from pipeline.manifest import Manifest, manifest_schema
from pipeline.onnx_steps import OnnxPipeline, create_sessions, normalisation_of
from pipeline.repository import LoadedPipeline, find_pipelines, load_pipeline, sha256_of
from training.data.splits import load_splits
from training.data.videos import VideoSample
from training.engine.checkpoint import atomic_write_text
from training.exporter.repository import with_reference

# The graphs that hold the CNNs (and nearly every MAC); the classifier stays FP32.
QUANTIZED_GRAPHS = ("glance", "focus", "clip")
# Recorded rows per calibration batch: the min/max calibrator sees the same values either way.
CALIBRATION_BATCH = 16
# INT8 kernels differ between CPUs (VNNI, AMX, AVX2's saturating u8s8 path): the reference
# outputs are checked with wider tolerances (absolute, relative) than FP32's (0.15, 0.02).
INT8_REFERENCE_ATOL, INT8_REFERENCE_RTOL = 0.5, 0.05


@dataclass
class QuantizedPipeline:
    """What :func:`quantize_pipeline` wrote and measured."""

    manifest_path: Path
    calibration_clips: int
    test_clips: int
    # top-1 every frame, and at each named operating point, on the test split (None: no test split)
    fp32_test: dict[str, float] | None
    int8_test: dict[str, float] | None
    points: list[OperatingPoint] = field(default_factory=list)


class _RecordingSession:
    """An ONNX Runtime session that keeps a copy of every input it is given."""

    def __init__(self, session: Any) -> None:
        self.session = session
        self.feeds: list[dict[str, np.ndarray]] = []

    def run(self, output_names: Any, feeds: dict[str, np.ndarray]) -> Any:
        self.feeds.append({name: np.array(value, copy=True) for name, value in feeds.items()})
        return self.session.run(output_names, feeds)


class _BatchedReader:
    """ONNX Runtime's ``CalibrationDataReader`` protocol over recorded feeds, in batches."""

    def __init__(self, feeds: list[dict[str, np.ndarray]], batch: int = CALIBRATION_BATCH) -> None:
        self._batches = iter(
            {name: np.concatenate([row[name] for row in feeds[start : start + batch]]) for name in feeds[0]}
            for start in range(0, len(feeds), batch)
        )

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._batches, None)


def _clip_frames(pipeline: LoadedPipeline, samples: Sequence[VideoSample]) -> Iterator[np.ndarray]:
    """Each video's normalised samples, decoded as the service decodes them."""
    frames = pipeline.manifest.frames
    geometry = FrameGeometry(frames.resize, frames.crop)
    for sample in samples:
        yield read_clip(sample.path, frames.samples, geometry, normalisation=normalisation_of(pipeline.manifest)).frames


def _targets(samples: Sequence[VideoSample], classes: int, multi_label: bool) -> np.ndarray:
    if not multi_label:
        return np.array([sample.labels[0] for sample in samples], dtype=np.int64)
    hot = np.zeros((len(samples), classes), dtype=np.int64)
    for row, sample in enumerate(samples):
        hot[row, list(sample.labels)] = 1
    return hot


def _step_logits(runner: OnnxPipeline, clips: Sequence[np.ndarray]) -> np.ndarray:
    """``(N, T, K)``: every step's logits of every clip (no early exit)."""
    return np.stack([np.asarray(runner.run_clip(clip).step_logits) for clip in clips])


def _record_inputs(pipeline: LoadedPipeline, clips: Sequence[np.ndarray]) -> dict[str, list[dict[str, np.ndarray]]]:
    """The inputs each graph receives while the FP32 pipeline runs every step of ``clips``."""
    recorders = {name: _RecordingSession(session) for name, session in create_sessions(pipeline).items()}
    runner = OnnxPipeline(pipeline, recorders)
    for clip in clips:
        runner.run_clip(clip)
    return {name: recorder.feeds for name, recorder in recorders.items()}


def crop_nodes(model: Any) -> list[str]:
    """The nodes that compute the focus crop: each ``GridSample`` and every node it depends on
    (the patch's sampling grid from the location). They stay FP32: a quantized grid moves the
    patch, and a quantized frame blurs it (quantizing them cost the shipped model 6 points of
    top-1; keeping them FP32, none)."""
    producer = {output: node for node in model.graph.node for output in node.output}
    keep: dict[str, None] = {}
    stack = [node for node in model.graph.node if node.op_type == "GridSample"]
    while stack:
        node = stack.pop()
        if node.name in keep:
            continue
        keep[node.name] = None
        stack.extend(producer[name] for name in node.input if name in producer)
    return list(keep)


def _quantize_graph(source: Path, target: Path, feeds: list[dict[str, np.ndarray]]) -> None:
    """``source`` quantized statically (QDQ, INT8 weights per channel, UINT8 activations) into
    ``target``, the crop (:func:`crop_nodes`) left in FP32."""
    import onnx
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as work:
        prepared = Path(work) / "prepared.onnx"
        quant_pre_process(str(source), str(prepared))
        quantize_static(
            str(prepared),
            str(target),
            _BatchedReader(feeds),
            quant_format=QuantFormat.QDQ,
            per_channel=True,
            activation_type=QuantType.QUInt8,
            weight_type=QuantType.QInt8,
            nodes_to_exclude=crop_nodes(onnx.load(str(prepared))),
        )


def _test_top1(manifest: Manifest, logits: np.ndarray, targets: np.ndarray, points: Sequence[OperatingPoint]) -> dict:
    """Top-1 with every frame (``full``) and at each named point (single-label data)."""
    confidences = exit_confidence(logits, manifest.confidence, manifest.multi_label)
    result = {}
    for point in points:
        steps = simulate_exit(confidences, point.thresholds)
        chosen = logits[np.arange(len(steps)), steps]
        for name in point.names:
            result[name] = float((chosen.argmax(axis=1) == targets).mean())
    return result


def _next_version(root: Path, name: str) -> int:
    return max(find_pipelines(root).get(name, [0])) + 1


def quantize_pipeline(
    root: str | Path,
    name: str,
    version: int,
    data: str | Path | None,
    new_version: int | None = None,
    calibration_clips: int = 64,
    evaluate_test: bool = True,
    recalibrate: bool = True,
    log: Callable[[str], None] = print,
) -> QuantizedPipeline:
    """Write an INT8 version of ``name`` v``version`` into the repository ``root`` (module
    docstring); ``data``: the dataset whose calibration split sets the activation ranges and
    the exit thresholds (None: the synthetic benchmark, generated if missing);
    ``evaluate_test``: compare both precisions on its test split; ``recalibrate=False`` keeps
    the FP32 version's operating points (a benchmark's forced exits)."""
    root = Path(root)
    fp32 = load_pipeline(root, name, version)
    if fp32.manifest.precision != "fp32":
        raise ValueError(f"{name} v{version} is already {fp32.manifest.precision}")
    new_version = new_version or _next_version(root, name)
    if new_version in find_pipelines(root).get(name, []):
        raise ValueError(f"{name} version {new_version} already exists in {root}; choose another --version")
    splits = load_splits(data)
    calibration = splits.calibration[:calibration_clips]
    log(f"decoding {len(calibration)} calibration clips and recording the FP32 graphs' inputs")
    clips = list(_clip_frames(fp32, calibration))
    recorded = _record_inputs(fp32, clips)

    files = dict(fp32.manifest.files)
    graphs = {}
    for graph_name, graph in fp32.manifest.graphs.items():
        spec = graph.model_dump(mode="json")
        if graph_name in QUANTIZED_GRAPHS:
            relative = f"{graph.triton_model}/{new_version}/model.onnx"
            log(f"quantizing {graph_name} ({len(recorded[graph_name])} recorded inputs)")
            _quantize_graph(root / graph.file, root / relative, recorded[graph_name])
            files.pop(graph.file)
            files[relative] = sha256_of(root / relative)
            spec["file"] = relative
        graphs[graph_name] = spec

    manifest = Manifest.model_validate(
        {
            **fp32.manifest.model_dump(mode="json"),
            "version": new_version,
            "precision": "int8",
            "graphs": graphs,
            "files": files,
            "reference": None,
        }  # fmt: skip
    )
    int8 = LoadedPipeline(root, manifest)
    runner = OnnxPipeline(int8, create_sessions(int8))
    if recalibrate:
        log("calibrating the exit thresholds on the INT8 pipeline's own logits")
        targets = _targets(calibration, len(manifest.labels), manifest.multi_label)
        per_step = manifest.gmacs_per_frame * manifest.frames.num_frames / manifest.num_steps
        step_gmacs = [per_step] * manifest.num_steps
        logits = _step_logits(runner, clips)
        calibrated = calibrate(logits, targets, step_gmacs, manifest.confidence, manifest.multi_label)
        points = name_operating_points(calibrated)
    else:
        points = [OperatingPoint.from_dict(p.model_dump()) for p in fp32.manifest.operating_points]
    test = splits.test if evaluate_test else []
    fp32_test, int8_test = _compare_on_test(fp32, runner, test, points, manifest)
    source = manifest.source.model_dump(mode="json")
    source["config"] = {
        **source["config"],
        "int8": {
            "from_version": version,
            "calibration_data": splits.source,
            "calibration_clips": len(calibration),
            "fp32_test": fp32_test,
        },
    }
    if int8_test is not None:
        source["test_top1"], source["test_videos"] = int8_test["full"], len(test)
    manifest = Manifest.model_validate(
        {**manifest.model_dump(mode="json"), "operating_points": [p.as_dict() for p in points], "source": source}
    )
    manifest = with_reference(root, manifest, atol=INT8_REFERENCE_ATOL, rtol=INT8_REFERENCE_RTOL)
    atomic_write_text(root / "manifest.schema.json", manifest_schema())
    path = root / Manifest.file_name(name, new_version)
    atomic_write_text(path, manifest.to_json())
    log(f"wrote {path}")
    return QuantizedPipeline(path, len(calibration), len(test), fp32_test, int8_test, points)


def _compare_on_test(
    fp32: LoadedPipeline,
    int8_runner: OnnxPipeline,
    test: Sequence[VideoSample],
    points: Sequence[OperatingPoint],
    manifest: Manifest,
) -> tuple[dict[str, float] | None, dict[str, float] | None]:
    """Top-1 of both pipelines on the test split, each at its own operating points."""
    if not test or manifest.multi_label:
        return None, None
    clips = list(_clip_frames(fp32, test))
    targets = _targets(test, len(manifest.labels), False)
    fp32_points = [OperatingPoint.from_dict(p.model_dump()) for p in fp32.manifest.operating_points]
    fp32_runner = OnnxPipeline(fp32, create_sessions(fp32))
    fp32_test = _test_top1(fp32.manifest, _step_logits(fp32_runner, clips), targets, fp32_points)
    int8_test = _test_top1(manifest, _step_logits(int8_runner, clips), targets, points)
    return fp32_test, int8_test


def quantization_table(result: QuantizedPipeline) -> str:
    """The test top-1 of both precisions at each operating point, as a Markdown table."""
    lines = [f"INT8 version: {result.manifest_path} ({result.calibration_clips} calibration clips)"]
    if result.fp32_test is None or result.int8_test is None:
        return "\n".join([*lines, "no single-label test split: the accuracy cost is not measured"])
    lines += [f"test top-1 on {result.test_clips} videos:", "", "| point | FP32 | INT8 | INT8 - FP32 |"]
    lines.append("|---|---|---|---|")
    for name in result.fp32_test:
        fp32, int8 = result.fp32_test[name], result.int8_test.get(name)
        if int8 is not None:
            lines.append(f"| {name} | {fp32:.3f} | {int8:.3f} | {100 * (int8 - fp32):+.1f} points |")
    return "\n".join(lines)
