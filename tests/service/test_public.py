"""What is open with an API key set (ADAFOCUS_PUBLIC_ENDPOINTS): probes always, the web page
always, metrics, docs and the model lists only when named public (issue 22)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from service.app import create_app
from service.dependencies import configured_key
from service.settings import Settings
from tests.service.test_hardening import problem
from tests.service.test_service import settings

KEY = {"X-API-Key": "s3cret"}
GROUPS = {
    "metrics": ["/metrics"],
    "docs": ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect", "/docs/assets/swagger-ui-bundle.js"],
    "models": ["/v1/models"],
}
ALWAYS_OPEN = ["/healthz", "/readyz", "/", "/static/app.js"]


@pytest.fixture(scope="module")
def guarded():
    with TestClient(create_app(settings(api_key="s3cret"))) as client:
        yield client


def test_with_a_key_only_probes_and_the_page_are_open(guarded):
    for path in ALWAYS_OPEN:
        assert guarded.get(path).status_code == 200, path
    for group, paths in GROUPS.items():
        for path in paths:
            refused = problem(guarded.get(path), 401)
            assert refused["title"] == "Unauthorized", path
            assert guarded.get(path, headers=KEY).status_code == 200, (group, path)


def test_readyz_lists_the_models_only_to_whom_may_see_them(guarded):
    assert guarded.get("/readyz").json() == {"status": "ready"}
    assert guarded.get("/readyz", headers={"X-API-Key": "wrong"}).json() == {"status": "ready"}
    shown = guarded.get("/readyz", headers=KEY).json()
    assert shown["models"] == ["adafocus_v2 v2", "full_frame v1"] and shown["unavailable"] == []


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_a_group_named_public_is_open_without_the_key(group):
    with TestClient(create_app(settings(api_key="s3cret", public_endpoints=[group]))) as client:
        for name, paths in GROUPS.items():
            for path in paths:
                expected = 200 if name == group else 401
                assert client.get(path).status_code == expected, (group, path)
        assert ("models" in client.get("/readyz").json()) == (group == "models")
        problem(client.post("/v1/classify", content=b"x", headers={"content-type": "video/mp4"}), 401)


def test_without_a_key_everything_is_open(monkeypatch):
    monkeypatch.setenv("ADAFOCUS_API_KEY", "")  # as Compose passes it when unset: no key, not an empty one
    assert configured_key(Settings()) is None
    with TestClient(create_app(settings(api_key=Settings().api_key))) as client:
        assert client.get("/v1/models").status_code == 200  # was 401: the empty key was a key
        for path in [*ALWAYS_OPEN, *(p for paths in GROUPS.values() for p in paths)]:
            assert client.get(path).status_code == 200, path
            assert client.get(path, headers={"X-API-Key": ""}).status_code == 200, path
        assert "models" in client.get("/readyz").json()


def test_a_key_no_header_can_carry_is_refused_at_start_up():
    with pytest.raises(ValueError, match="whitespace"):
        create_app(settings(api_key=" s3cret"))
