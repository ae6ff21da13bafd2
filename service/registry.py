"""The served pipelines: loaded and verified from the model repository, sessions created, warmed up."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from functools import partial

import numpy as np

from pipeline.early_exit import OperatingPoint
from pipeline.manifest import reference_clip
from pipeline.onnx_steps import OnnxPipeline, create_sessions, run_step
from pipeline.repository import LoadedPipeline, ModelRepositoryError, find_pipelines, load_pipeline

from .batching import ActiveClips, StepBatcher
from .memory import return_freed_memory
from .problems import Problem
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


@dataclass(frozen=True)
class UnavailableModel:
    """A pipeline version that could not be served, and why (one line)."""

    name: str
    version: int | None  # None: the settings name a pipeline the repository does not have
    reason: str

    @property
    def label(self) -> str:
        return self.name if self.version is None else f"{self.name} v{self.version}"


class ModelUnavailableError(Problem):
    """A request named a pipeline version that failed to load: 503 with the reason (not 404, it exists)."""

    def __init__(self, model: UnavailableModel) -> None:
        super().__init__(503, "Model unavailable", f"model {model.label} is not served: {model.reason}")
        self.model = model


class SessionError(Exception):
    """ONNX Runtime refused a pipeline's graph (not an ONNX model, an operator it lacks...)."""


class ReferenceMismatchError(Exception):
    """A pipeline's outputs on its manifest's reference clip differ from those recorded at export."""


# Failures whose one-line reason says it all; any other (a warm-up that raised) is logged with its traceback.
_EXPLAINED = (ModelRepositoryError, SessionError, ReferenceMismatchError)


def _is_number(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _one_line(error: BaseException) -> str:
    """``error`` as one line for a log and an answer (ONNX Runtime's messages span several)."""
    text = " ".join(str(error).split()) or type(error).__name__
    return text if len(text) <= 500 else f"{text[:497]}..."


class ModelRegistry:
    """Every pipeline version of the repository (or those the settings name), by name and version.

    Each version loads on its own: one that fails verification, session creation or warm-up is
    kept in :attr:`unavailable` with its reason, and the others are served.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.models: dict[tuple[str, int], ServedModel] = {}
        self.unavailable: dict[tuple[str, int | None], UnavailableModel] = {}
        self.ready = False  # loading has finished (whatever it served); readiness() applies ready_when

    def load(self) -> None:
        """Load, verify and warm up every pipeline (or those named in the settings).

        Raises :class:`ModelRepositoryError` only if the repository has no pipeline at all
        (a wrong path: nothing could ever be served, so start-up fails and says so)."""
        root = self.settings.model_repo
        if not root.is_dir():
            raise ModelRepositoryError(f"model repository {root} does not exist (ADAFOCUS_MODEL_REPO)")
        found = find_pipelines(root)
        if not found:
            raise ModelRepositoryError(f"no pipeline manifests (<name>.v<version>.json) in {root}")
        providers = available_providers(self.settings.providers)
        for name in self.settings.models or sorted(found):
            for version in found.get(name, [None]):  # None: load_pipeline says what is missing
                self._load_one(name, version, providers)
        return_freed_memory()  # what ONNX Runtime freed while building the sessions
        self.ready = True

    def _load_one(self, name: str, version: int | None, providers: list[str]) -> None:
        """Serve one pipeline version, or record why it cannot be served (and log it)."""
        try:
            model = self._build(name, version, providers)
        except Exception as error:  # whatever fails, only this version is lost
            failed = UnavailableModel(name, version, _one_line(error))
            self.unavailable[(name, version)] = failed
            explained = isinstance(error, _EXPLAINED)
            log.error("model %s is unavailable: %s", failed.label, failed.reason, exc_info=None if explained else error)
            return
        self.models[(name, model.version)] = model
        log.info("loaded %s v%d on %s", name, model.version, ", ".join(model.providers))
        default = self.settings.default_exit
        names = {point_name for point in model.operating_points for point_name in point.names}
        if default != "off" and default not in names and not _is_number(default):
            log.warning(
                "%s v%d has no operating point %r (ADAFOCUS_DEFAULT_EXIT): requests that name no exit run "
                "every frame (it has: %s)",
                name,
                model.version,
                default,
                ", ".join(sorted(names)),
            )

    def _build(self, name: str, version: int | None, providers: list[str]) -> ServedModel:
        pipeline = load_pipeline(self.settings.model_repo, name, version)
        try:
            sessions = create_sessions(
                pipeline,
                providers,
                self.settings.threads,
                allow_spinning=self.settings.ort_spinning,
                shared_cpu_arena=True,
                shrink_arena=self.settings.ort_arena_shrinkage,
                cache_dir=self.settings.trt_cache_dir,
                fp16=self.settings.trt_fp16,
            )
        except Exception as error:
            raise SessionError(f"ONNX Runtime cannot create its sessions: {error}") from error
        points = [OperatingPoint.from_dict(p.model_dump()) for p in pipeline.manifest.operating_points]
        model = ServedModel(pipeline, OnnxPipeline(pipeline, sessions), points, providers_in_use(sessions, providers))
        try:
            self._warm_up(model)
        except ReferenceMismatchError:
            raise
        except Exception as error:
            raise RuntimeError(f"warm-up failed: {error}") from error
        return model

    @staticmethod
    def _warm_up(model: ServedModel) -> None:
        """One clip through every graph, fed as requests feed it: uint8 crops, normalised in the
        step with the manifest's statistics (so that lookup table is built here, not at the first
        request). With a reference in the manifest, the clip is the reference's and the outputs
        must match those recorded at export (:class:`ReferenceMismatchError` otherwise)."""
        manifest = model.pipeline.manifest
        frames, reference = manifest.frames, manifest.reference
        if reference is None:
            model.runner.run_clip(np.zeros((frames.num_frames, frames.crop, frames.crop, 3), dtype=np.uint8))
            return
        result = model.runner.run_clip(reference_clip(frames))
        mismatch = reference.mismatch(result.step_logits)
        if mismatch is not None:
            raise ReferenceMismatchError(f"outputs differ from the manifest's reference: {mismatch}")

    def readiness(self) -> str | None:
        """None when ``ready_when`` holds (the service is ready), else why it does not."""
        if not self.ready:
            return "models are still loading"
        rule = self.settings.ready_when
        if rule == "all" and self.unavailable:
            return f"{len(self.unavailable)} model version(s) unavailable"
        if rule == "any" and not self.models:
            return "no model is served"
        default = self.settings.default_model
        if rule == "default" and not any(n == default for n, _ in self.models):
            return f"the default model {default} is not served"
        return None

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
        """The served version ``version`` of ``name`` (the default model; its latest served version).

        Raises :class:`ModelUnavailableError` (a 503) for a version that failed to load (with
        no version given: when no version of ``name`` is served and one failed), ``KeyError``
        for a pipeline the repository does not have."""
        name = name or self.settings.default_model
        versions = sorted(v for (n, v) in self.models if n == name)
        if not versions or (version is not None and version not in versions):
            failed = self._unavailable(name, version)
            if failed is not None:
                raise ModelUnavailableError(failed)
            served = ", ".join(f"{n} v{v}" for n, v in sorted(self.models)) or "none"
            raise KeyError(
                f"model {name}{'' if version is None else f' version {version}'} is not served; served: {served}"
            )
        return self.models[(name, version if version is not None else versions[-1])]

    def _unavailable(self, name: str, version: int | None) -> UnavailableModel | None:
        failed = [m for (n, v), m in self.unavailable.items() if n == name and (version is None or v == version)]
        return max(failed, key=lambda m: m.version or 0) if failed else None
