"""Runtime key management: list, add, rename, select and delete a provider's keys.

YAML keys are listed (``source: yaml``) and may be selected, never renamed or deleted. Added
keys (``source: runtime``) go to the :class:`KeyStore` first, then into the provider's pool, so
what is in force is always what a restart (or a SIGHUP's new router) would load.

Threading: one event loop, as the router.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hugind.errors import ConflictError, InvalidRequestError, NotFoundError
from hugind.providers.activity import ActivityLog
from hugind.providers.client import Provider
from hugind.providers.keys import KeyState, fingerprint
from hugind.providers.keystore import KeyStore, KeyStoreError, StoredKey

MAX_KEY_CHARS = 4096
MAX_NAME_CHARS = 200


def apply_stored(provider: Provider, store: KeyStore) -> None:
    """Put ``store``'s runtime keys and selection for ``provider`` into its pool."""
    for stored in store.keys(provider.name):
        provider.pool.add(runtime_state(stored))
    selected = store.selected(provider.name)
    provider.pool.selected = provider.pool.find(selected) if selected else None


def runtime_state(stored: StoredKey) -> KeyState:
    return KeyState(stored.api_key, id=stored.id, name=stored.name, source="runtime",
                    created_at=stored.created_at)


class KeyAdmin:
    """The admin API's view of the keys of a router's providers.

    Args:
        providers: the router's providers, by name.
        store: where runtime keys and selections are kept.
        activity: where ``ADD``, ``DELETE``, ``SELECT`` and ``UNSELECT`` are recorded.
        on_change: called after the set of keys changed (the router refreshes its redaction).
    """

    def __init__(self, providers: dict[str, Provider], store: KeyStore, activity: ActivityLog,
                 on_change: Callable[[], None]) -> None:
        self._providers = providers
        self._store = store
        self._activity = activity
        self._on_change = on_change

    def list(self, name: str) -> list[dict[str, Any]]:
        provider = self._provider(name)
        return [self._row(provider, s) for s in provider.pool.states if s.key is not None]

    def add(self, name: str, api_key: str, label: str | None) -> dict[str, Any]:
        provider = self._provider(name)
        api_key = api_key.strip()
        if not api_key or len(api_key) > MAX_KEY_CHARS or not api_key.isprintable():
            raise InvalidRequestError("api_key must be a non-empty printable string of at most "
                                      f"{MAX_KEY_CHARS} characters", param="api_key")
        if any(s.key == api_key for s in provider.pool.states):
            raise ConflictError(f"provider '{name}' already has this key", param="api_key",
                                code="key_exists")
        try:
            stored = self._store.add(name, api_key, _label(label))
        except KeyStoreError as exc:
            raise ConflictError(f"Cannot store provider keys: server.secret_key {exc.message}",
                                code="secret_key_not_set") from None
        state = runtime_state(stored)
        provider.pool.add(state)
        self._on_change()
        self._record("key_added", provider, state, f"Key {state.fingerprint} added to "
                     f"'{name}'" + (f" as '{state.name}'" if state.name else ""))
        return self._row(provider, state)

    def update(self, name: str, key_id: str, *, label: str | None = None,
               rename: bool = False, is_selected: bool | None = None) -> dict[str, Any]:
        provider = self._provider(name)
        state = self._key(provider, key_id)
        if rename:
            if state.source == "yaml":
                raise ConflictError("keys from the config file are read-only; rename it there",
                                    param="name", code="read_only_key")
            state.name = _label(label)
            self._store.rename(name, key_id, state.name)
        if is_selected is True and provider.pool.selected is not state:
            self._select(provider, state)
        elif is_selected is False and provider.pool.selected is state:
            self._unselect(provider, state)
        return self._row(provider, state)

    def delete(self, name: str, key_id: str) -> dict[str, Any]:
        provider = self._provider(name)
        state = self._key(provider, key_id)
        if state.source == "yaml":
            raise ConflictError("keys from the config file are read-only; remove it there and "
                                "reload", code="read_only_key")
        self._remove(provider, [state])
        return {"id": key_id, "deleted": True}

    def delete_runtime(self, name: str) -> dict[str, Any]:
        provider = self._provider(name)
        runtime = [s for s in provider.pool.states if s.source == "runtime"]
        self._remove(provider, runtime)
        return {"deleted": len(runtime)}

    def _select(self, provider: Provider, state: KeyState) -> None:
        self._store.select(provider.name, state.id)
        previous, provider.pool.selected = provider.pool.selected, state
        if previous is not None:
            self._record("key_unselected", provider, previous, f"Key {previous.fingerprint} of "
                         f"'{provider.name}' unselected ({state.fingerprint} selected)")
        self._record("key_selected", provider, state, f"Key {state.fingerprint} of "
                     f"'{provider.name}' selected: tried first")

    def _unselect(self, provider: Provider, state: KeyState) -> None:
        self._store.select(provider.name, None)
        provider.pool.selected = None
        self._record("key_unselected", provider, state, f"Key {state.fingerprint} of "
                     f"'{provider.name}' unselected")

    def _remove(self, provider: Provider, states: list[KeyState]) -> None:
        if not states:
            return
        self._store.remove(provider.name, {s.id for s in states})
        for state in states:
            provider.pool.remove(state)
            self._record("key_deleted", provider, state,
                         f"Key {state.fingerprint} deleted from '{provider.name}'")
        self._on_change()

    def _provider(self, name: str) -> Provider:
        provider = self._providers.get(name)
        if provider is None:
            raise NotFoundError(f"No provider named '{name[:100]}'", code="provider_not_found")
        return provider

    @staticmethod
    def _key(provider: Provider, key_id: str) -> KeyState:
        state = provider.pool.find(key_id)
        if state is None:
            raise NotFoundError(f"Provider '{provider.name}' has no key '{key_id[:100]}'",
                                code="key_not_found")
        return state

    def _record(self, event: Any, provider: Provider, state: KeyState, text: str) -> None:
        self._activity.record(event, provider.name, text, key=state.fingerprint)

    @staticmethod
    def _row(provider: Provider, state: KeyState) -> dict[str, Any]:
        ready = provider.pool.is_ready(state)
        return {"id": state.id, "name": state.name, "fingerprint": fingerprint(state.key),
                "selected": provider.pool.selected is state,
                "state": "ready" if ready else "cooling_down",
                "cooldown_until": provider.pool.cooldown_until_wall(state),
                "created_at": state.created_at, "source": state.source}


def _label(label: str | None) -> str | None:
    if label is None:
        return None
    label = " ".join(label.split())
    if len(label) > MAX_NAME_CHARS:
        raise InvalidRequestError(f"name must be at most {MAX_NAME_CHARS} characters",
                                  param="name")
    return label or None
