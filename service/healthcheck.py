"""``python -m service.healthcheck`` (``adafocus-healthcheck``): exit 0 if the service on this machine is ready, else 1.

The container health check (docker/Dockerfile*, docker-compose.yml): the images carry no curl,
and ``/readyz`` answers 200 only once the models are loaded, verified and warmed up.
"""

from __future__ import annotations

import argparse
import os
import urllib.error
import urllib.request


def ready(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as response:
            return response.status == 200
    except (urllib.error.URLError, OSError):  # refused, 503 (HTTPError), timed out
        return False


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="adafocus-healthcheck", description="exit 0 if the service is ready, else 1")
    parser.add_argument(
        "url", nargs="?", help="readiness URL (default: http://127.0.0.1:$ADAFOCUS_PORT/readyz, port 8000 if unset)"
    )
    args = parser.parse_args(argv)
    url = args.url or f"http://127.0.0.1:{os.environ.get('ADAFOCUS_PORT', '8000')}/readyz"
    return 0 if ready(url) else 1


if __name__ == "__main__":
    raise SystemExit(main())
