"""The served pipelines: loaded and verified from the model repository, sessions created, warmed up."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from pipeline.early_exit import OperatingPoint
from pipeline.onnx_steps import OnnxPipeline, create_sessions, run_step
from pipeline.repository import LoadedPipeline, ModelRepositoryError, find_pipelines, load_pipeline

from .batching import ActiveClips, StepBatcher
from .settings import Settings

log = logging.getLogger("service")


@dataclass
class ServedModel:
    pipeline: LoadedPipeline
    runner: OnnxPipeline
    operating_points: list[OperatingPoint]
    providers: list[str]  # what its sessions run on, in order of preference (providers_in_use)
    batcher: StepBatcher | None = None  # started by start_batching()
    active_clips: ActiveClips = field(default_factory=ActiveClips)  # clips using the batcher

    @property
    def name(self) -> str:
        return self.pipeline.manifest.name

    @property
    def version(self) -> int:
        return self.pipeline.manifest.version


def available_providers(preferred: list[str]) -> list[str]:
    """The preferred ONNX Runtime providers this machine has, in order (CPU always last resort)."""
    import onnxruntime as ort

    present = set(ort.get_available_providers())
    chosen = [p for p in preferred if p in present]
    return chosen if "CPUExecutionProvider" in chosen else [*chosen, "CPUExecutionProvider"]


def providers_in_use(sessions: dict, preferred: list[str]) -> list[str]:
    """The preferred providers that every graph's session really took. ONNX Runtime drops a
    provider that fails to start (CUDA libraries missing, say) without an error, so what was
    asked for is not always what runs."""
    taken = [set(session.get_providers()) for session in sessions.values()]
    return [p for p in preferred if all(p in t for t in taken)]


class ModelRegistry:
    """Every served pipeline version, by name and version."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[tuple[str, int], ServedModel] = {}
        self.ready = False

    def load(self) -> None:
        """Load, verify and warm up every pipeline (or those named in the settings); raises on a bad repository."""
        root = self.settings.model_repo
        found = find_pipelines(root) if root.is_dir() else {}
        names = self.settings.models or sorted(found)
        if not names:
            raise ModelRepositoryError(f"no pipelines in {root}")
        providers = available_providers(self.settings.providers)
        for name in names:
            for version in found.get(name, [None]):  # None: load_pipeline says what is missing
                pipeline = load_pipeline(root, name, version)
                sessions = create_sessions(
                    pipeline,
                    providers,
                    self.settings.threads,
                    allow_spinning=self.settings.ort_spinning,
                    cache_dir=self.settings.trt_cache_dir,
                )
                points = [OperatingPoint.from_dict(p.model_dump()) for p in pipeline.manifest.operating_points]
                running = providers_in_use(sessions, providers)
                model = ServedModel(pipeline, OnnxPipeline(pipeline, sessions), points, running)
                self._warm_up(model)
                self.models[(name, pipeline.manifest.version)] = model
                log.info("loaded %s v%d on %s", name, pipeline.manifest.version, ", ".join(running))
        self.ready = True

    @staticmethod
    def _warm_up(model: ServedModel) -> None:
        """One clip through every graph, fed as requests feed it: uint8 crops, normalised in the
        step with the manifest's statistics (so that lookup table is built here, not at the first request)."""
        frames = model.pipeline.manifest.frames
        model.runner.run_clip(np.zeros((frames.num_frames, frames.crop, frames.crop, 3), dtype=np.uint8))

    def start_batching(self, on_batch=None) -> None:
        """One step batcher per model (call from the running event loop)."""
        for model in self.models.values():
            model.batcher = StepBatcher(
                partial(run_step, model.runner.sessions, model.pipeline.manifest),
                self.settings.max_batch,
                self.settings.max_wait_ms / 1000,
                on_batch,
                model.active_clips,
            )

    def stop_batching(self) -> None:
        for model in self.models.values():
            if model.batcher is not None:
                model.batcher.close()

    def get(self, name: str | None, version: int | None = None) -> ServedModel:
        name = name or self.settings.default_model
        versions = sorted(v for (n, v) in self.models if n == name)
        if not versions or (version is not None and version not in versions):
            served = ", ".join(f"{n} v{v}" for n, v in sorted(self.models)) or "none"
            raise KeyError(
                f"model {name}{'' if version is None else f' version {version}'} is not served; served: {served}"
            )
        return self.models[(name, version if version is not None else versions[-1])]
