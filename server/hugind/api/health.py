"""Health probes, public and cheap; they reveal model states only (no paths, errors, counters).

- ``/health``: 200 when every model is ready, else 503 (today's behaviour).
- ``/health/live``: 200 whenever HTTP is served, also while models load, so a long load never
  triggers a liveness restart.
- ``/health/ready``: 200 when every preloaded model is ready and the server is not draining,
  else 503 with ``Retry-After``. A model loaded on demand (``preload: false``) never blocks it.
"""

from __future__ import annotations

from http import HTTPStatus

from litestar import Request, Response, get

from hugind.api.runtime import Runtime, json_response

RETRY_AFTER_S = 5
_PUBLIC = {"public": True}


@get(["/health", "/v1/health"], opt=_PUBLIC, sync_to_thread=False)
def health(request: Request) -> Response[bytes]:
    """Each model's state; 503 until all are ready."""
    models = Runtime.of(request).engine.models()
    states = {m.state for m in models} - {"unloaded"}  # loaded on demand: not a fault
    status = ("ok" if states <= {"ready"} else "failed" if "failed" in states
              else "restarting" if "restarting" in states else "loading")
    body = {"status": status,
            "models": [{"id": m.id, "kind": m.kind, "state": m.state} for m in models]}
    return json_response(body, HTTPStatus.OK if status == "ok" else HTTPStatus.SERVICE_UNAVAILABLE)


@get("/health/live", opt=_PUBLIC, sync_to_thread=False)
def health_live() -> Response[bytes]:
    """Liveness: the process serves HTTP."""
    return json_response({"status": "ok"})


@get("/health/ready", opt=_PUBLIC, sync_to_thread=False)
def health_ready(request: Request) -> Response[bytes]:
    """Readiness: preloaded models ready and not draining."""
    rt = Runtime.of(request)
    if rt.draining:
        status = "draining"
    else:
        waiting = [m for m in rt.engine.models() if m.preload and m.state != "ready"]
        states = {m.state for m in waiting}
        status = next((s for s in ("failed", "restarting", "loading") if s in states),
                      "ok" if not waiting else "loading")
    if status == "ok":
        return json_response({"status": status})
    return json_response({"status": status}, HTTPStatus.SERVICE_UNAVAILABLE,
                         headers={"Retry-After": str(RETRY_AFTER_S)})
