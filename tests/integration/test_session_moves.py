"""Sessions that leave their server: export from one, import into an unrelated one, resume
exactly; damaged and foreign files are refused whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_sessions import KEYS, QUESTIONS, _cfg, cached, chat, conversation
from tests.servers import HugindProcess, running

pytestmark = pytest.mark.model


def _auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


@pytest.fixture(scope="module")
def servers(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory,
            ) -> Iterator[dict[str, HugindProcess]]:
    """Two unrelated servers (own folders), and one whose context differs (n_ctx)."""
    foreign = _cfg(gemma_path, parallel=2, ram_mb=64)
    foreign["models"][0]["n_ctx"] = 2048
    procs = {name: HugindProcess(cfg, tmp_path_factory.mktemp(name), name=name)
             for name, cfg in [("a", _cfg(gemma_path, parallel=2, ram_mb=64)),
                               ("b", _cfg(gemma_path, parallel=2, ram_mb=64)),
                               ("foreign", foreign)]}
    with running(procs):
        yield procs


def _import(url: str, name: str, blob: bytes, key: str = KEYS[1]) -> httpx.Response:
    return httpx.put(f"{url}/v1/sessions/{name}", content=blob, headers=_auth(key), timeout=60)


def test_export_import_resumes_on_an_unrelated_server(servers: dict[str, HugindProcess],
                                                      ) -> None:
    a, b = servers["a"].url, servers["b"].url
    messages, _ = conversation(a, "erin", 2)  # still resident in KV on a
    assert httpx.get(f"{a}/v1/sessions/erin/export", headers=_auth(KEYS[1])).status_code == 404
    r = httpx.get(f"{a}/v1/sessions/erin/export", headers=_auth(KEYS[0]), timeout=60)
    assert r.status_code == 200, r.text
    assert r.headers["content-type"] == "application/octet-stream"
    blob = r.content
    r = _import(b, "moved", blob)  # another API key, another name: the importer's own
    assert r.status_code == 200, r.text
    assert r.json()["tokens"] > 0
    messages.append({"role": "user", "content": QUESTIONS[2]})
    resumed = chat(b, messages, key=KEYS[1], user="moved")
    assert cached(resumed) > 0
    fresh = chat(b, messages, cache=False)
    assert fresh["choices"][0]["message"] == resumed["choices"][0]["message"]


def test_damaged_and_foreign_files_are_400_and_leave_nothing(
        servers: dict[str, HugindProcess]) -> None:
    a, b = servers["a"].url, servers["b"].url
    conversation(a, "fay", 1)
    blob = httpx.get(f"{a}/v1/sessions/fay/export", headers=_auth(KEYS[0]), timeout=60).content
    middle = len(blob) // 2
    altered = blob[:middle] + bytes([blob[middle] ^ 0xFF]) + blob[middle + 1:]
    for bad, why in [(altered, "checksum"), (blob[:-100], "truncated"), (b"junk", "short")]:
        r = _import(b, "bad", bad)
        assert r.status_code == 400, r.text
        assert why in r.json()["error"]["message"]
    r = _import(servers["foreign"].url, "bad", blob)
    assert r.status_code == 400, r.text
    assert r.json()["error"]["code"] == "session_model_mismatch"
    for url in (b, servers["foreign"].url):
        assert httpx.get(f"{url}/v1/sessions/bad", headers=_auth(KEYS[1])).status_code == 404


def test_a_pinned_session_outlives_disk_pressure_and_pins_stay_in_budget(
        gemma_path: Path, tmp_path: Path) -> None:
    """One slot, no RAM tier and a 2 MiB disk budget: every turn of someone else pushes the
    least recently used file out, except the pinned one."""
    cfg = _cfg(gemma_path, parallel=1, ram_mb=0)
    cfg["sessions"]["disk_budget_mb"] = 2
    proc = HugindProcess(cfg, tmp_path, name="pins").start()
    try:
        url = proc.url
        messages, _ = conversation(url, "keeper", 1)
        assert httpx.post(f"{url}/v1/sessions/keeper/pin",
                          headers=_auth(KEYS[1])).status_code == 404  # another key's
        r = httpx.post(f"{url}/v1/sessions/keeper/pin", headers=_auth(KEYS[0]))
        assert r.status_code == 200, r.text
        assert r.json() == {"object": "session", "name": "keeper", "pinned": True}
        refused = []
        for i in range(6):
            conversation(url, f"other{i}", 1)
            r = httpx.post(f"{url}/v1/sessions/other{i}/pin", headers=_auth(KEYS[0]))
            assert r.status_code in (200, 409), r.text
            if r.status_code == 409:
                refused.append(r.json()["error"]["code"])
                httpx.post(f"{url}/v1/sessions/other{i}/unpin", headers=_auth(KEYS[0]))
        assert refused and set(refused) == {"pins_over_budget"}
        listed = httpx.get(f"{url}/v1/sessions", headers=_auth(KEYS[0])).json()["data"]
        names = {s["name"]: s for s in listed}
        assert names["keeper"]["pinned"] is True
        assert len(names) < 7  # the pressure was real: unpinned files went
        messages.append({"role": "user", "content": QUESTIONS[1]})
        resumed = chat(url, messages, user="keeper")
        assert cached(resumed) > 0
        r = httpx.post(f"{url}/v1/sessions/keeper/unpin", headers=_auth(KEYS[0]))
        assert r.status_code == 200 and r.json()["pinned"] is False
    finally:
        proc.stop()


def test_a_warmed_session_starts_its_first_turn_from_cache(
        servers: dict[str, HugindProcess]) -> None:
    a = servers["a"].url
    messages = [{"role": "system", "content": "You answer in one short sentence. " * 12},
                {"role": "user", "content": QUESTIONS[0]}]
    r = httpx.post(f"{a}/v1/sessions/gwen/warm", headers=_auth(KEYS[0]), timeout=120,
                   json={"model": "gemma", "messages": messages})
    assert r.status_code == 200, r.text
    warm = r.json()
    assert warm["object"] == "session" and warm["name"] == "gwen"
    assert warm["prompt_tokens"] > 32 and warm["cached_tokens"] == 0
    first = chat(a, messages, user="gwen")
    assert cached(first) > 0
    assert first["choices"][0]["message"] == chat(a, messages, cache=False)["choices"][0][
        "message"]
    other_key = chat(a, messages, key=KEYS[1], user="gwen")  # another key's namespace
    assert cached(other_key) == 0


def test_warm_takes_a_raw_prompt_and_refuses_bad_bodies(
        servers: dict[str, HugindProcess]) -> None:
    a = servers["a"].url
    prompt = "The river Thames flows through London towards the sea. " * 8
    r = httpx.post(f"{a}/v1/sessions/hal/warm", headers=_auth(KEYS[0]), timeout=120,
                   json={"model": "gemma", "prompt": prompt})
    assert r.status_code == 200, r.text
    r = httpx.post(f"{a}/v1/completions", headers=_auth(KEYS[0]), timeout=120, json={
        "model": "gemma", "prompt": prompt, "max_tokens": 4, "user": "hal"})
    assert r.json()["usage"]["prompt_tokens_details"]["cached_tokens"] > 0
    for body, param in [({"model": "gemma"}, "messages"),
                        ({"model": "gemma", "prompt": "x", "messages": [
                            {"role": "user", "content": "x"}]}, "messages"),
                        ({"model": "gemma", "prompt": "x " * 5000}, "prompt"),
                        ({"model": "nope", "prompt": "x"}, "model")]:
        r = httpx.post(f"{a}/v1/sessions/hal/warm", headers=_auth(KEYS[0]), json=body,
                       timeout=60)
        assert r.status_code in (400, 404), r.text
        assert r.json()["error"]["param"] == param, r.text
