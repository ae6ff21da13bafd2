"""The FastAPI application: ``create_app(settings)``; models load in ``lifespan``."""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException

from pipeline.frames.errors import VideoError
from pipeline.frames.limits import DecodeLimits

from .decoding import DecoderPool
from .memory import release_freed_memory_eagerly
from .metrics import Metrics
from .middleware import RequestIdMiddleware
from .operations import router as operations_router
from .problems import (
    Problem,
    handle_http_exception,
    handle_problem,
    handle_unexpected_error,
    handle_validation_error,
    handle_video_error,
)
from .registry import ModelRegistry
from .routes import CLASSIFY_PATHS, router
from .settings import Settings
from .uploads import UploadGate, UploadLimits
from .web import TITLE, docs_router, static_files
from .web import router as web_router


def decode_limits(settings: Settings) -> DecodeLimits:
    return DecodeLimits(
        max_bytes=int(settings.max_upload_mb * 1e6),
        max_duration_s=settings.max_duration_s,
        max_pixels=settings.max_pixels,
        max_wall_s=settings.decode_timeout_s,
        max_decoded_pixels=int(settings.decode_budget_mpx * 1e6),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    """The service's application; its models load when it starts (``lifespan``)."""
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if settings.release_freed_memory:  # before the sessions load: their weights' copies go back
            release_freed_memory_eagerly()
        app.state.settings = settings
        app.state.metrics = metrics
        app.state.upload_gate = UploadGate(UploadLimits.from_settings(settings), metrics)
        app.state.registry = ModelRegistry(settings)
        app.state.decoder = DecoderPool(
            settings.decode_workers,
            decode_limits(settings),
            max_videos=settings.decoder_max_videos,
            max_rss_bytes=int(settings.decoder_max_rss_mb * 2**20),
            max_open_per_worker=settings.decoder_max_open or None,
            skip_loop_filter=settings.decode_skip_loop_filter,
            hwaccel=settings.decode_hwaccel,
            release_freed_memory=settings.release_freed_memory,
            metrics=metrics,
        )
        # Loading verifies checksums and warms every graph up: off the event loop.
        await asyncio.to_thread(app.state.registry.load)
        await app.state.decoder.warm_up()
        app.state.registry.start_batching(metrics.batch_size.observe)
        try:
            yield
        finally:
            app.state.registry.stop_batching()
            await app.state.decoder.close()

    metrics = Metrics()
    # The documentation pages and /openapi.json are service/web.py's: served from the package
    # (offline) and behind the API key unless public, so FastAPI's own are turned off.
    app = FastAPI(
        title=TITLE,
        summary="Upload a video, get its class: glance, focus on one patch per frame, exit early.",
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        openapi_url=None,
    )

    app.add_middleware(
        RequestIdMiddleware,
        observe=metrics.observe_request,
        timed_paths=CLASSIFY_PATHS,
    )
    app.add_exception_handler(Problem, handle_problem)
    app.add_exception_handler(VideoError, handle_video_error)
    app.add_exception_handler(RequestValidationError, handle_validation_error)
    app.add_exception_handler(HTTPException, handle_http_exception)  # FastAPI's HTTPException too
    app.add_exception_handler(Exception, handle_unexpected_error)  # the last resort: a 500
    app.include_router(operations_router)
    app.include_router(router)
    app.include_router(web_router)
    app.include_router(docs_router)
    app.mount("/static", static_files(), name="static")
    return app
