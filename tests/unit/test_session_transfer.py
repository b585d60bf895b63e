"""The session export file: round trip, and every damaged or foreign file refused."""

from __future__ import annotations

import pytest

from hugind.sessions import SessionFileError, canonical, export_bytes, read_export
from hugind.sessions.disk import encode

FP = {"model": "abc", "n_ctx": 1024, "type_k": "f16"}


def test_round_trip_keeps_tokens_state_and_fingerprint() -> None:
    blob = export_bytes([1, 2, 3], b"kv-state", FP, model="gemma")
    found = read_export(blob)
    assert (found.tokens, found.data, found.model) == ([1, 2, 3], b"kv-state", "gemma")
    assert found.fingerprint == canonical(FP)
    assert b"tenant" not in blob  # tenant-independent


@pytest.mark.parametrize(("damage", "why"), [
    (lambda b: b[:-1], "truncated"),
    (lambda b: b[:40], "truncated"),
    (lambda b: b[:-40] + bytes([b[-40] ^ 1]) + b[-39:], "checksum"),
    (lambda b: b"XXXX" + b[4:], "not a Hugind"),
    (lambda b: b"", "too short"),
])
def test_damaged_files_are_refused(damage, why) -> None:  # type: ignore[no-untyped-def]
    blob = export_bytes([1, 2, 3], b"kv-state" * 10, FP, model="gemma")
    with pytest.raises(SessionFileError, match=why):
        read_export(damage(blob))


def test_a_disk_tier_file_is_not_an_export() -> None:
    with pytest.raises(SessionFileError, match="not a Hugind"):
        read_export(encode("t", "n", [1], b"x", FP))
