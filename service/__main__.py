"""``python -m service``: serve on http://127.0.0.1:8000 (settings from ADAFOCUS_* variables)."""

from __future__ import annotations

import argparse

import uvicorn

from .app import create_app
from .settings import Settings


def main() -> None:
    settings = Settings()
    parser = argparse.ArgumentParser(prog="python -m service", description=__doc__)
    parser.add_argument("--host", default=settings.host, help="default: ADAFOCUS_HOST or 127.0.0.1")
    parser.add_argument("--port", type=int, default=settings.port, help="default: ADAFOCUS_PORT or 8000")
    args = parser.parse_args()
    uvicorn.run(create_app(settings), host=args.host, port=args.port)


if __name__ == "__main__":
    main()
