"""FastAPI dependencies: the app's settings, registry, decoder pool and metrics, and the API key.

The routes take them as ``Annotated`` aliases (``settings: SettingsDep``), so each dependency
is spelled once, here.
"""

from __future__ import annotations

import hmac
from collections.abc import Awaitable, Callable
from typing import Annotated, Literal

from fastapi import Depends, Request

from .decoding import DecoderPool
from .metrics import Metrics
from .problems import Problem
from .registry import ModelRegistry
from .settings import Settings
from .uploads import UploadGate

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


# What ADAFOCUS_PUBLIC_ENDPOINTS can open without the key (service/settings.py).
PublicGroup = Literal["metrics", "docs", "models"]


async def get_upload_gate(request: Request) -> UploadGate:
    """What admits uploads: counts them and the bytes they hold, for the whole app."""
    return request.app.state.upload_gate


SettingsDep = Annotated[Settings, Depends(get_settings)]
RegistryDep = Annotated[ModelRegistry, Depends(get_registry)]
DecoderDep = Annotated[DecoderPool, Depends(get_decoder)]
MetricsDep = Annotated[Metrics, Depends(get_metrics)]
UploadGateDep = Annotated[UploadGate, Depends(get_upload_gate)]


def configured_key(settings: Settings) -> str | None:
    """The API key the settings set, or None (an empty one sets none: ``Settings`` checks it)."""
    return settings.api_key.get_secret_value() if settings.api_key is not None else None


def presented_key(request: Request) -> str | None:
    """The key a request presents: ``X-API-Key: KEY``, else ``Authorization: Bearer KEY`` (the
    scheme is case-insensitive); any other ``Authorization`` presents none."""
    key = request.headers.get("x-api-key")
    if key is not None:
        return key
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def authorised(request: Request, settings: Settings, group: PublicGroup | None = None) -> bool:
    """Whether ``request`` may see what the API key guards: no key is set, ``group`` is public
    (``ADAFOCUS_PUBLIC_ENDPOINTS``), or it presents the key (compared in constant time)."""
    expected = configured_key(settings)
    if expected is None or (group is not None and group in settings.public_endpoints):
        return True
    given = presented_key(request)
    return given is not None and hmac.compare_digest(given.encode(), expected.encode())


def _refuse() -> Problem:
    return Problem(401, "Unauthorized", "a valid API key is required", {"WWW-Authenticate": "Bearer"})


async def require_api_key(request: Request, settings: SettingsDep) -> None:
    """With ``ADAFOCUS_API_KEY`` set, ``Authorization: Bearer KEY`` or ``X-API-Key: KEY`` is
    required, compared in constant time."""
    if not authorised(request, settings):
        raise _refuse()


def require_api_key_unless_public(group: PublicGroup) -> Callable[..., Awaitable[None]]:
    """A dependency for the endpoints of ``group``: the key is required unless the settings name
    ``group`` in ``public_endpoints``."""

    async def dependency(request: Request, settings: SettingsDep) -> None:
        if not authorised(request, settings, group):
            raise _refuse()

    return dependency


async def models_visible(request: Request, settings: SettingsDep) -> bool:
    """Whether ``/readyz`` may list the models: they are public, or the request presents the key."""
    return authorised(request, settings, "models")


ModelsVisibleDep = Annotated[bool, Depends(models_visible)]
