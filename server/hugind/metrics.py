"""Prometheus metrics: one registry for the process, the series every layer writes.

Counters and histograms are written where the event happens (the HTTP layer, the providers);
engine gauges (queues, sessions, model states) are read from the engine at scrape time by a
collector the app registers. Labels hold model, endpoint, provider and status names only:
never a key, a tenant or client text.
"""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram

REGISTRY = CollectorRegistry(auto_describe=True)

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
                    120.0, 300.0)
_TOKEN_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56)

REQUESTS = Counter("hugind_requests", "HTTP requests answered",
                   ["endpoint", "model", "status"], registry=REGISTRY)
REQUEST_DURATION = Histogram("hugind_request_duration_seconds",
                             "Wall time from request to the last byte", ["endpoint"],
                             buckets=_LATENCY_BUCKETS, registry=REGISTRY)
TIME_TO_FIRST_TOKEN = Histogram("hugind_time_to_first_token_seconds",
                                "Time from request to the first generated token", ["model"],
                                buckets=_LATENCY_BUCKETS, registry=REGISTRY)
INTER_TOKEN_LATENCY = Histogram("hugind_inter_token_latency_seconds",
                                "Time between two generated tokens of one sequence", ["model"],
                                buckets=_TOKEN_BUCKETS, registry=REGISTRY)
PROMPT_TOKENS = Counter("hugind_prompt_tokens", "Prompt tokens of answered requests",
                        ["model"], registry=REGISTRY)
CACHED_PROMPT_TOKENS = Counter("hugind_cached_prompt_tokens",
                               "Prompt tokens served from a cached session", ["model"],
                               registry=REGISTRY)
GENERATION_TOKENS = Counter("hugind_generation_tokens", "Generated tokens", ["model"],
                            registry=REGISTRY)
PROVIDER_REQUESTS = Counter("hugind_provider_requests", "Upstream attempts to providers",
                            ["provider", "status"], registry=REGISTRY)
PROVIDER_FAILOVERS = Counter("hugind_provider_failovers",
                             "Requests moved away from a provider's key or from the provider",
                             ["provider"], registry=REGISTRY)
RATE_LIMITED = Counter("hugind_rate_limited", "Requests refused or delayed by a rate limit",
                       ["limit"], registry=REGISTRY)
