"""What a hostile or careless client can send (issue 22): every error answer is problem+json
with the request id, bad options are refused rather than silently replaced, headers are
bounded, and the metrics tell the served models apart."""

from __future__ import annotations

import hmac
import logging
import re

import pytest
from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from service.app import create_app
from tests.pipeline.hostile_videos import negative_start_matroska, size_switching_video
from tests.service.test_service import settings
from tests.videos import make_video

MAX_PIXELS = 200 * 200  # the clips below are 128x128


@pytest.fixture(scope="module")
def client():
    # Unexpected errors are answered (a 500), not raised into the test.
    with TestClient(create_app(settings(max_pixels=MAX_PIXELS)), raise_server_exceptions=False) as client:
        yield client


@pytest.fixture(scope="module")
def clip(tmp_path_factory) -> bytes:
    return make_video(tmp_path_factory.mktemp("clip") / "clip.mp4", frames=16, width=128, height=128).read_bytes()


def problem(response, status: int) -> dict:
    """The problem+json body of ``response``, checked: its status, and the request id both in
    the header and in the body."""
    assert response.status_code == status, response.text[:500]
    assert response.headers["content-type"] == "application/problem+json", response.text[:500]
    body = response.json()
    assert body["status"] == status and body["title"] and body["detail"]
    assert body["request_id"] and response.headers["x-request-id"] == body["request_id"]
    return body


# -- every error answer is problem+json -------------------------------------------------------
def test_routing_and_body_errors_are_problem_json(client, clip):
    assert "Not Found" in problem(client.get("/no/such/path"), 404)["title"]
    not_allowed = client.get("/v1/classify")
    problem(not_allowed, 405)
    assert "POST" in not_allowed.headers["allow"]  # the headers of the error survive
    no_boundary = client.post("/v1/classify", content=b"--x\r\n", headers={"content-type": "multipart/form-data"})
    assert "boundary" in problem(no_boundary, 400)["detail"]
    two_files = client.post("/v1/classify", files=[("video", ("a.mp4", clip)), ("video", ("b.mp4", clip))])
    problem(two_files, 400)
    assert client.post("/v1/classify", files={"video": ("x.mp4", clip)}).status_code == 200


def test_an_unexpected_error_is_a_500_problem_that_says_nothing_internal(client, clip, caplog):
    from service import decoding
    from tests.service import hostile_decoders

    pool = client.app.state.decoder
    pool.open_function = hostile_decoders.explode
    try:
        with caplog.at_level(logging.ERROR):
            response = client.post("/v1/classify", files={"video": ("x.mp4", clip)}, headers={"x-request-id": "boom-1"})
    finally:
        pool.open_function = decoding.open_reader
    body = problem(response, 500)
    assert body["request_id"] == "boom-1"
    assert hostile_decoders.SECRET not in response.text and "LookupError" not in response.text
    logged = [r for r in caplog.records if r.levelno >= logging.ERROR and "boom-1" in r.getMessage()]
    assert logged and logged[0].exc_info is not None  # logged with its traceback
    assert hostile_decoders.SECRET in caplog.text
    assert client.post("/v1/classify", files={"video": ("x.mp4", clip)}).status_code == 200  # still serving


def test_a_video_that_cannot_be_sought_is_a_422_problem(client, tmp_path):
    """FFmpeg's seek fails on this file (av.error.PermissionError): it was a bare 500."""
    data = negative_start_matroska(tmp_path / "negative.mkv").read_bytes()
    for exit in ("off", "balanced"):
        body = problem(client.post("/v1/classify", params={"exit": exit}, files={"video": ("x.mkv", data)}), 422)
        assert body["title"] == "Undecodable video"


def test_a_frame_size_that_grows_mid_stream_is_refused(client, tmp_path):
    """The header says 64x64; from the seventh frame on the frames are 640x640."""
    data = size_switching_video(tmp_path / "switching.avi", [(64, 64)] * 6 + [(640, 640)] * 6).read_bytes()
    body = problem(client.post("/v1/classify", params={"exit": "off"}, files={"video": ("x.avi", data)}), 422)
    assert "640x640" in body["detail"] and "limit" in body["title"].lower()


# -- exit options and media types -------------------------------------------------------------
@pytest.mark.parametrize("budget", ["nan", "-1", "0", "1e-400", "inf", "-inf", "-0"])
def test_an_exit_budget_must_be_a_finite_positive_number(client, clip, budget):
    body = problem(client.post("/v1/classify", params={"exit": budget}, files={"video": ("x.mp4", clip)}), 422)
    assert "finite positive" in body["detail"]


def _cheapest(client, model: str) -> float:
    served = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    return min(point["expected_gmacs"] for point in served[model]["operating_points"])


def test_a_budget_below_the_cheapest_point_is_refused_with_its_cost(client, clip):
    cheapest = _cheapest(client, "adafocus_v2")
    for budget in ("0.00001", repr(cheapest * 0.999)):
        response = client.post("/v1/classify", params={"exit": budget}, files={"video": ("x.mp4", clip)})
        assert repr(cheapest) in problem(response, 422)["detail"]
    # The cost as the answer writes it is a budget that fits the cheapest point.
    fits = client.post("/v1/classify", params={"exit": repr(cheapest)}, files={"video": ("x.mp4", clip)})
    assert fits.status_code == 200, fits.text
    assert fits.json()["gmacs"]["spent"] <= fits.json()["gmacs"]["full_model"]


