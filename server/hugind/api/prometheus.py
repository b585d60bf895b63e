"""GET /metrics: Prometheus text. Needs an admin key unless ``server.metrics_public`` is on."""

from __future__ import annotations

from litestar import Request, Response, get
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from hugind.api.gauges import EngineCollector
from hugind.api.runtime import Runtime
from hugind.metrics import REGISTRY


@get("/metrics", opt={"admin": True, "open_when": "metrics_public"}, sync_to_thread=False)
def metrics(request: Request) -> Response[bytes]:
    """Process counters and histograms, then this app's engine gauges."""
    engine = EngineCollector(Runtime.of(request).engine)
    body = generate_latest(REGISTRY) + generate_latest(engine)  # type: ignore[arg-type]
    return Response(content=body, headers={"content-type": CONTENT_TYPE_LATEST})
