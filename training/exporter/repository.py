"""Write a trained run into a model repository: the graphs as ONNX (each checked against PyTorch
through ONNX Runtime), a Triton ``config.pbtxt`` per graph, ``labels.txt``, and the pipeline
manifest with the sha256 of every file, written last (an interrupted export leaves no loadable
version)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from pipeline.manifest import MANIFEST_FORMAT, Manifest, ReferenceOutputs, manifest_schema, reference_clip
from pipeline.onnx_steps import OnnxPipeline, create_sessions
from pipeline.repository import LoadedPipeline, find_pipelines, load_pipeline, sha256_of
from training.adafocus.costs import step_costs
from training.adafocus.model import AdaFocusV2
from training.adafocus.record import ModelRecord, model_from_payload
from training.adafocus.sthsth import TsmAdaFocusV2
from training.adafocus.sthsth_record import TsmModelRecord, is_tsm_payload, tsm_model_from_payload
from training.engine.checkpoint import atomic_write_text, load_checkpoint
from training.exporter.graphs import GraphDefinition, focus_kind, graph_definitions
from training.exporter.onnx_export import export_onnx
from training.exporter.triton import triton_config
from training.exporter.verify import compare_with_onnxruntime
from training.exporter.whole_clip import clip_graph, whole_clip_fields

# The reference comparison's tolerance, sized for fp16 TensorRT as well as CPU: the shipped
# graphs with every weight and activation rounded to fp16 moved the reference logits by at most
# 0.058 (adafocus_v2; full_frame 0.007; |logits| up to 14), so 0.15 + 2% leaves room for
# TensorRT's own kernels, while the reference clip with its channels swapped (BGR), transposed
# or its frames reversed moves them past it by 0.66-3.5.
REFERENCE_ATOL, REFERENCE_RTOL = 0.15, 0.02


def _tensor_specs(names: tuple[str, ...], tensors: tuple[torch.Tensor, ...]) -> list[dict[str, Any]]:
    return [
        {"name": name, "dtype": str(t.dtype).removeprefix("torch."), "shape": ["batch", *t.shape[1:]]}
        for name, t in zip(names, tensors, strict=True)
    ]


def _outputs(graph: GraphDefinition) -> tuple[torch.Tensor, ...]:
    with torch.no_grad():
        out = graph.module(*graph.inputs)
    return out if isinstance(out, tuple) else (out,)


def _write_or_check(path: Path, text: str) -> None:
    """Write a per-model (not per-version) file, refusing to change one an older version relies on."""
    if path.exists() and path.read_text() != text:
        raise ValueError(
            f"{path} exists with different contents (another export changed the graph's tensors); "
            "export under a new --name"
        )
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        atomic_write_text(path, text)


def default_name(model: AdaFocusV2) -> str:
    return model.config.variant


@dataclass
class _Draft:
    """What an export writes, before the files: the graphs and the manifest's model entries."""

    default_name: str
    graphs: list[GraphDefinition]
    gmacs_per_frame: dict[str, float]  # per graph
    fields: dict[str, Any]  # the manifest's entries but name, version, graphs, files and source
    train_config: dict[str, Any]


def _streaming_draft(model: AdaFocusV2, record: ModelRecord) -> _Draft:
    """A step-by-step model: glance, focus and classifier graphs, with running states."""
    if model.can_skip:
        raise ValueError(
            "this AdaFocus V1 model skips frames (--v1-skip-cost); the served pipeline focuses on every "
            "processed frame, so it cannot be exported yet: train without frame skipping to export"
        )
    focus = focus_kind(model)
    costs = step_costs(model)
    macs = {"glance": costs.glance + costs.policy, "focus": costs.focus, "classifier": costs.classifier}
    fields = {
        "method": record.method,
        "variant": model.config.variant,
        "focus": focus,
        "labels": record.classes,
        "multi_label": record.multi_label,
        "frames": {
            "num_frames": model.config.num_frames,
            "order": [int(i) for i in model.order.tolist()],
            "resize": record.geometry.resize,
            "crop": record.geometry.crop,
            "mean": list(record.normalisation.mean),
            "std": list(record.normalisation.std),
            "glance_size": model.config.glance_size,
            "patch_size": model.config.patch_size if focus in ("policy", "centre") else None,
        },
        "confidence": record.confidence,
        "operating_points": record.operating_points,
        "state_sizes": {
            "policy": model.policy.hidden_size if model.policy is not None else 0,
            "classifier": model.classifier.state_size,
        },
        "gmacs_per_frame": costs.total / 1e9,
    }
    gmacs = {name: value / 1e9 for name, value in macs.items()}
    return _Draft(default_name(model), graph_definitions(model), gmacs, fields, record.train_config)


def _whole_clip_draft(model: TsmAdaFocusV2, record: TsmModelRecord) -> _Draft:
    """A whole-clip TSM model: one ``clip`` graph (:mod:`training.exporter.whole_clip`)."""
    fields = whole_clip_fields(model, record)
    gmacs = {"clip": fields["gmacs_per_frame"]}
    return _Draft(fields["variant"], [clip_graph(model)], gmacs, fields, record.train_config)


def _draft(model_file: Path) -> _Draft:
    payload = load_checkpoint(model_file)
    if is_tsm_payload(payload):
        return _whole_clip_draft(*tsm_model_from_payload(payload, model_file))
    return _streaming_draft(*model_from_payload(payload, model_file))


