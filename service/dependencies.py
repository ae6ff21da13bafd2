"""FastAPI dependencies: the app's settings, registry, decoder pool and metrics, and the API key.

The routes take them as ``Annotated`` aliases (``settings: SettingsDep``), so each dependency
is spelled once, here.
"""

from __future__ import annotations

import hmac
from typing import Annotated

from fastapi import Depends, Request

from .decoding import DecoderPool
from .metrics import Metrics
from .problems import Problem
from .registry import ModelRegistry
from .settings import Settings

# Every dependency is ``async def``: FastAPI runs a plain ``def`` one in a worker thread, a
# thread hop per dependency per request (about 20 per classify request, measured).


async def get_settings(request: Request) -> Settings:
    """The settings the app was created with."""
    return request.app.state.settings


async def get_registry(request: Request) -> ModelRegistry:
    """The served models (loaded in the app's lifespan)."""
    return request.app.state.registry


async def get_decoder(request: Request) -> DecoderPool:
    """The decoder processes."""
    return request.app.state.decoder


async def get_metrics(request: Request) -> Metrics:
    """The app's Prometheus metrics."""
    return request.app.state.metrics


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
DecoderDep = Annotated[DecoderPool, Depends(get_decoder)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]


def presented_key(request: Request) -> str | None:
    """The key a request presents: ``X-API-Key: KEY``, else ``Authorization: Bearer KEY`` (the
    scheme is case-insensitive); any other ``Authorization`` presents none."""
    key = request.headers.get("x-api-key")
    if key is not None:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """With ``ADAFOCUS_API_KEY`` set, ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` is
    required, compared in constant time."""
    if settings.api_key is None:
        return
    expected = settings.api_key.get_secret_value()
    given = presented_key(request)
    if given is None or not hmac.compare_digest(given.encode(), expected.encode()):
        raise Problem(401, "Unauthorized", "a valid API key is required", {"WWW-Authenticate": "Bearer"})
