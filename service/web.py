"""The web page (``GET /``) and the API's documentation pages (``/docs``, ``/redoc``).

The page is plain HTML, CSS and JavaScript from ``service/static``: no build step, nothing
fetched from elsewhere, so it works offline. It calls the public API (``/v1/models``,
``/v1/classify`` with ``thumbnails=true``) like any other client, and stays open with an API
key set (it has a key field of its own).

The documentation pages are FastAPI's (Swagger UI at ``/docs``, ReDoc at ``/redoc``), but their
scripts and style sheets come from the ``fastapi-offline`` package rather than a CDN (FastAPI's
documented self-hosting), so they work on a machine without internet. With an API key set they
and ``/openapi.json`` need the key unless ``ADAFOCUS_PUBLIC_ENDPOINTS`` names ``docs``.
"""

from __future__ import annotations

from importlib.resources import files
from pathlib import Path

from fastapi import APIRouter, Depends, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.responses import FileResponse, HTMLResponse, JSONResponse
from fastapi.staticfiles import StaticFiles

from .dependencies import require_api_key_unless_public
from .problems import Problem

STATIC = Path(__file__).with_name("static")
# Swagger UI 5 and ReDoc 2 as fastapi-offline ships them (pinned in pyproject.toml).
DOCS_ASSETS = Path(str(files("fastapi_offline").joinpath("static")))
DOCS_FILES = {
    "swagger-ui-bundle.js": "text/javascript",
    "swagger-ui.css": "text/css",
    "redoc.standalone.js": "text/javascript",
    "favicon.png": "image/png",
}
OPENAPI_URL, DOCS_URL, REDOC_URL = "/openapi.json", "/docs", "/redoc"
OAUTH2_REDIRECT_URL, ASSETS_URL = "/docs/oauth2-redirect", "/docs/assets"
TITLE = "AdaFocus video recognition"
# The documentation pages may load nothing from elsewhere: ReDoc shows its vendor's logo from a
# CDN (hidden when it fails to load), which this blocks before any request leaves. Their inline
# scripts (FastAPI's page start-up) and styles need 'unsafe-inline'; ReDoc searches in a worker.
DOCS_POLICY = (
    "default-src 'self'; script-src 'self' 'unsafe-inline'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; worker-src 'self' blob:; connect-src 'self'; frame-ancestors 'self'"
)

router = APIRouter()
docs_router = APIRouter(dependencies=[Depends(require_api_key_unless_public("docs"))], include_in_schema=False)


@router.get("/", include_in_schema=False)
async def index() -> FileResponse:
    return FileResponse(STATIC / "index.html", media_type="text/html")


def static_files() -> StaticFiles:
    """Mounted at ``/static``: the page's script and style sheet."""
    return StaticFiles(directory=STATIC)


def _root(request: Request) -> str:
    return request.scope.get("root_path", "")  # behind a proxy that mounts the service under a prefix


def _confined(page: HTMLResponse) -> HTMLResponse:
    page.headers["Content-Security-Policy"] = DOCS_POLICY
    return page


@docs_router.get(OPENAPI_URL)
async def openapi(request: Request) -> JSONResponse:
    return JSONResponse(request.app.openapi())


@docs_router.get(DOCS_URL)
async def swagger_ui(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_swagger_ui_html(
        openapi_url=root + OPENAPI_URL,
        title=f"{TITLE} - Swagger UI",
        swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
        swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
        swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        oauth2_redirect_url=root + OAUTH2_REDIRECT_URL,
    )
    return _confined(page)


@docs_router.get(OAUTH2_REDIRECT_URL)
async def swagger_ui_redirect() -> HTMLResponse:
    return _confined(get_swagger_ui_oauth2_redirect_html())


@docs_router.get(REDOC_URL)
async def redoc(request: Request) -> HTMLResponse:
    root = _root(request)
    page = get_redoc_html(
        openapi_url=root + OPENAPI_URL,
        title=f"{TITLE} - ReDoc",
        redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
        redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
        with_google_fonts=False,  # the fonts would come from Google: the system's fonts instead
    )
    return _confined(page)


@docs_router.get(ASSETS_URL + "/{name}")
async def docs_asset(name: str) -> FileResponse:
    """One of the documentation pages' files (a fixed list: no path from the request reaches the disk)."""
    if name not in DOCS_FILES:
        raise Problem(404, "Not Found", f"no documentation asset {name!r}")
    return FileResponse(DOCS_ASSETS / name, media_type=DOCS_FILES[name])
