"""A bounded load test on loopback (bench/load.py): 32 clients mixing chat, completions and
embeddings, streamed and not, a tenth leaving mid-stream, for 60 s. Every completed answer
equals its solo answer (the server runs batch-invariant), beyond the queue only 429s, the
counters go back to idle, no session is left behind, and RSS stays within 5% of warm-up."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from bench.load import run

from tests.conftest import model_config
from tests.servers import HugindProcess

pytestmark = pytest.mark.model


def test_32_clients_for_a_minute(gemma_path: Path, tmp_path: Path) -> None:
    cfg = model_config(gemma_path, batch_invariant=True, parallel=4, max_queue=8)
    cfg["models"][1]["max_queue"] = 8
    proc = HugindProcess(cfg, tmp_path, name="load").start()
    try:
        assert proc.proc is not None
        rep = asyncio.run(run(proc.url, "gemma", "gemma-embed", clients=32, duration=60,
                              warmup=15, pid=proc.proc.pid))
    finally:
        proc.stop()
    summary = json.dumps(rep.to_dict(), indent=1)
    assert rep.failures == [], summary
    assert rep.statuses["200"] > 50, summary
    assert set(rep.statuses) <= {"200", "429"}, summary
    assert rep.disconnects > 0 and all(rep.kinds[k] > 0 for k in
                                       ("chat", "chat_stream", "completion",
                                        "completion_stream", "embedding")), summary
    print(summary)
