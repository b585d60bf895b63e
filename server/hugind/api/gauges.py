"""Engine gauges read at scrape time: queues, sequences, sessions by tier, model states.

A collector over one app's engine (``engine.stats()`` and ``engine.models()``), so two apps in
one process (tests, a Hugind upstream of a Hugind) never report each other's engine. Labels are
configured model names and fixed tiers and states only.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from hugind.engine.interface import Engine

MODEL_STATES = ("unloaded", "loading", "ready", "restarting", "failed")
#: tier -> (sessions key, bytes key, restores key) in a worker's stats
_TIERS = {
    "resident": ("resident_sessions", None, None),
    "ram": ("ram_sessions", "ram_bytes", "restored_ram"),
    "disk": ("disk_sessions", "disk_bytes", "restored_disk"),
}


class EngineCollector:
    """A prometheus-client collector; ``collect`` runs on the scraping request's thread."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine

    def collect(self) -> Iterator[Metric]:
        yield from self._stats(self._engine.stats())
        yield from self._models()

    def _stats(self, stats: dict[str, Any]) -> Iterator[Metric]:
        queue = GaugeMetricFamily("hugind_queue_depth", "Requests waiting for a sequence",
                                  labels=["model"])
        active = GaugeMetricFamily("hugind_active_sequences", "Sequences being generated",
                                   labels=["model"])
        sessions = GaugeMetricFamily("hugind_sessions", "Stored conversations by tier",
                                     labels=["model", "tier"])
        nbytes = GaugeMetricFamily("hugind_session_bytes", "Bytes of stored conversations",
                                   labels=["model", "tier"])
        restores = CounterMetricFamily("hugind_session_restores",
                                       "Conversations resumed from a tier",
                                       labels=["model", "tier"])
        for model, s in stats.items():
            if not isinstance(s, dict):
                continue
            _add(queue, [model], s.get("queue_depth"))
            _add(active, [model], s.get("active_sequences"))
            for tier, (n_key, bytes_key, restore_key) in _TIERS.items():
                _add(sessions, [model, tier], s.get(n_key))
                _add(nbytes, [model, tier], s.get(bytes_key) if bytes_key else None)
                _add(restores, [model, tier], s.get(restore_key) if restore_key else None)
        yield from (queue, active, sessions, nbytes, restores)

    def _models(self) -> Iterator[Metric]:
        state = GaugeMetricFamily("hugind_model_state", "1 for the model's current state",
                                  labels=["model", "state"])
        load = GaugeMetricFamily("hugind_model_load_seconds", "How long the last load took",
                                 labels=["model"])
        for info in self._engine.models():
            for name in MODEL_STATES:
                state.add_metric([info.id, name], 1.0 if info.state == name else 0.0)
            _add(load, [info.id], info.load_seconds)
        yield from (state, load)


def _add(family: GaugeMetricFamily | CounterMetricFamily, labels: list[str],
         value: Any) -> None:
    if isinstance(value, int | float) and not isinstance(value, bool):
        family.add_metric(labels, float(value))
