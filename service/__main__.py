"""``python -m service``: serve on http://127.0.0.1:8000 (settings from ADAFOCUS_* variables)."""

from __future__ import annotations

import argparse

import uvicorn
from fastapi import FastAPI

from .app import create_app
from .settings import Settings


def server_config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    """uvicorn's configuration. Its "auto" choices take uvloop and httptools, which the service's
    requirements install, and fall back to asyncio and h11 where they are missing (Windows)."""
    return uvicorn.Config(app, host=host, port=port, loop="auto", http="auto")


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default=settings.host, help="default: ADAFOCUS_HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.port, help="default: ADAFOCUS_PORT or 8000")
    args = parser.parse_args()
    uvicorn.Server(server_config(create_app(settings), args.host, args.port)).run()


if __name__ == "__main__":
    main()
