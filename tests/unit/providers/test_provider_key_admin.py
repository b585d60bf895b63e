"""Runtime keys on a router: selected first, request keys first, reloads keep them, no leaks."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import httpx
import pytest
from tests.unit.providers.mock_upstream import (
    KEY_A,
    KEY_B,
    FakeClock,
    Upstream,
    err,
    ok,
    provider,
    providers,
    read,
)

from hugind.errors import ConflictError, NotFoundError, UpstreamError
from hugind.providers import ProviderRouter
from hugind.providers.activity import ActivityLog
from hugind.providers.keystore import KeyStore

SECRET = "server-secret-for-tests-01"
RUNTIME = "sk-runtime-RRRRRRRRRRRRRRRR-R009"
CLIENT_KEY = "sk-client-CCCCCCCCCCCCCCCC-Q777"
HEADER = "X-OpenAI-API-Key"
CHAT = b'{"model": "gpt-4o", "messages": []}'


def _router(upstream: Upstream, tmp_path: Path, *, keys: list[str] | None = None,
            secret: str | None = SECRET, log: ActivityLog | None = None,
            **extra: object) -> ProviderRouter:
    configs = providers(provider("openai", [KEY_A] if keys is None else keys,
                                 cooldown_s=60, **extra))
    return ProviderRouter(configs, transport=httpx.MockTransport(upstream), clock=FakeClock(),
                          sleep=_no_sleep, jitter=lambda: 0.5,
                          activity=log or ActivityLog(path=tmp_path / "activity.jsonl"),
                          keystore=KeyStore(tmp_path / "keys.json", secret))


async def _no_sleep(_: float) -> None:
    return None


def _chat(router: ProviderRouter, headers: list[tuple[str, str]] | None = None) -> int:
    return asyncio.run(_send(router, headers))


async def _send(router: ProviderRouter, headers: list[tuple[str, str]] | None) -> int:
    response = await router.forward("POST", "/v1/chat/completions", "",
                                    [("content-type", "application/json"), *(headers or [])],
                                    CHAT, "gpt-4o")
    await read(response)
    return response.status


def test_added_key_is_listed_never_shown_and_selected_first(tmp_path: Path) -> None:
    upstream = Upstream({KEY_A: [ok()], RUNTIME: [ok()]})
    router = _router(upstream, tmp_path)
    row = router.keys.add("openai", RUNTIME, "spare")
    assert RUNTIME not in repr(row)
    assert row["fingerprint"] == "..." + RUNTIME[-4:] and row["source"] == "runtime"
    rows = router.keys.list("openai")
    assert [(r["source"], r["selected"]) for r in rows] == [("yaml", False), ("runtime", False)]
    _chat(router)
    assert upstream.keys_used() == [KEY_A]
    router.keys.update("openai", row["id"], is_selected=True)
    _chat(router)
    assert upstream.keys_used()[-1] == RUNTIME
    yaml_id = rows[0]["id"]
    router.keys.update("openai", yaml_id, is_selected=True)  # selecting one deselects the other
    assert [r["selected"] for r in router.keys.list("openai")] == [True, False]
    actions = [e["action"] for e in router.activity(actions_only=True)]
    assert actions == ["ADD", "SELECT", "UNSELECT", "SELECT"]
    assert all(RUNTIME not in str(e) for e in router.activity())


def test_a_selected_key_that_fails_falls_back_to_the_others(tmp_path: Path) -> None:
    upstream = Upstream({KEY_A: [ok()], RUNTIME: [err(429)]})
    router = _router(upstream, tmp_path)
    row = router.keys.add("openai", RUNTIME, None)
    router.keys.update("openai", row["id"], is_selected=True)
    assert _chat(router) == 200
    assert upstream.keys_used() == [RUNTIME, KEY_A]
    assert router.keys.list("openai")[1]["state"] == "cooling_down"
    assert router.keys.list("openai")[1]["cooldown_until"] is not None


def test_yaml_keys_are_read_only(tmp_path: Path) -> None:
    router = _router(Upstream({}), tmp_path)
    yaml_id = router.keys.list("openai")[0]["id"]
    with pytest.raises(ConflictError):
        router.keys.delete("openai", yaml_id)
    with pytest.raises(ConflictError):
        router.keys.update("openai", yaml_id, label="x", rename=True)
    with pytest.raises(NotFoundError):
        router.keys.delete("openai", "key_nope")
    with pytest.raises(NotFoundError):
        router.keys.list("nope")


def test_delete_all_removes_runtime_keys_only(tmp_path: Path) -> None:
    router = _router(Upstream({}), tmp_path)
    router.keys.add("openai", RUNTIME, None)
    router.keys.add("openai", RUNTIME + "2", None)
    assert router.keys.delete_runtime("openai") == {"deleted": 2}
    assert [r["source"] for r in router.keys.list("openai")] == ["yaml"]
    assert KeyStore(tmp_path / "keys.json", SECRET).keys("openai") == []


def test_without_a_secret_adding_is_refused_naming_it(tmp_path: Path) -> None:
    router = _router(Upstream({}), tmp_path, secret=None)
    with pytest.raises(ConflictError) as exc:
        router.keys.add("openai", RUNTIME, None)
    assert exc.value.code == "secret_key_not_set"
    assert "server.secret_key" in exc.value.message


def test_a_new_router_on_the_same_store_keeps_runtime_keys(tmp_path: Path) -> None:
    upstream = Upstream({KEY_A: [ok()], RUNTIME: [ok()]})
    first = _router(upstream, tmp_path)
    row = first.keys.add("openai", RUNTIME, "kept")
    first.keys.update("openai", row["id"], is_selected=True)
    # What a restart (or a reload's new router) sees: the same files.
    second = _router(upstream, tmp_path)
    rows = second.keys.list("openai")
    assert [(r["id"], r["name"], r["selected"]) for r in rows][1] == (row["id"], "kept", True)
    _chat(second)
    assert upstream.keys_used() == [RUNTIME]
    assert [e["action"] for e in second.activity(actions_only=True)] == ["ADD", "SELECT"]


def test_a_runtime_key_is_redacted_from_relayed_errors(tmp_path: Path) -> None:
    upstream = Upstream({RUNTIME: [err(400, f"bad key {RUNTIME}")]})
    router = _router(upstream, tmp_path, keys=[])
    router.keys.add("openai", RUNTIME, None)

    async def send() -> bytes:
        response = await router.forward("POST", "/v1/chat/completions", "",
                                        [("content-type", "application/json")], CHAT, "gpt-4o")
        return await read(response)

    body = asyncio.run(send())
    assert RUNTIME.encode() not in body and b"[redacted]" in body


def test_request_key_is_tried_first_and_never_forwarded_or_logged(
    tmp_path: Path, caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    upstream = Upstream({CLIENT_KEY: [err(401, f"Incorrect API key provided: {CLIENT_KEY}")],
                         KEY_A: [ok()], KEY_B: [ok()]})
    router = _router(upstream, tmp_path, keys=[KEY_A, KEY_B], client_key_header=HEADER)
    assert _chat(router, [(HEADER.lower(), CLIENT_KEY)]) == 200
    assert upstream.keys_used() == [CLIENT_KEY, KEY_A]
    for sent in upstream.seen:
        assert HEADER.lower() not in {k.lower() for k in sent.headers}
    # Nothing cooled down for the request's key, and it names no key anywhere.
    assert [r["state"] for r in router.keys.list("openai")] == ["ready", "ready"]
    text = repr(router.activity()) + repr(router.key_states()) + caplog.text
    assert CLIENT_KEY not in text and CLIENT_KEY[-4:] not in text
    # Next request without the header: configured keys only.
    _chat(router)
    assert upstream.keys_used()[-1] == KEY_A


def test_request_key_serves_and_its_failure_is_redacted(tmp_path: Path) -> None:
    upstream = Upstream({CLIENT_KEY: [ok()], KEY_A: [err(500, f"{CLIENT_KEY} broke")]})
    router = _router(upstream, tmp_path, client_key_header=HEADER)
    assert _chat(router, [(HEADER, CLIENT_KEY)]) == 200
    assert upstream.keys_used() == [CLIENT_KEY]
    upstream.script[CLIENT_KEY] = [err(503, f"down for {CLIENT_KEY}")]
    with pytest.raises(UpstreamError) as exc:
        _chat(router, [(HEADER, CLIENT_KEY)])
    assert CLIENT_KEY not in exc.value.message
    assert "(request key)" in repr(router.activity())


def test_the_header_is_ignored_unless_configured(tmp_path: Path) -> None:
    upstream = Upstream({KEY_A: [ok()]})
    router = _router(upstream, tmp_path)
    _chat(router, [(HEADER, CLIENT_KEY)])
    assert upstream.keys_used() == [KEY_A]
