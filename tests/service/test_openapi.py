"""/openapi.json documents the classify upload and the answers of classify and models."""

from __future__ import annotations

import pytest

from service.app import create_app

CLASSIFY = "/v1/classify"
ALIAS = "/classify"


@pytest.fixture(scope="module")
def document() -> dict:
    return create_app().openapi()  # no lifespan: the document needs no model loaded


def _schema(document: dict, reference: dict) -> dict:
    return document["components"]["schemas"][reference["$ref"].removeprefix("#/components/schemas/")]


def _answer(document: dict, path: str, method: str) -> dict:
    return _schema(
        document, document["paths"][path][method]["responses"]["200"]["content"]["application/json"]["schema"]
    )


def test_classify_documents_its_upload(document):
    body = document["paths"][CLASSIFY]["post"]["requestBody"]
    assert body["required"]
    multipart = body["content"]["multipart/form-data"]["schema"]
    assert multipart["required"] == ["video"]
    assert multipart["properties"]["video"]["type"] == "string"
    assert multipart["properties"]["video"]["format"] == "binary"  # what makes /docs offer a file picker
    for raw in ("video/*", "application/octet-stream"):
        assert body["content"][raw]["schema"] == {"type": "string", "format": "binary"}


def test_classify_documents_its_answer(document):
    answer = _answer(document, CLASSIFY, "post")
    main = {"model", "request_id", "labels", "exit", "gmacs", "frames", "skipped_frames", "video", "timings_s"}
    assert main <= set(answer["properties"]) and main <= set(answer["required"])
    exit = _schema(document, answer["properties"]["exit"])
    assert {"operating_point", "step", "frames_processed", "frames_decoded"} <= set(exit["required"])
    frame = _schema(document, answer["properties"]["frames"]["items"])
    assert {"step", "frame_index", "time_s", "box"} <= set(frame["required"])
    assert "thumbnail" in frame["properties"] and "thumbnail" not in frame["required"]  # only when asked for


def test_models_documents_its_answer(document):
    answer = _answer(document, "/v1/models", "get")
    model = _schema(document, answer["properties"]["models"]["items"])
    assert {"name", "version", "labels", "frames", "operating_points", "providers"} <= set(model["properties"])
    assert not {"files", "source"} & set(model["properties"])  # checksums and the training run stay private


def test_the_classify_alias_is_documented_as_deprecated(document):
    route, alias = document["paths"][CLASSIFY]["post"], document["paths"][ALIAS]["post"]
    assert alias["deprecated"] and not route.get("deprecated")
    assert alias["requestBody"] == route["requestBody"] and alias["responses"] == route["responses"]
    assert alias["operationId"] != route["operationId"]
