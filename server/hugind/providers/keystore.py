"""Provider keys added through the admin API, kept across restarts, encrypted at rest.

One JSON file (``<state_dir>/provider-keys.json``, mode 0600, replaced atomically on every
change) holds each provider's runtime keys as Fernet tokens (``cryptography``), and its selected
key's id. The Fernet key comes from ``server.secret_key`` through scrypt with a per-file salt,
so the file alone reveals no key, and the plain keys live only in memory.

Threading: one event loop; every method is synchronous and quick (a small file).
"""

from __future__ import annotations

import base64
import json
import os
import secrets
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.fernet import Fernet, InvalidToken
from cryptography.hazmat.primitives.kdf.scrypt import Scrypt

from hugind.config import ConfigError

FILE_NAME = "provider-keys.json"
_VERSION = 1
_SCRYPT_N = 2**14  # ~50 ms once per start; a brute force pays it per guess


class KeyStoreError(ConfigError):
    """The store cannot be read with the configured ``server.secret_key`` (or has none)."""

    def __init__(self, message: str) -> None:
        super().__init__("server.secret_key", message)


@dataclass(frozen=True)
class StoredKey:
    """A runtime key, decrypted. ``repr`` leaves the key out."""

    id: str
    api_key: str
    name: str | None
    created_at: float

    def __repr__(self) -> str:
        return f"StoredKey(id={self.id!r}, name={self.name!r})"


class KeyStore:
    """Runtime provider keys and the selected key of each provider.

    Args:
        path: the JSON file; its folder is made on the first write (``None``: memory only).
        secret: ``server.secret_key``, or ``None`` (then the store can list nothing stored
            and refuses to add keys).

    Raises:
        KeyStoreError: the file exists but ``secret`` is missing or is not the one it was
            written with, or the file is not a key store.
    """

    def __init__(self, path: Path | None, secret: str | None) -> None:
        self.path = path
        self._secret = secret
        self._keys: dict[str, list[StoredKey]] = {}
        self._selected: dict[str, str] = {}
        self._salt = secrets.token_bytes(16)
        self._fernet: Fernet | None = None
        if path is not None and path.exists():
            self._load(path)
        elif secret is not None:
            self._fernet = _fernet(secret, self._salt)

    @property
    def writable(self) -> bool:
        """Whether keys can be added (``server.secret_key`` is set)."""
        return self._secret is not None

    def keys(self, provider: str) -> list[StoredKey]:
        return list(self._keys.get(provider, []))

    def selected(self, provider: str) -> str | None:
        return self._selected.get(provider)

    def add(self, provider: str, api_key: str, name: str | None) -> StoredKey:
        """Store a new key (raises ``KeyStoreError`` without ``server.secret_key``)."""
        if not self.writable:
            raise KeyStoreError("is not set: runtime provider keys are stored encrypted with it "
                                "(set server.secret_key, e.g. to ${HUGIND_SECRET_KEY})")
        stored = StoredKey("key_" + secrets.token_hex(6), api_key, name, time.time())
        self._keys.setdefault(provider, []).append(stored)
        self._save()
        return stored

    def rename(self, provider: str, key_id: str, name: str | None) -> None:
        self._keys[provider] = [StoredKey(k.id, k.api_key, name, k.created_at)
                                if k.id == key_id else k for k in self._keys.get(provider, [])]
        self._save()

    def remove(self, provider: str, key_ids: set[str]) -> None:
        self._keys[provider] = [k for k in self._keys.get(provider, []) if k.id not in key_ids]
        if self._selected.get(provider) in key_ids:
            del self._selected[provider]
        self._save()

    def select(self, provider: str, key_id: str | None) -> None:
        """Remember ``key_id`` (any source, a YAML key's id too) as selected; ``None`` clears."""
        if key_id is None:
            self._selected.pop(provider, None)
        else:
            self._selected[provider] = key_id
        self._save()

    def _load(self, path: Path) -> None:
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
            self._salt = base64.b64decode(data["salt"])
            entries = data["providers"]
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise KeyStoreError(f"cannot read the key store {str(path)!r} "
                                f"({type(exc).__name__})") from None
        has_keys = any(p.get("keys") for p in entries.values())
        if self._secret is None:
            if has_keys:
                raise KeyStoreError(f"is not set, and {str(path)!r} holds runtime provider "
                                    "keys encrypted with it: set it, or remove the file")
        else:
            self._fernet = _fernet(self._secret, self._salt)
        for provider, entry in entries.items():
            if entry.get("selected"):
                self._selected[provider] = str(entry["selected"])
            self._keys[provider] = [self._decrypt(k) for k in entry.get("keys", [])]

    def _decrypt(self, entry: dict[str, Any]) -> StoredKey:
        assert self._fernet is not None  # _load checked the secret
        try:
            api_key = self._fernet.decrypt(entry["token"].encode()).decode()
        except (InvalidToken, KeyError, AttributeError):
            raise KeyStoreError(f"does not decrypt {str(self.path)!r}: it was written with "
                                "another server.secret_key (set that one, or remove the file "
                                "and add the keys again)") from None
        return StoredKey(str(entry["id"]), api_key, entry.get("name"),
                         float(entry.get("created_at", 0.0)))

    def _save(self) -> None:
        if self.path is None:
            return
        assert self._fernet is not None or not any(self._keys.values())
        providers: dict[str, Any] = {}
        for provider in sorted(set(self._keys) | set(self._selected)):
            keys = [{"id": k.id, "name": k.name, "created_at": k.created_at,
                     "token": self._fernet.encrypt(k.api_key.encode()).decode()}
                    for k in self._keys.get(provider, []) if self._fernet is not None]
            providers[provider] = {"selected": self._selected.get(provider), "keys": keys}
        data = {"version": _VERSION, "salt": base64.b64encode(self._salt).decode(),
                "providers": providers}
        _write_private(self.path, json.dumps(data, indent=1).encode())


def _fernet(secret: str, salt: bytes) -> Fernet:
    kdf = Scrypt(salt=salt, length=32, n=_SCRYPT_N, r=8, p=1)
    return Fernet(base64.urlsafe_b64encode(kdf.derive(secret.encode())))


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically (temp file + rename), readable by the owner only."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        tmp.replace(path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
