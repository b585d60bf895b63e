"""The runtime key store: encrypted at rest, kept across restarts, a wrong secret is named."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from hugind.config import ConfigError
from hugind.providers.keystore import KeyStore, KeyStoreError

SECRET = "a-long-server-secret-0001"
KEY = "sk-runtime-KEYKEYKEYKEYKEYKEY-rt01"


def test_the_file_holds_no_key_and_is_private(tmp_path: Path) -> None:
    path = tmp_path / "state" / "provider-keys.json"
    store = KeyStore(path, SECRET)
    stored = store.add("openai", KEY, "team a")
    raw = path.read_bytes()
    assert KEY.encode() not in raw and KEY[-8:].encode() not in raw
    assert SECRET.encode() not in raw
    assert b"team a" in raw  # names and ids are not secret
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["provider-keys.json"]  # no temp left
    assert KEY not in repr(stored)


def test_a_restart_keeps_keys_and_the_selection(tmp_path: Path) -> None:
    path = tmp_path / "provider-keys.json"
    first = KeyStore(path, SECRET)
    a = first.add("openai", KEY, None)
    b = first.add("openai", KEY + "b", "second")
    first.select("openai", b.id)
    first.rename("openai", a.id, "renamed")
    again = KeyStore(path, SECRET)
    assert [(k.id, k.api_key, k.name) for k in again.keys("openai")] == [
        (a.id, KEY, "renamed"), (b.id, KEY + "b", "second")]
    assert again.selected("openai") == b.id
    again.remove("openai", {b.id})
    third = KeyStore(path, SECRET)
    assert [k.id for k in third.keys("openai")] == [a.id]
    assert third.selected("openai") is None


def test_a_wrong_secret_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "provider-keys.json"
    KeyStore(path, SECRET).add("openai", KEY, None)
    with pytest.raises(KeyStoreError) as exc:
        KeyStore(path, "another-secret-of-16+")
    assert isinstance(exc.value, ConfigError)
    assert str(exc.value).startswith("server.secret_key: does not decrypt")
    assert "another server.secret_key" in str(exc.value)
    assert KEY not in str(exc.value)


def test_stored_keys_without_a_secret_refuse_to_start(tmp_path: Path) -> None:
    path = tmp_path / "provider-keys.json"
    KeyStore(path, SECRET).add("openai", KEY, None)
    with pytest.raises(KeyStoreError, match=r"server.secret_key: is not set, and .* holds"):
        KeyStore(path, None)


def test_without_a_secret_adding_is_refused_but_selection_works(tmp_path: Path) -> None:
    path = tmp_path / "provider-keys.json"
    store = KeyStore(path, None)
    assert not store.writable
    with pytest.raises(KeyStoreError, match=r"server\.secret_key: is not set"):
        store.add("openai", KEY, None)
    store.select("openai", "yaml-00000000")
    assert KeyStore(path, None).selected("openai") == "yaml-00000000"


def test_an_unreadable_store_names_the_file(tmp_path: Path) -> None:
    path = tmp_path / "provider-keys.json"
    path.write_text("not json")
    with pytest.raises(KeyStoreError, match="cannot read the key store"):
        KeyStore(path, SECRET)


def test_memory_only_store_writes_nothing(tmp_path: Path) -> None:
    store = KeyStore(None, SECRET)
    store.add("openai", KEY, None)
    assert [k.api_key for k in store.keys("openai")] == [KEY]
    assert list(tmp_path.iterdir()) == []
