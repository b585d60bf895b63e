"""GET /metrics: Prometheus text. Needs an admin key unless ``server.metrics_public`` is on."""

from __future__ import annotations

from collections.abc import Iterator

from litestar import Request, Response, get
from prometheus_client.exposition import choose_encoder
from prometheus_client.metrics_core import Metric

from hugind.api.gauges import EngineCollector
from hugind.api.runtime import Runtime
from hugind.errors import NotFoundError
from hugind.metrics import REGISTRY


class _Scrape:
    """The process's series, then this app's engine gauges: one exposition (OpenMetrics
    allows a single ``# EOF``, so the two are never encoded separately)."""

    def __init__(self, engine: EngineCollector) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        yield from REGISTRY.collect()
        yield from self._engine.collect()


@get("/metrics", opt={"admin": True, "open_when": "metrics_public"}, sync_to_thread=False)
def metrics(request: Request) -> Response[bytes]:
    """Counters, histograms and engine gauges, in the format the scraper asks for."""
    if not request.app.state.config.server.metrics:
        raise NotFoundError("metrics are off (server.metrics: false)", code="unknown_url")
    encode, content_type = choose_encoder(request.headers.get("accept", ""))
    body = encode(_Scrape(EngineCollector(Runtime.of(request).engine)))  # type: ignore[arg-type]
    return Response(content=body, headers={"content-type": content_type})
