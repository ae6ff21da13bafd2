"""TensorRT engines for an exported pipeline (``python training/export.py RUN --tensorrt``).

For each graph of a pipeline version in the model repository, on the machine it runs on:

* the ONNX file is parsed with TensorRT's ONNX parser;
* one optimization profile covers the batch axis (1 .. ``max_batch``, tuned for ``opt_batch``);
  every other axis is fixed by the export;
* FP16 is enabled through a mixed-precision network: the ``GridSample`` of the focus graph and
  every layer that computes its sampling grid (from the patch location) are constrained to
  float32, so the crop's geometry is exact; the network's inputs and outputs stay float32;
* a timing cache shared by all builds is loaded before and saved after (``timing.cache``),
  so rebuilding on the same machine is fast.

Engines are build artefacts of one GPU model and TensorRT version: they are written under
``<repo>/engines/<name>/<version>/<graph>.plan`` and never committed (``.gitignore``). The
service itself uses ONNX Runtime's TensorRT execution provider with its own engine cache
(``ADAFOCUS_TRT_CACHE_DIR``); these plans are for TensorRT's own runtime or Triton's
``tensorrt_plan`` backend.

Not yet run on a GPU: the first session with one must build the shipped pipeline's engines and
compare them with ONNX Runtime on CPU (issue 5).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pipeline.manifest import GraphSpec
from pipeline.repository import load_pipeline

DEFAULT_MAX_BATCH = 64
DEFAULT_OPT_BATCH = 16


class TensorRTUnavailable(RuntimeError):
    """No ``tensorrt`` package or no CUDA GPU here; the message says which and what to do."""


def require_tensorrt() -> Any:
    """The ``tensorrt`` module, after checking that a CUDA GPU is visible."""
    try:
        import tensorrt  # noqa: PLC0415 (optional, GPU machines only)
    except ImportError:
        raise TensorRTUnavailable(
            "--tensorrt needs NVIDIA TensorRT's Python package on a machine with an NVIDIA GPU "
            "(pip install tensorrt-cu12); it is not installed here. The ONNX export works without it."
        ) from None
    import torch

    if not torch.cuda.is_available():
        raise TensorRTUnavailable(
            "--tensorrt builds engines for this machine's GPU, and no CUDA GPU is visible here "
            "(torch.cuda.is_available() is False). Run it on the GPU machine that will serve the model."
        )
    return tensorrt


def grid_sampling_layers(network: Any, trt: Any) -> list[Any]:
    """The GridSample layers and every layer upstream of their grid input (the crop geometry)."""
    producers = {}
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        for output in range(layer.num_outputs):
            producers[layer.get_output(output).name] = layer
    chosen: dict[str, Any] = {}
    pending = []
    for index in range(network.num_layers):
        layer = network.get_layer(index)
        if layer.type == trt.LayerType.GRID_SAMPLE:
            chosen[layer.name] = layer
            pending.append(layer.get_input(1))  # the sampling grid
    while pending:
        tensor = pending.pop()
        layer = producers.get(tensor.name) if tensor is not None else None
        if layer is None or layer.name in chosen:
            continue  # a network input, or already visited
        chosen[layer.name] = layer
        pending += [layer.get_input(i) for i in range(layer.num_inputs)]
    return list(chosen.values())


def build_engine(
    trt: Any,
    onnx_path: Path,
    graph: GraphSpec,
    timing_cache: Path,
    fp16: bool = True,
    max_batch: int = DEFAULT_MAX_BATCH,
    opt_batch: int = DEFAULT_OPT_BATCH,
) -> bytes:
    """A serialized engine for one graph."""
    logger = trt.Logger(trt.Logger.WARNING)
    builder = trt.Builder(logger)
    network = builder.create_network(0)  # explicit batch is the only mode in TensorRT 10
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(onnx_path.read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT could not parse {onnx_path}: {errors}")
    config = builder.create_builder_config()
    profile = builder.create_optimization_profile()
    for tensor in graph.inputs:
        rest = tuple(int(d) for d in tensor.shape[1:])
        profile.set_shape(tensor.name, (1, *rest), (min(opt_batch, max_batch), *rest), (max_batch, *rest))
    config.add_optimization_profile(profile)
    cache = config.create_timing_cache(timing_cache.read_bytes() if timing_cache.exists() else b"")
    config.set_timing_cache(cache, False)
    if fp16:
        config.set_flag(trt.BuilderFlag.FP16)
        config.set_flag(trt.BuilderFlag.OBEY_PRECISION_CONSTRAINTS)
        for layer in grid_sampling_layers(network, trt):
            layer.precision = trt.float32
            for output in range(layer.num_outputs):
                layer.set_output_type(output, trt.float32)
    engine = builder.build_serialized_network(network, config)
    if engine is None:
        raise ValueError(f"TensorRT could not build an engine for {onnx_path} (see its log above)")
    timing_cache.write_bytes(bytes(config.get_timing_cache().serialize()))
    return bytes(engine)


def build_pipeline_engines(
    repo: Path,
    name: str,
    version: int | None = None,
    fp16: bool = True,
    max_batch: int = DEFAULT_MAX_BATCH,
    opt_batch: int = DEFAULT_OPT_BATCH,
    log: Any = print,
) -> list[Path]:
    """Build every graph's engine of ``name`` (newest version unless given); the plan files."""
    trt = require_tensorrt()
    pipeline = load_pipeline(repo, name, version)
    manifest = pipeline.manifest
    folder = repo / "engines" / manifest.name / str(manifest.version)
    folder.mkdir(parents=True, exist_ok=True)
    timing_cache = repo / "engines" / "timing.cache"
    plans = []
    for role, graph in manifest.graphs.items():
        plan = folder / f"{role}.plan"
        partial = plan.with_suffix(".plan.partial")
        partial.write_bytes(
            build_engine(trt, pipeline.graph_path(role), graph, timing_cache, fp16, max_batch, opt_batch)
        )
        partial.replace(plan)  # a plan file is always complete
        log(f"wrote {plan} ({plan.stat().st_size / 1e6:.1f} MB, {'FP16 mixed' if fp16 else 'FP32'})")
        plans.append(plan)
    return plans
