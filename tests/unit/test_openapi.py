"""GET /openapi.json: a valid OpenAPI 3.1 document listing every native route, public, cached."""

from __future__ import annotations

from typing import Any

import pytest
from litestar import Litestar
from litestar.testing import TestClient
from openapi_spec_validator import validate

from hugind.app import create_app
from hugind.config import parse_config
from tests.fakes import FakeEngine

PROVIDER = {"name": "up", "base_url": "http://127.0.0.1:9/v1", "api_keys": ["sk-up"],
            "models": ["remote-*"]}
CATCH_ALLS = {"/v1/{path}", "/{path}"}  # provider passthrough: not native


def make_app(**config: Any) -> Litestar:
    return create_app(parse_config({"server": {"api_keys": ["k-1"]}, **config}),
                      engine=FakeEngine())


def registered(app: Litestar) -> set[tuple[str, str]]:
    """(path, method) of every route the app answers, CORS preflights and catch-alls aside."""
    return {(route.path_format, method.lower())
            for route in app.routes if route.path_format not in CATCH_ALLS
            for method in route.methods if method != "OPTIONS"}


@pytest.mark.parametrize("config", [{}, {"providers": [PROVIDER]}], ids=["local", "providers"])
def test_document_is_valid_and_lists_every_native_route(config: dict[str, Any]) -> None:
    app = make_app(**config)
    with TestClient(app) as client:
        r = client.get("/openapi.json")  # no key: public
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/json")
    doc = r.json()
    validate(doc)
    assert doc["openapi"].startswith("3.1")
    listed = {(path, method) for path, item in doc["paths"].items() for method in item}
    assert listed == registered(app)
    assert not CATCH_ALLS & set(doc["paths"])
    assert ("/admin/providers" in doc["paths"]) == bool(config)


def test_operations_name_their_request_and_response_schemas() -> None:
    with TestClient(make_app()) as client:
        doc = client.get("/openapi.json").json()
    ops = doc["paths"]
    chat = ops["/v1/chat/completions"]["post"]
    body = chat["requestBody"]["content"]["application/json"]["schema"]
    assert body == {"$ref": "#/components/schemas/ChatCompletionRequest"}
    answers = chat["responses"]["200"]["content"]
    assert answers["application/json"]["schema"]["$ref"].endswith("/ChatCompletion")
    assert answers["text/event-stream"]["schema"]["$ref"].endswith("/ChatCompletionChunk")
    assert chat["responses"]["default"]["content"]["application/json"]["schema"]["$ref"] \
        .endswith("/ErrorResponse")
    for path, request, response in [
        ("/v1/completions", "CompletionRequest", "Completion"),
        ("/v1/embeddings", "EmbeddingRequest", "CreateEmbeddingResponse"),
        ("/tokenize", "TokenizeRequest", "TokenizeResponse"),
        ("/detokenize", "DetokenizeRequest", "DetokenizeResponse"),
    ]:
        op = ops[path]["post"]
        assert op["requestBody"]["content"]["application/json"]["schema"]["$ref"] \
            .endswith("/" + request)
        assert op["responses"]["200"]["content"]["application/json"]["schema"]["$ref"] \
            .endswith("/" + response)
    model = ops["/v1/models/{model_id}"]["get"]
    assert model["parameters"] == [{"name": "model_id", "in": "path", "required": True,
                                    "schema": {"type": "string"}}]
    schemas = doc["components"]["schemas"]
    assert {"chat", "tools", "json_schema", "vision"} <= set(schemas["ModelMeta"]["properties"])
    assert schemas["ChatCompletionRequest"]["properties"]["temperature"]["anyOf"][0] == \
        {"type": "number", "minimum": 0.0, "maximum": 2.0}


def test_public_routes_need_no_key_and_others_do() -> None:
    with TestClient(make_app()) as client:
        doc = client.get("/openapi.json").json()
    assert doc["security"] and doc["components"]["securitySchemes"]["bearer"]["scheme"] == \
        "bearer"
    assert doc["paths"]["/health"]["get"]["security"] == []
    assert doc["paths"]["/openapi.json"]["get"]["security"] == []
    assert "security" not in doc["paths"]["/v1/chat/completions"]["post"]


def test_query_parameters_come_from_the_handler_signature() -> None:
    with TestClient(make_app(providers=[PROVIDER])) as client:
        op = client.get("/openapi.json").json()["paths"]["/admin/providers"]["get"]
    names = {p["name"]: p for p in op["parameters"]}
    assert set(names) == {"limit", "provider"}
    assert names["limit"]["in"] == "query" and not names["limit"]["required"]


def test_document_is_built_once() -> None:
    app = make_app()
    with TestClient(app) as client:
        first = client.get("/openapi.json").content
        assert app.state["openapi_doc"] == first
        assert client.get("/openapi.json").content is not None
        app.state["openapi_doc"] = b'{"cached": true}'
        assert client.get("/openapi.json").json() == {"cached": True}


def test_admin_routes_ask_for_an_admin_key_and_metrics_are_text() -> None:
    with TestClient(make_app(server={"api_keys": ["k-1"], "admin_keys": ["a-1"]})) as client:
        doc = client.get("/openapi.json").json()
    for path in ("/admin/models", "/admin/system", "/metrics", "/v1/sessions/stats"):
        assert doc["paths"][path]["get"]["security"] == [{"admin": []}], path
    assert doc["paths"]["/admin/models/{model_id}/load"]["post"]["security"] == [{"admin": []}]
    metrics = doc["paths"]["/metrics"]["get"]["responses"]["200"]["content"]
    assert list(metrics) == ["text/plain; version=0.0.4; charset=utf-8"]
    assert doc["paths"]["/health/ready"]["get"]["security"] == []
