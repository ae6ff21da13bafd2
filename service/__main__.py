"""``python -m service``: serve on http://127.0.0.1:8000 (settings from ADAFOCUS_* variables).

SIGTERM (how Kubernetes and ``docker stop`` end a container) drains the server: the listening
socket closes, requests in flight get ``ADAFOCUS_GRACEFUL_SHUTDOWN_S`` to finish, then the
lifespan stops the batching and the decoders, and the process exits 0."""

from __future__ import annotations

import argparse
import signal
from types import FrameType

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .settings import Settings


def server_config(app: FastAPI, host: str, port: int, graceful_shutdown_s: float | None = None) -> uvicorn.Config:
    """uvicorn's configuration. Its "auto" choices take uvloop and httptools, which the service's
    requirements install, and fall back to asyncio and h11 where they are missing (Windows).
    ``graceful_shutdown_s``: how long a shutdown waits for requests in flight (None: no limit)."""
    return uvicorn.Config(
        app, host=host, port=port, loop="auto", http="auto", timeout_graceful_shutdown=graceful_shutdown_s
    )


def _stopped(signum: int, frame: FrameType | None) -> None:
    """SIGTERM outside uvicorn's own handler: a requested stop, so a clean exit. uvicorn handles
    the signal while it serves (the drain), then raises it again with the handler it found, this
    one, so that the process ends as the signal asks: with 0 here instead of being killed by it."""
    raise SystemExit(0)


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default=settings.host, help="default: ADAFOCUS_HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.port, help="default: ADAFOCUS_PORT or 8000")
    args = parser.parse_args()
    config = server_config(create_app(settings), args.host, args.port, settings.graceful_shutdown_s)
    signal.signal(signal.SIGTERM, _stopped)
    uvicorn.Server(config).run()


if __name__ == "__main__":
    main()
