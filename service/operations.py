"""HTTP endpoints for operators: health, readiness, Prometheus metrics and the served models."""

from __future__ import annotations

from fastapi import APIRouter, Depends
from fastapi.responses import JSONResponse, PlainTextResponse
from prometheus_client import CONTENT_TYPE_LATEST

from .dependencies import MetricsDep, RegistryDep, require_api_key
from .schemas import ModelsResponse, served_pipeline

router = APIRouter()


@router.get("/healthz", summary="the process is alive")
async def healthz() -> dict[str, str]:
    return {"status": "ok"}


@router.get("/readyz", summary="models loaded, verified and warmed up")
async def readyz(registry: RegistryDep) -> JSONResponse:
    if not registry.ready:
        return JSONResponse({"status": "loading"}, status_code=503)
    return JSONResponse({"status": "ready", "models": [f"{n} v{v}" for n, v in sorted(registry.models)]})


@router.get("/metrics", summary="Prometheus metrics", response_class=PlainTextResponse)
async def metrics(metrics: MetricsDep) -> PlainTextResponse:
    return PlainTextResponse(metrics.render(), media_type=CONTENT_TYPE_LATEST)


@router.get(
    "/v1/models",
    summary="the served pipelines' manifests (labels, operating points, costs)",
    dependencies=[Depends(require_api_key)],
    response_model=ModelsResponse,
)
async def models(registry: RegistryDep) -> ModelsResponse:
    return ModelsResponse(
        models=[served_pipeline(model.pipeline.manifest, model.providers) for model in registry.models.values()]
    )
