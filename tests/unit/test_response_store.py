"""The stored-responses store: tenant scoping, count and TTL bounds, atomic writes, restarts."""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest

from hugind.api.response_store import ResponseStore, StoredResponse, tenant_dir
from hugind.api.responses_input import item_id
from hugind.config import ConfigError, parse_config


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


class Clock:
    def __init__(self) -> None:
        self.now = 1_000_000.0

    def __call__(self) -> float:
        return self.now


def record(text: str = "hi") -> StoredResponse:
    return StoredResponse(response={"id": item_id("resp"), "object": "response",
                                    "output": [{"type": "message", "text": text}]},
                          input_items=[{"id": item_id("msg"), "type": "message"}],
                          session="resp-chain:x")


def files(root: Path, pattern: str = "*.json") -> list[Path]:
    return list(root.rglob(pattern))


def store(root: Path, clock: Clock | None = None, **kw: Any) -> ResponseStore:
    return ResponseStore(root, max_count=kw.get("max_count", 100),
                         ttl_s=kw.get("ttl_s", 3600), clock=clock or Clock())


@pytest.mark.anyio
async def test_put_get_delete_by_tenant(tmp_path: Path) -> None:
    s, r = store(tmp_path), record()
    await s.put("alice", r)
    got = await s.get("alice", r.id)
    assert got == r and got is not None and got.session == "resp-chain:x"
    assert await s.get("bob", r.id) is None  # another tenant finds nothing
    assert not await s.delete("bob", r.id)
    assert await s.delete("alice", r.id)
    assert await s.get("alice", r.id) is None
    assert not await s.delete("alice", r.id)
    assert not files(tmp_path)


@pytest.mark.anyio
async def test_ids_that_are_not_ours_are_never_paths(tmp_path: Path) -> None:
    s = store(tmp_path)
    for ident in ("../../etc/passwd", "resp_" + "0" * 47, "resp_" + "g" * 48, ""):
        assert await s.get("alice", ident) is None


@pytest.mark.anyio
async def test_count_bound_drops_the_oldest(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock, max_count=3)
    records = []
    for _ in range(5):
        clock.now += 1
        records.append(r := record())
        await s.put("alice" if len(records) % 2 else "bob", r)
    assert len(s) == 3
    kept = [await s.get(t, r.id) for t in ("alice", "bob") for r in records]
    assert {k.id for k in kept if k is not None} == {r.id for r in records[2:]}
    assert len(files(tmp_path)) == 3


@pytest.mark.anyio
async def test_ttl_expires_on_read_and_on_write(tmp_path: Path) -> None:
    clock = Clock()
    s = store(tmp_path, clock, ttl_s=60)
    old, young = record(), record()
    await s.put("alice", old)
    clock.now += 30
    await s.put("alice", young)
    clock.now += 40  # old is 70 s old, young 40 s
    assert await s.get("alice", old.id) is None
    assert await s.get("alice", young.id) == young
    assert not (tmp_path / tenant_dir("alice") / f"{old.id}.json").exists()


@pytest.mark.anyio
async def test_a_new_store_on_the_same_folder_finds_them(tmp_path: Path) -> None:
    r = record()
    await store(tmp_path).put("alice", r)
    crashed = tmp_path / tenant_dir("alice") / ".tmp-crashed.json"
    crashed.write_bytes(b"{half")
    os.utime(crashed, (time.time() - 7200, time.time() - 7200))  # a young one may be a write
    again = ResponseStore(tmp_path, max_count=10, ttl_s=3600)  # real clock: file times
    assert await again.get("alice", r.id) == r
    assert await again.get("bob", r.id) is None
    assert not files(tmp_path, ".tmp-*")  # a crash's old leftover is swept at first use


@pytest.mark.anyio
async def test_a_failed_write_keeps_the_old_file_whole(tmp_path: Path,
                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    s, r = store(tmp_path), record("first")
    await s.put("alice", r)

    def broken(fd: int) -> None:
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", broken)
    changed = StoredResponse(response={**r.response, "output": []}, input_items=[])
    with pytest.raises(OSError, match="disk full"):
        await s.put("alice", changed)
    monkeypatch.undo()
    assert await s.get("alice", r.id) == r
    assert [p.name for p in (tmp_path / tenant_dir("alice")).iterdir()] == [f"{r.id}.json"]


@pytest.mark.anyio
async def test_an_unreadable_file_is_dropped(tmp_path: Path) -> None:
    s, r = store(tmp_path), record()
    await s.put("alice", r)
    (tmp_path / tenant_dir("alice") / f"{r.id}.json").write_bytes(b"not json")
    assert await s.get("alice", r.id) is None
    assert len(s) == 0


@pytest.mark.parametrize(("sessions", "key"), [
    ({"responses_max": 0}, "sessions.responses_max"),
    ({"responses_ttl_s": -1}, "sessions.responses_ttl_s"),
    ({"responses_ttl_s": "soon"}, "sessions.responses_ttl_s"),
])
def test_config_errors_name_the_key(sessions: dict[str, Any], key: str) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config({"sessions": sessions})
    assert err.value.key_path == key


def test_the_ttl_defaults_to_the_sessions_ttl() -> None:
    assert parse_config({"sessions": {"ttl_s": 60}}).sessions.response_ttl_s == 60
    assert parse_config({"sessions": {"ttl_s": 60, "responses_ttl_s": 5}}
                        ).sessions.response_ttl_s == 5
    assert parse_config({}).sessions.responses_max == 10000


@pytest.mark.anyio
async def test_a_response_stored_by_another_replica_is_found(tmp_path: Path) -> None:
    """Replicas sharing the folder (sessions.shared): one stores, the other finds it though
    its index was built before, and a young temporary file (a write in progress) stays."""
    a, b = store(tmp_path), store(tmp_path)
    in_progress = tmp_path / tenant_dir("t") / ".tmp-x.json"
    in_progress.parent.mkdir(parents=True)
    in_progress.write_bytes(b"{")
    assert len(b) == 0  # b's index is built now, before a stores anything
    r = record()
    await a.put("t", r)
    got = await b.get("t", r.id)
    assert got is not None and got.response == r.response
    assert await b.get("other", r.id) is None
    assert in_progress.exists()
