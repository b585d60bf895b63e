"""GET /openapi.json: an OpenAPI 3.1 document of the app's native routes.

Handlers decode their bodies themselves, so Litestar cannot see their types; the document is
built from the app's routes (paths, methods, path and query parameters, public or not) and the
msgspec Structs that ``OPERATIONS`` names for each handler, whose JSON Schemas msgspec writes.
A route without an entry is still listed, with a free-form JSON answer.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import msgspec
from litestar import MediaType, Request, Response, get

from hugind import __version__
from hugind.api.openapi_operations import OPERATIONS, Operation
from hugind.api.response_types import ErrorResponse

if TYPE_CHECKING:
    from litestar import Litestar
    from litestar.handlers import HTTPRouteHandler
    from litestar.routes import HTTPRoute

REF = "#/components/schemas/{name}"
# Arguments Litestar injects: never query parameters.
_INJECTED = {"request", "state", "headers", "cookies", "body", "data", "scope", "socket"}
_PATH_TYPES = {int: {"type": "integer"}, float: {"type": "number"}}
_SECURITY = [{"bearer": []}, {"x-api-key": []}]


def native_routes(app: Litestar) -> list[tuple[HTTPRoute, HTTPRouteHandler, str]]:
    """(route, handler, method) of every route that belongs in the document: all but CORS
    preflights and provider catch-alls (``include_in_schema=False``)."""
    out = []
    for route in app.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.include_in_schema is False:
                continue
            out += [(route, handler, m) for m in sorted(handler.http_methods) if m != "OPTIONS"]
    return out


def _schema_ref(kind: Any) -> dict[str, Any]:
    name = getattr(kind, "__name__", None)
    if isinstance(kind, type) and issubclass(kind, msgspec.Struct) and name:
        return {"$ref": REF.format(name=name)}
    return msgspec.json.schema(kind)


def _parameters(route: HTTPRoute, handler: HTTPRouteHandler) -> list[dict[str, Any]]:
    params = [{"name": p.name, "in": "path", "required": True,
               "schema": _PATH_TYPES.get(p.type, {"type": "string"})}
              for p in route.path_parameters.values()]
    for name, field in handler.parsed_fn_signature.parameters.items():
        if name in _INJECTED or name in route.path_parameters:
            continue
        params.append({"name": name, "in": "query", "required": field.is_required,
                       "schema": msgspec.json.schema(field.annotation)})
    return params


def _responses(handler: HTTPRouteHandler, op: Operation) -> dict[str, Any]:
    content: dict[str, Any] = {op.media_type: {"schema": _schema_ref(op.response)}}
    if op.stream is not None:
        content["text/event-stream"] = {"schema": _schema_ref(op.stream)}
    ok = {"description": op.describe_answer(), "content": content}
    error = {"description": "an error, in the OpenAI shape",
             "content": {"application/json": {"schema": _schema_ref(ErrorResponse)}}}
    return {str(handler.status_code): ok, "default": error}


def _summary(handler: HTTPRouteHandler) -> str:
    doc = (handler.fn.__doc__ or handler.handler_name).strip()
    return doc.splitlines()[0]


def _operation(route: HTTPRoute, handler: HTTPRouteHandler, method: str) -> dict[str, Any]:
    op = OPERATIONS.get(handler.handler_name, Operation())
    slug = re.sub(r"[^A-Za-z0-9]+", "_", route.path_format).strip("_")
    out: dict[str, Any] = {
        "operationId": f"{method.lower()}_{slug}",
        "summary": _summary(handler),
        "tags": [op.tag or _tag(route.path_format)],
        "parameters": _parameters(route, handler),
        "responses": _responses(handler, op),
    }
    if op.request is not None:
        out["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _schema_ref(op.request)}}}
    if handler.opt.get("public"):
        out["security"] = []
    elif handler.opt.get("admin"):
        out["security"] = [{"admin": []}]
    return out


def _tag(path: str) -> str:
    parts = [p for p in path.split("/") if p and p != "v1"]
    return parts[0] if parts else "root"


def build_openapi(app: Litestar) -> dict[str, Any]:
    """The OpenAPI 3.1 document of ``app``'s native routes."""
    paths: dict[str, dict[str, Any]] = {}
    for route, handler, method in native_routes(app):
        paths.setdefault(route.path_format, {})[method.lower()] = \
            _operation(route, handler, method)
    structs = {k for op in OPERATIONS.values() for k in op.types()} | {ErrorResponse}
    _, schemas = msgspec.json.schema_components(sorted(structs, key=lambda t: t.__name__),
                                                ref_template=REF)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Hugind", "version": __version__,
                 "description": "OpenAI-compatible local inference on llama.cpp. Every "
                                "/v1 path also answers without the /v1 prefix."},
        "paths": dict(sorted(paths.items())),
        "components": {"schemas": schemas, "securitySchemes": {
            "bearer": {"type": "http", "scheme": "bearer",
                       "description": "a key from server.api_keys"},
            "admin": {"type": "http", "scheme": "bearer",
                      "description": "a key from server.admin_keys"},
            "x-api-key": {"type": "apiKey", "in": "header", "name": "X-API-Key"}}},
        "security": _SECURITY,
    }


_encode = msgspec.json.Encoder().encode


@get("/openapi.json", opt={"public": True}, sync_to_thread=False)
def openapi_json(request: Request) -> Response[bytes]:
    """This document."""
    state = request.app.state
    doc = state.get("openapi_doc")
    if doc is None:  # built once; routes never change after start
        doc = state["openapi_doc"] = _encode(build_openapi(request.app))
    return Response(content=doc, media_type=MediaType.JSON)
