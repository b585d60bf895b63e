"""GET /health: public liveness with each model's state; 503 until all are ready."""

from __future__ import annotations

from litestar import Request, Response, get

from hugind.api.runtime import Runtime, json_response


@get(["/health", "/v1/health"], opt={"public": True}, sync_to_thread=False)
def health(request: Request) -> Response[bytes]:
    """Liveness and readiness."""
    rt = Runtime.of(request)
    models = rt.engine.models()
    states = {m.state for m in models}
    status = ("ok" if states <= {"ready"} else "failed" if "failed" in states
              else "restarting" if "restarting" in states else "loading")
    body = {
        "status": status,
        "models": [{"id": m.id, "kind": m.kind, "state": m.state,
                    **({"error": m.error} if m.error else {})} for m in models],
        "engine": rt.engine.stats(),
    }
    return json_response(body, 200 if status == "ok" else 503)