def test_an_unknown_exit_lists_every_valid_value(client, clip):
    detail = problem(client.post("/v1/classify", params={"exit": "turbo"}, files={"video": ("x.mp4", clip)}), 422)
    detail = detail["detail"]
    served = {m["name"]: m for m in client.get("/v1/models").json()["models"]}
    names = {name for point in served["adafocus_v2"]["operating_points"] for name in point["names"]}
    for value in names | {"off"}:
        assert re.search(rf"\b{value}\b", detail), (value, detail)
    assert "budget" in detail


def test_media_types_are_case_insensitive(client, clip):
    raw = client.post("/v1/classify", content=clip, headers={"content-type": "VIDEO/MP4"})
    assert raw.status_code == 200, raw.text
    request = client.build_request("POST", "/v1/classify", files={"video": ("x.mp4", clip)})
    kind, boundary = request.headers["content-type"].split(";", 1)
    assert kind == "multipart/form-data"
    request.headers["content-type"] = f"Multipart/Form-Data;{boundary}"
    form = client.send(request)
    assert form.status_code == 200, form.text


# -- headers ----------------------------------------------------------------------------------
def test_request_ids_are_bounded_and_safe(client):
    ok = "Ab9._-" * 21 + "xy"  # 128 characters
    assert client.get("/healthz", headers={"x-request-id": ok}).headers["x-request-id"] == ok
    for hostile in ("x" * 7000, ok + "z", "<script>alert(1)</script>", "a b", "id\u00e9", "a/b"):
        response = client.get("/no/such/path", headers={"x-request-id": hostile.encode("latin-1")})
        body = problem(response, 404)
        fresh = response.headers["x-request-id"]
        assert fresh != hostile and re.fullmatch(r"[0-9a-f]{32}", fresh) and body["request_id"] == fresh
        assert hostile not in response.text


def test_the_api_key_is_accepted_as_bearer_or_x_api_key_only(clip, monkeypatch):
    compared, original = [], hmac.compare_digest

    def compare_digest(a, b):
        compared.append((a, b))
        return original(a, b)

    monkeypatch.setattr("service.dependencies.hmac.compare_digest", compare_digest)
    with TestClient(create_app(settings(api_key="s3cret"))) as guarded:
        for headers in (
            {"Authorization": "s3cret"},
            {"Authorization": "Basic s3cret"},
            {"Authorization": "Bearer wrong"},
            {"Authorization": "Bearers3cret"},
            {"X-API-Key": "Bearer s3cret"},
            {},
        ):
            assert problem(guarded.get("/v1/models", headers=headers), 401)["title"] == "Unauthorized", headers
        for headers in (
            {"Authorization": "Bearer s3cret"},
            {"Authorization": "bearer s3cret"},
            {"X-API-Key": "s3cret"},
        ):
            assert guarded.get("/v1/models", headers=headers).status_code == 200, headers
        assert guarded.post(
            "/v1/classify", files={"video": ("x.mp4", clip)}, headers={"X-API-Key": "s3cret"}
        ).is_success
    assert compared  # in constant time


# -- metrics by model -------------------------------------------------------------------------
def _samples(text: str) -> list[tuple[str, dict[str, str], float]]:
    return [(s.name, s.labels, s.value) for family in text_string_to_metric_families(text) for s in family.samples]


def test_metrics_are_labelled_by_model_and_version(client, clip):
    for model in ("adafocus_v2", "full_frame"):
        response = client.post("/v1/classify", params={"model": model}, files={"video": ("x.mp4", clip)})
        assert response.status_code == 200, response.text
    refused = client.post(
        "/v1/classify", params={"model": "full_frame"}, content=b"hi", headers={"content-type": "text/plain"}
    )
    problem(refused, 415)
    problem(client.post("/v1/classify", params={"model": "nope"}, files={"video": ("x.mp4", clip)}), 404)
    samples = _samples(client.get("/metrics").text)

    def found(name: str, **labels: str) -> bool:
        return any(n == name and labels.items() <= have.items() and value > 0 for n, have, value in samples)

    for model, version in (("adafocus_v2", "2"), ("full_frame", "1")):
        assert found("adafocus_model_request_seconds_count", model=model, version=version, status="200")
        assert found("adafocus_model_exit_step_count", model=model, version=version)
        for stage in ("decode", "glance", "focus", "classify"):
            assert found("adafocus_model_stage_seconds_count", model=model, version=version, stage=stage)
    kind = "Unsupported media type"
    assert found("adafocus_model_errors_total", model="full_frame", version="1", kind=kind)
    assert found("adafocus_model_request_seconds_count", model="full_frame", version="1", status="415")
    # Before a model was chosen: "none", never the name the client sent.
    assert found("adafocus_model_errors_total", model="none", version="none", kind="Unknown model")
    assert found("adafocus_model_request_seconds_count", model="none", version="none", status="404")
    values = {have.get("model") for name, have, _ in samples if name.startswith("adafocus_model_")}
    assert values <= {"adafocus_v2", "full_frame", "none"}
