"""The model lifecycle's rules with fake workers: which model is evicted, when a load waits,
times out or is refused, and that unloads wait for running requests."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
import weakref

import pytest

from hugind.config import ModelConfig
from hugind.engine.handle import ModelHandle
from hugind.engine.lifecycle import Lifecycle, public_reason, release_memory, settle_heap
from hugind.errors import ModelNotReadyError, OverloadedError


class FakeWorkers:
    """``spawn`` "loads" on a thread after ``load_s``; ``halt`` records the unload."""

    def __init__(self, load_s: float = 0.0, fail: set[str] | None = None) -> None:
        self.load_s = load_s
        self.fail = fail or set()
        self.loads: list[str] = []
        self.halts: list[str] = []

    def spawn(self, h: ModelHandle) -> None:
        self.loads.append(h.cfg.id)
        gen = h.generation

        def load() -> None:
            time.sleep(self.load_s)
            if h.generation == gen:
                h.state = "failed" if h.cfg.id in self.fail else "ready"
                h.touch()

        threading.Thread(target=load, daemon=True).start()

    def halt(self, h: ModelHandle) -> None:
        self.halts.append(h.cfg.id)


def handles(*ids: str, preload: bool = False, ttl_s: int = 0) -> list[ModelHandle]:
    return [ModelHandle(ModelConfig(id=i, path="/m.gguf", preload=preload, ttl_s=ttl_s),
                        "generate") for i in ids]


def lifecycle(hs: list[ModelHandle], workers: FakeWorkers, *, max_loaded: int | None = None,
              load_timeout_s: float = 5.0) -> Lifecycle:
    return Lifecycle(hs, spawn=workers.spawn, halt=workers.halt, max_loaded=max_loaded,
                     load_timeout_s=load_timeout_s, unload_grace_s=1.0)


def test_least_recently_used_idle_model_is_evicted() -> None:
    a, b, c = hs = handles("a", "b", "c")
    workers = FakeWorkers()
    lc = lifecycle(hs, workers, max_loaded=2)
    asyncio.run(lc.ensure_loaded(a))
    asyncio.run(lc.ensure_loaded(b))
    a.touch()  # a used after b: b is the least recently used
    asyncio.run(lc.ensure_loaded(c))
    assert (a.state, b.state, c.state) == ("ready", "unloaded", "ready")
    assert workers.halts == ["b"]


def test_busy_models_are_not_evicted() -> None:
    a, b = hs = handles("a", "b")
    lc = lifecycle(hs, FakeWorkers(), max_loaded=1)
    asyncio.run(lc.ensure_loaded(a))
    a.inflight = 1
    with pytest.raises(OverloadedError) as err:
        asyncio.run(lc.ensure_loaded(b))
    assert err.value.code == "models_busy" and err.value.headers["Retry-After"]
    assert (a.state, b.state) == ("ready", "unloaded")


def test_concurrent_requests_load_once_and_wait() -> None:
    (a,) = hs = handles("a")
    workers = FakeWorkers(load_s=0.3)
    lc = lifecycle(hs, workers)

    async def many() -> None:
        await asyncio.gather(*(lc.ensure_loaded(a) for _ in range(5)))

    asyncio.run(many())
    assert a.state == "ready" and workers.loads == ["a"]


def test_load_past_the_timeout_is_503_with_retry_after() -> None:
    (a,) = hs = handles("a")
    lc = lifecycle(hs, FakeWorkers(load_s=1.0), load_timeout_s=0.2)
    with pytest.raises(ModelNotReadyError) as err:
        asyncio.run(lc.ensure_loaded(a))
    assert "load_timeout_s" in err.value.message and err.value.headers["Retry-After"]


def test_a_failed_model_is_retried_only_when_asked() -> None:
    (a,) = hs = handles("a")
    workers = FakeWorkers(fail={"a"})
    lc = lifecycle(hs, workers)
    asyncio.run(lc.ensure_loaded(a))
    assert a.state == "failed"
    asyncio.run(lc.ensure_loaded(a))  # a request: no new attempt
    assert workers.loads == ["a"]
    workers.fail.clear()
    asyncio.run(lc.ensure_loaded(a, retry_failed=True))  # the admin's load
    assert a.state == "ready" and workers.loads == ["a", "a"]


def test_unload_waits_for_running_requests_within_the_grace() -> None:
    (a,) = hs = handles("a")
    lc = lifecycle(hs, FakeWorkers())
    asyncio.run(lc.ensure_loaded(a))
    a.inflight = 1
    threading.Timer(0.3, lambda: setattr(a, "inflight", 0)).start()
    started = time.monotonic()
    assert lc.unload(a)
    assert 0.25 < time.monotonic() - started < 1.0
    assert a.state == "unloaded"


def test_idle_reaper_unloads_after_ttl() -> None:
    (a,) = hs = handles("a", preload=True, ttl_s=1)
    workers = FakeWorkers()
    lc = lifecycle(hs, workers)
    lc.start()
    try:
        deadline = time.monotonic() + 5
        while a.state != "unloaded" and time.monotonic() < deadline:
            time.sleep(0.1)
        assert a.state == "unloaded" and workers.halts == ["a"]
    finally:
        lc.close()


def test_public_reason_drops_folders() -> None:
    exc = Exception("llama.cpp could not load /srv/secret/models/x.gguf (not a valid GGUF?)")
    assert public_reason(exc) == "llama.cpp could not load x.gguf (not a valid GGUF?)"
    assert public_reason(Exception(r"no such file: C:\Users\me\m.gguf")) == "no such file: m.gguf"


class _Node:
    def __init__(self) -> None:
        self.me = self  # a cycle: only the cyclic collector frees it


def test_a_settled_heap_is_left_alone_until_an_unload_frees_its_cycles() -> None:
    try:
        node = _Node()
        gone = weakref.ref(node)
        settle_heap()
        assert gc.get_freeze_count() > 0  # full collections no longer walk what loaded
        del node
        gc.collect()
        assert gone() is not None  # frozen: a collection does not look at it
        release_memory()  # an unload: what the model left behind is collected
        assert gone() is None
        assert gc.get_freeze_count() > 0  # and what is still alive is frozen again
    finally:
        gc.unfreeze()
