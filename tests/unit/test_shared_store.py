"""A session directory shared by several replicas (``sessions.shared``): versions written by
compare-and-swap, reads from the file, other replicas' files kept, one budget for all."""

from __future__ import annotations

import os
import threading
import time
from pathlib import Path

from hugind.sessions import DiskTier, Stamp, decode_file

FP = {"model": "abc", "n_ctx_seq": 64}


def tier(root: Path, replica: str, *, budget: int = 1 << 20, fp: dict | None = None,
         ) -> DiskTier:
    return DiskTier(root, fp or FP, budget_bytes=budget, ttl_s=3600, shared=True,
                    replica=replica)


def test_a_turn_written_by_one_replica_is_read_by_another(tmp_path: Path) -> None:
    a, b = tier(tmp_path, "a"), tier(tmp_path, "b")
    assert a.save("t", "s", [1, 2, 3], b"one", stamp=Stamp(1, "a"))
    assert b.stamp("t", "s") == Stamp(1, "a")  # b indexed nothing: the file is read
    stored = b.load("t", "s")
    assert stored is not None and (stored.tokens, stored.data) == ([1, 2, 3], b"one")
    assert stored.stamp == Stamp(1, "a")
    assert b.save("t", "s", [1, 2, 3, 4], b"two", stamp=Stamp(2, "b"))
    assert a.stamp("t", "s") == Stamp(2, "b")
    assert [e.name for e in a.entries()] == ["s"]


def test_a_version_already_written_elsewhere_is_not_overwritten(tmp_path: Path) -> None:
    a, b = tier(tmp_path, "a"), tier(tmp_path, "b")
    assert a.save("t", "s", [1], b"a1", stamp=Stamp(1, "a"))
    assert b.save("t", "s", [1, 2], b"b2", stamp=Stamp(2, "b"))
    # a's turn 2 (from the same turn 1) finishes later: b's stays, a counts a conflict
    assert not a.save("t", "s", [1, 3], b"a2", stamp=Stamp(2, "a"))
    assert a.conflicts == 1
    stored = a.load("t", "s")
    assert stored is not None and stored.data == b"b2" and stored.stamp == Stamp(2, "b")
    # a later turn wins
    assert a.save("t", "s", [1, 2, 5], b"a3", stamp=Stamp(3, "a"))
    assert b.stamp("t", "s") == Stamp(3, "a")
    assert not list(tmp_path.glob(".tmp-*"))  # the refused write left nothing behind


def test_racing_writers_of_one_version_leave_one_whole_file(tmp_path: Path) -> None:
    tiers = [tier(tmp_path, f"r{i}") for i in range(4)]
    start = threading.Barrier(len(tiers))
    won: list[str] = []

    def write(t: DiskTier) -> None:
        start.wait()
        if t.save("t", "s", list(range(50)), t.replica.encode() * 4096, stamp=Stamp(7, t.replica)):
            won.append(t.replica)

    threads = [threading.Thread(target=write, args=(t,)) for t in tiers]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    assert len(won) == 1
    assert sum(t.conflicts for t in tiers) == len(tiers) - 1
    (path,) = tmp_path.glob("*.session")
    header, _tokens, data = decode_file(path.read_bytes())
    assert header["origin"] == won[0] and data == won[0].encode() * 4096


def test_another_models_files_and_writes_in_progress_are_left_alone(tmp_path: Path) -> None:
    other = tier(tmp_path, "x", fp={"model": "other", "n_ctx_seq": 64})
    assert other.save("t", "s", [1], b"theirs", stamp=Stamp(1, "x"))
    in_progress = tmp_path / ".tmp-abc.session"
    in_progress.write_bytes(b"half a write")
    mine = tier(tmp_path, "a")
    assert mine.load("t", "s") is None  # another model's conversation of the same name
    assert mine.save("t", "s", [1, 2], b"mine", stamp=Stamp(1, "a"))
    assert len(list(tmp_path.glob("[!.]*.session"))) == 2
    assert in_progress.exists()
    stored = other.load("t", "s")
    assert stored is not None and stored.data == b"theirs"


def test_one_budget_for_the_directory_and_pins_hold(tmp_path: Path) -> None:
    blob = b"x" * 1000
    a, b = tier(tmp_path, "a"), tier(tmp_path, "b")
    now = time.time()
    for i, (t, name) in enumerate([(a, "a0"), (b, "b0"), (a, "a1"), (b, "b1"), (a, "a2")]):
        t.save("t", name, [i], blob, last_used=now - 100 + i, stamp=Stamp(1, t.replica))
    size = max(e.size for e in a.entries())
    a.budget_bytes = b.budget_bytes = 4 * size + 10  # room for four of the five files
    assert b.pin("t", "a0", 1100)
    a.pin("t", "b0", 1100)  # pins.json is shared: both pins stay
    assert {n for _, n in b._read_pins()} == {"a0", "b0"}
    for t in (a, b):
        t._enforced_at = 0.0  # as if the enforcement interval had passed
        t.enforce()
    left = sorted(p.name for p in tmp_path.glob("[!.]*.session"))
    names = {e.name for e in a.entries()}
    assert len(left) == 4 and names == {"a0", "b0", "b1", "a2"}  # a1: least recently used


def test_a_delete_on_one_replica_is_seen_by_the_other(tmp_path: Path) -> None:
    a, b = tier(tmp_path, "a"), tier(tmp_path, "b")
    a.save("t", "s", [1], b"one", stamp=Stamp(1, "a"))
    assert b.stamp("t", "s") == Stamp(1, "a")
    assert a.delete("t", "s")
    assert b.stamp("t", "s") is None and b.load("t", "s") is None


def test_lock_files_are_bounded(tmp_path: Path) -> None:
    a = tier(tmp_path, "a")
    for i in range(200):
        a.save("t", f"s{i}", [i], b"d", stamp=Stamp(1, "a"))
    assert len(os.listdir(tmp_path / ".locks")) <= 64 + 2
