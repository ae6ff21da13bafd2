"""HTTP endpoints for operators: health, readiness, Prometheus metrics and the served models.

With an API key set, ``/healthz`` and ``/readyz``'s status stay open (probes carry no key);
``/metrics``, ``/v1/models`` and ``/readyz``'s model lists need the key unless
``ADAFOCUS_PUBLIC_ENDPOINTS`` names them (``metrics``, ``models``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from .dependencies import MetricsDep, ModelsVisibleDep, RegistryDep, require_api_key_unless_public
from .registry import ModelRegistry
from .schemas import ModelsResponse, ReadinessResponse, UnavailablePipeline, served_pipeline

router = APIRouter()


@router.get("/healthz", summary="the process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


def _unavailable(registry: ModelRegistry) -> list[UnavailablePipeline]:
    return [
        UnavailablePipeline(name=m.name, version=m.version, reason=m.reason)
        for _, m in sorted(registry.unavailable.items(), key=lambda item: (item[0][0], item[0][1] or 0))
    ]


@router.get(
    "/readyz",
    summary="200 when the models that ADAFOCUS_READY_WHEN requires are served (loaded, verified, warmed up)",
    response_model=ReadinessResponse,
    response_model_exclude_none=True,
    responses={503: {"model": ReadinessResponse, "description": "loading, or the rule does not hold"}},
)
async def readyz(registry: RegistryDep, show_models: ModelsVisibleDep) -> JSONResponse:
    reason = registry.readiness()
    status = "ready" if reason is None else "loading" if not registry.ready else "not ready"
    answer = ReadinessResponse(status=status, reason=reason)
    if show_models and registry.ready:
        answer.models = [f"{n} v{v}" for n, v in sorted(registry.models)]
        answer.unavailable = _unavailable(registry)
    body = answer.model_dump(mode="json", exclude_none=True)
    return JSONResponse(body, status_code=200 if reason is None else 503)


@router.get(
    "/metrics",
    summary="Prometheus metrics",
    response_class=PlainTextResponse,
    dependencies=[Depends(require_api_key_unless_public("metrics"))],
)
async def metrics(metrics: MetricsDep) -> PlainTextResponse:
    return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models",
    summary="the served pipelines' manifests (labels, operating points, costs), and those unavailable",
    dependencies=[Depends(require_api_key_unless_public("models"))],
    response_model=ModelsResponse,
)
async def models(registry: RegistryDep) -> ModelsResponse:
    return ModelsResponse(
        models=[served_pipeline(model.pipeline.manifest, model.providers) for model in registry.models.values()],
        unavailable=_unavailable(registry),
    )
