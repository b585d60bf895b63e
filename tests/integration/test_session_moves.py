"""Sessions that leave their server: export from one, import into an unrelated one, resume
exactly; damaged and foreign files are refused whole."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.integration.test_sessions import KEYS, QUESTIONS, _cfg, cached, chat, conversation
from tests.servers import HugindProcess

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
    try:
        for p in procs.values():
            p.start()
        yield procs
    finally:
        for p in procs.values():
            p.stop()


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