def _write_graph(
    graph: GraphDefinition, out: Path, triton_model: str, version: int, classes: list[str], tolerance: float, log: Any
) -> tuple[dict[str, Any], dict[str, str]]:
    """Export ``graph`` as ONNX, check it against PyTorch, write its Triton config (and the labels
    next to the graph that outputs logits); its manifest entry (without GMACs) and files' sha256."""
    relative = f"{triton_model}/{version}/model.onnx"
    path = export_onnx(graph.module, graph.inputs, out / relative, graph.input_names, graph.output_names)
    expected = _outputs(graph)
    difference, scaled = compare_with_onnxruntime(graph, path, expected)
    log(f"{relative}: ONNX Runtime vs PyTorch max abs diff {difference:.2e} ({scaled:.2e} of max(1, |output|))")
    if scaled > tolerance:
        raise ValueError(
            f"{relative} differs from PyTorch by {difference:.2e}, {scaled:.2e} of max(1, the output's largest "
            f"magnitude) (> {tolerance:g})"
        )
    inputs = _tensor_specs(graph.input_names, graph.inputs)
    outputs = _tensor_specs(graph.output_names, expected)
    has_labels = "logits" in graph.output_names
    config_path = out / triton_model / "config.pbtxt"
    _write_or_check(config_path, triton_config(triton_model, inputs, outputs, labels=has_labels))
    files = {relative: sha256_of(path), f"{triton_model}/config.pbtxt": sha256_of(config_path)}
    if has_labels:
        labels_path = out / triton_model / "labels.txt"
        _write_or_check(labels_path, "".join(f"{label}\n" for label in classes))
        files[f"{triton_model}/labels.txt"] = sha256_of(labels_path)
    return {"triton_model": triton_model, "file": relative, "inputs": inputs, "outputs": outputs}, files


def export_run(
    run_dir: str | Path,
    out: str | Path,
    name: str | None = None,
    version: int | None = None,
    tolerance: float = 1e-4,
    log: Any = print,
) -> Path:
    """Export ``run_dir/model.pt`` (a streaming AdaFocus model, or a whole-clip TSM one) into the
    repository ``out``; returns the manifest's path."""
    run_dir, out = Path(run_dir), Path(out)
    model_file = run_dir / "model.pt"
    if not model_file.is_file():
        raise FileNotFoundError(f"{model_file} does not exist; train first (python training/train.py)")
    draft = _draft(model_file)
    name = name or draft.default_name
    existing = find_pipelines(out).get(name, []) if out.is_dir() else []
    version = version or (existing[-1] + 1 if existing else 1)
    if version in existing:
        raise ValueError(f"{name} version {version} already exists in {out}; choose another --version")
    files: dict[str, str] = {}
    graphs: dict[str, dict[str, Any]] = {}
    for graph in draft.graphs:
        triton_model = f"{name}_{graph.name}"
        spec, written = _write_graph(graph, out, triton_model, version, draft.fields["labels"], tolerance, log)
        graphs[graph.name] = {**spec, "gmacs_per_frame": draft.gmacs_per_frame[graph.name]}
        files.update(written)
    manifest = Manifest.model_validate(
        {
            "format": MANIFEST_FORMAT,
            "name": name,
            "version": version,
            **draft.fields,
            "graphs": graphs,
            "source": _source(run_dir, draft.train_config),
            "files": files,
        }
    )
    manifest = with_reference(out, manifest)
    atomic_write_text(out / "manifest.schema.json", manifest_schema())
    manifest_path = out / Manifest.file_name(name, version)
    atomic_write_text(manifest_path, manifest.to_json())
    log(f"wrote {manifest_path} ({len(files)} files, {manifest.gmacs_per_frame:.4f} GMACs per frame)")
    return manifest_path


def reference_outputs(
    root: Path, manifest: Manifest, atol: float = REFERENCE_ATOL, rtol: float = REFERENCE_RTOL
) -> ReferenceOutputs:
    """What ``manifest``'s graphs under ``root`` compute on the reference clip, with ONNX Runtime on
    CPU, every step run (the service checks the same at warm-up)."""
    pipeline = LoadedPipeline(root, manifest)
    runner = OnnxPipeline(pipeline, create_sessions(pipeline, ["CPUExecutionProvider"]))
    result = runner.run_clip(reference_clip(manifest.frames))
    steps = [[float(value) for value in logits] for logits in result.step_logits]
    return ReferenceOutputs(step_logits=steps, logits=steps[-1], atol=atol, rtol=rtol)


def with_reference(
    root: Path, manifest: Manifest, atol: float = REFERENCE_ATOL, rtol: float = REFERENCE_RTOL
) -> Manifest:
    """``manifest`` with its :func:`reference_outputs` (validated again, as a whole)."""
    reference = reference_outputs(root, manifest, atol, rtol)
    return Manifest.model_validate({**manifest.model_dump(mode="json"), "reference": reference.model_dump(mode="json")})


def add_reference(root: str | Path, name: str, version: int, log: Any = print) -> Path:
    """Record the reference outputs in an exported manifest whose graphs are already there (an
    export made before manifests carried them). The files are verified first and left as they
    are, checksums included: only the manifest is written again."""
    root = Path(root)
    pipeline = load_pipeline(root, name, version)
    manifest = with_reference(root, pipeline.manifest.model_copy(update={"reference": None}))
    path = root / Manifest.file_name(name, version)
    atomic_write_text(path, manifest.to_json())
    atomic_write_text(root / "manifest.schema.json", manifest_schema())
    log(f"wrote the reference outputs of {name} v{version} into {path}")
    return path


def _source(run_dir: Path, train_config: dict[str, Any]) -> dict[str, Any]:
    source: dict[str, Any] = {"run_dir": str(run_dir), "config": train_config}
    summary = run_dir / "summary.json"
    if summary.is_file():
        test = json.loads(summary.read_text()).get("test")
        if test:
            source["test_top1"] = test["per_step"][-1].get("top1")
            source["test_videos"] = test["videos"]
    return source
