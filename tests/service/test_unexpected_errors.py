"""An unexpected exception is answered once and logged once: the 500 problem comes from the
request-id middleware, so the exception never reaches the server (which would log its
traceback a second time, as uvicorn's "Exception in ASGI application")."""

from __future__ import annotations

import logging

from fastapi.testclient import TestClient

from service.app import create_app
from tests.service.test_service import settings

SECRET = "internal detail: /srv/secret/path"


def test_an_unexpected_error_is_answered_and_logged_once_without_reaching_the_server(caplog):
    app = create_app(settings())

    @app.get("/boom")
    async def boom() -> None:
        raise LookupError(SECRET)

    # raise_server_exceptions=True: an exception that leaves the app fails the test, as it
    # would reach uvicorn and be logged again there.
    with TestClient(app) as client, caplog.at_level(logging.ERROR):
        response = client.get("/boom", headers={"x-request-id": "boom-2"})
    assert response.status_code == 500
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["x-request-id"] == "boom-2" and response.json()["request_id"] == "boom-2"
    assert SECRET not in response.text
    tracebacks = [r for r in caplog.records if r.exc_info is not None]
    assert len(tracebacks) == 1 and "boom-2" in tracebacks[0].getMessage()
