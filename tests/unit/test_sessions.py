from __future__ import annotations

import time
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hugind.sessions import DiskTier, Snapshot, SnapshotStore, common_prefix
from hugind.sessions.disk import encode, file_name

FP = {"model": "abc", "n_ctx_seq": 1024}


@given(a=st.lists(st.integers(0, 3), max_size=600), b=st.lists(st.integers(0, 3), max_size=600))
def test_common_prefix_matches_oracle(a: list[int], b: list[int]) -> None:
    n = 0
    while n < min(len(a), len(b)) and a[n] == b[n]:
        n += 1
    assert common_prefix(a, b) == n


@given(base=st.lists(st.integers(0, 5), max_size=700), k=st.integers(0, 700),
       tail=st.lists(st.integers(6, 9), max_size=5))
def test_common_prefix_of_extension(base: list[int], k: int, tail: list[int]) -> None:
    k = min(k, len(base))
    assert common_prefix(base, base[:k] + tail) == k


def test_disk_roundtrip_and_restart(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path, FP, budget_bytes=10**9, ttl_s=3600)
    disk.save("t", "s", [1, 2, 3], b"state")
    again = DiskTier(tmp_path, FP, budget_bytes=10**9, ttl_s=3600)
    stored = again.load("t", "s")
    assert stored is not None and (stored.tokens, stored.data) == ([1, 2, 3], b"state")
    assert again.load("other", "s") is None


@pytest.mark.parametrize("damage", ["truncate", "flip", "garbage", "foreign", "empty"])
def test_bad_files_are_discarded(tmp_path: Path, damage: str,
                                 caplog: pytest.LogCaptureFixture) -> None:
    path = tmp_path / file_name("t", "s")
    blob = encode("t", "s", [1, 2], b"x" * 100, FP)
    if damage == "truncate":
        blob = blob[:-10]
    elif damage == "flip":
        blob = blob[:-1] + bytes([blob[-1] ^ 1])
    elif damage == "garbage":
        blob = b"\x00" * 50
    elif damage == "foreign":
        blob = encode("t", "s", [1, 2], b"x" * 100, {**FP, "model": "other"})
    else:
        blob = b""
    path.write_bytes(blob)
    disk = DiskTier(tmp_path, FP, budget_bytes=10**9, ttl_s=3600)
    assert disk.load("t", "s") is None
    assert not path.exists()
    assert disk.discarded == 1
    assert "discarding session file" in caplog.text


def test_disk_budget_and_ttl(tmp_path: Path) -> None:
    disk = DiskTier(tmp_path, FP, budget_bytes=3000, ttl_s=3600)
    for i in range(10):
        disk.save("t", f"s{i}", [i], b"x" * 500)
    assert disk.total_bytes <= 3000
    assert disk.get_entry("t", "s9") is not None and disk.get_entry("t", "s0") is None
    disk.enforce(now=time.time() + 7200)
    assert disk.entries() == []


@settings(max_examples=50, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["put", "take", "delete"]), st.integers(0, 6),
                              st.integers(1, 400)), max_size=40))
def test_store_bookkeeping_holds_budgets(tmp_path_factory: pytest.TempPathFactory,
                                         ops: list[tuple[str, int, int]]) -> None:
    root = tmp_path_factory.mktemp("store")
    store = SnapshotStore(1000, DiskTier(root, FP, budget_bytes=2000, ttl_s=3600))
    model: dict[str, bytes] = {}
    for op, who, size in ops:
        name = f"u{who}"
        if op == "put":
            store.put(Snapshot("t", name, [who], b"y" * size))
            model[name] = b"y" * size
        elif op == "take":
            got = store.take("t", name)
            if got is not None:
                assert got[0].data == model[name]
            model.pop(name, None)
        else:
            store.delete("t", name)
            model.pop(name, None)
        stats = store.stats()
        assert stats.ram_bytes <= 1000
        assert stats.disk_bytes <= 2000
        assert stats.ram_bytes == sum(len(s) + 4 for _, s in _ram(store))


def _ram(store: SnapshotStore) -> list[tuple[str, bytes]]:
    return [(k[1], v.data) for k, (v, _on_disk) in store._ram.items()]
