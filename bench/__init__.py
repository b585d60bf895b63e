"""Hugind's benchmark harness: a pure OpenAI-HTTP client that measures any server alike.

The harness never imports ``hugind``: Hugind, llama-server and llama-cpp-python's server are all
measured through the same request function over HTTP (``bench.client.send_request``), and the
in-process engine ceiling (``bench.engine_ceiling``) through llama-cpp-python's ``Llama``.

Modules:

- ``sse``: parsing of server-sent events and per-stream token counting, TTFT and ITL.
- ``stats``: percentiles and flat, unit-suffixed summaries.
- ``schedule``: interleaving of targets across rounds and steps.
- ``client``: targets, request specs, results, and the one request function.
- ``scenarios``: decode, prefill, concurrency, sessions and embeddings.
- ``engine_ceiling``: the same model run in-process with no server.
- ``report``: JSON, markdown and optional PNG plots.
- ``machine``: machine facts recorded with the results.
- ``peers``: starting and stopping peer servers (Hugind, llama-server, llama-cpp-python).
- ``cli``: ``python -m bench`` / ``hugind bench``.
"""

from __future__ import annotations

__all__ = ["SCHEMA"]

SCHEMA = "hugind-bench/1"
