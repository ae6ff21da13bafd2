"""The web page (``GET /``): upload a video, see the labels, the exit and where the model looked.

Plain HTML, CSS and JavaScript from ``service/static``: no build step, nothing fetched from
elsewhere, so it works offline. The page calls the public API (``/v1/models``, ``/v1/classify``
with ``thumbnails=true``) like any other client.
"""

from __future__ import annotations

from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import FileResponse
from fastapi.staticfiles import StaticFiles

STATIC = Path(__file__).with_name("static")

router = APIRouter()


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


def static_files() -> StaticFiles:
    """Mounted at ``/static``: the page's script and style sheet."""
    return StaticFiles(directory=STATIC)
