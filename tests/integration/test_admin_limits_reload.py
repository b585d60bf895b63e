"""On the real Gemma through `hugind serve`: admin keys and the admin API, per-key rate limits,
and SIGHUP rotating keys under a running stream (and refusing a broken config)."""

from __future__ import annotations

import concurrent.futures
import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from tests.conftest import model_config
from tests.servers import HugindProcess

pytestmark = pytest.mark.model

CLIENT, LIMITED, WAITING = "it-client-0001", "it-limited-0002", "it-waiting-0003"
ADMIN = "it-admin-0004"
OLD, NEW = "it-old-key-0005", "it-new-key-0006"
PROMPT = {"model": "gemma", "prompt": "The river", "max_tokens": 8, "temperature": 0}


def _auth(key: str | None) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"} if key else {}


def _config(gemma_path: Path, server: dict[str, Any]) -> dict[str, Any]:
    cfg = model_config(gemma_path)
    cfg["models"] = cfg["models"][:1]
    cfg["server"].update(server)
    return cfg


@pytest.fixture(scope="module")
def admin_server(gemma_path: Path,
                 tmp_path_factory: pytest.TempPathFactory) -> Iterator[HugindProcess]:
    cfg = _config(gemma_path, {
        "api_keys": [CLIENT,
                     {"key": LIMITED, "rate_limits": {"requests_per_minute": 2}},
                     {"key": WAITING, "rate_limits": {"max_concurrent": 1, "max_wait_s": 60}}],
        "admin_keys": [ADMIN]})
    proc = HugindProcess(cfg, tmp_path_factory.mktemp("hugind-admin"), name="hugind-admin")
    proc.start()
    yield proc
    proc.stop()


def test_admin_endpoints_refuse_client_keys_and_no_key(admin_server: HugindProcess) -> None:
    for method, path in [("GET", "/admin/models"), ("GET", "/admin/system"),
                         ("POST", "/admin/models/gemma/unload"), ("GET", "/v1/sessions/stats")]:
        assert httpx.request(method, admin_server.url + path).status_code == 401, path
        r = httpx.request(method, admin_server.url + path, headers=_auth(CLIENT))
        assert r.status_code == 403, path
        assert r.json()["error"]["type"] == "permission_error" and CLIENT not in r.text
    r = httpx.get(admin_server.url + "/v1/models", headers=_auth(ADMIN))
    assert r.status_code == 401  # an admin key is no client key


def test_admin_unload_frees_the_model_and_load_brings_it_back(
        admin_server: HugindProcess) -> None:
    url, admin = admin_server.url, _auth(ADMIN)
    rows = httpx.get(url + "/admin/models", headers=admin).json()["data"]
    gemma = next(r for r in rows if r["id"] == "gemma")
    assert gemma["state"] == "ready" and gemma["size_bytes"] > 100_000_000
    assert gemma["loaded_since"] is not None and gemma["load_seconds"] > 0
    before = httpx.get(url + "/admin/system", headers=admin).json()
    assert before["disk"]["models"]["disk_free_bytes"] > 0 and "gpus" in before
    r = httpx.post(url + "/admin/models/gemma/unload", headers=admin, timeout=60)
    assert r.status_code == 200 and r.json()["state"] == "unloaded"
    after = httpx.get(url + "/admin/system", headers=admin).json()
    freed = before["memory"]["process_rss_bytes"] - after["memory"]["process_rss_bytes"]
    assert freed > 100 * 1024 ** 2, (before["memory"], after["memory"])
    r = httpx.post(url + "/admin/models/gemma/load", headers=admin, timeout=120)
    assert r.status_code == 200 and r.json()["state"] == "ready"
    r = httpx.post(url + "/v1/completions", json=PROMPT, headers=_auth(CLIENT), timeout=60)
    assert r.status_code == 200
    assert httpx.post(url + "/admin/models/nope/load", headers=admin).status_code == 404


def test_a_keys_request_limit_answers_429_with_openai_headers(
        admin_server: HugindProcess) -> None:
    url = admin_server.url
    answers = [httpx.post(url + "/v1/completions", json=PROMPT, headers=_auth(LIMITED),
                          timeout=60) for _ in range(3)]
    assert [r.status_code for r in answers] == [200, 200, 429]
    assert answers[0].headers["x-ratelimit-limit-requests"] == "2"
    assert answers[0].headers["x-ratelimit-remaining-requests"] == "1"
    over = answers[2]
    assert over.json()["error"]["code"] == "rate_limit_exceeded"
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["x-ratelimit-remaining-requests"] == "0"
    assert over.headers["x-ratelimit-reset-requests"].endswith("s")
    # Other keys are not limited by it.
    r = httpx.post(url + "/v1/completions", json=PROMPT, headers=_auth(CLIENT), timeout=60)
    assert r.status_code == 200 and "x-ratelimit-limit-requests" not in r.headers


def _stream(url: str, key: str, max_tokens: int) -> tuple[int, float, float]:
    start = time.monotonic()
    body = {**PROMPT, "max_tokens": max_tokens, "stream": True, "ignore_eos": True}
    with httpx.stream("POST", url + "/v1/completions", json=body, headers=_auth(key),
                      timeout=120) as r:
        first = None
        for _ in r.iter_bytes():
            first = first or time.monotonic()
        return r.status_code, (first or time.monotonic()) - start, time.monotonic() - start


def test_max_concurrent_with_max_wait_queues_a_keys_second_stream(
        admin_server: HugindProcess) -> None:
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        one = pool.submit(_stream, admin_server.url, WAITING, 48)
        time.sleep(0.3)
        two = pool.submit(_stream, admin_server.url, WAITING, 8)
        (s1, _, end1), (s2, first2, _) = one.result(), two.result()
    assert s1 == 200 and s2 == 200
    # The second stream's first byte waited for the first stream's end (0.3 s later start).
    assert first2 >= end1 - 0.3 - 0.2, (first2, end1)


@pytest.fixture
def reload_server(gemma_path: Path, tmp_path: Path) -> Iterator[HugindProcess]:
    proc = HugindProcess(_config(gemma_path, {"api_keys": [OLD]}), tmp_path, name="reload")
    proc.start()
    yield proc
    proc.stop()


def _sighup(proc: HugindProcess, cfg: dict[str, Any] | str) -> None:
    path = proc.workdir / f"{proc.name}.yaml"
    path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
    assert proc.proc is not None
    proc.proc.send_signal(signal.SIGHUP)


def _wait_log(proc: HugindProcess, text: str, timeout_s: float = 20) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in proc.logs():
        assert time.monotonic() < deadline, f"no {text!r} in the log:\n{proc.logs()[-2000:]}"
        time.sleep(0.05)


def test_sighup_rotates_a_key_without_dropping_a_running_stream(
        reload_server: HugindProcess, gemma_path: Path) -> None:
    url = reload_server.url
    body = {**PROMPT, "max_tokens": 96, "stream": True, "ignore_eos": True}
    events: list[dict[str, Any]] = []
    with httpx.stream("POST", url + "/v1/completions", json=body, headers=_auth(OLD),
                      timeout=120) as r:
        assert r.status_code == 200
        lines = r.iter_lines()
        for line in lines:
            if line.startswith("data: {"):
                events.append(json.loads(line[6:]))
                break
        _sighup(reload_server, _config(gemma_path, {"api_keys": [NEW]}))
        _wait_log(reload_server, "config reloaded")
        tail = [line for line in lines if line.startswith("data: ")]
    assert tail[-1] == "data: [DONE]"
    events += [json.loads(line[6:]) for line in tail[:-1]]
    assert events[-1]["choices"][0]["finish_reason"] == "length"
    assert sum(1 for e in events if e["choices"][0]["text"]) >= 90  # every token arrived
    assert httpx.post(url + "/v1/completions", json=PROMPT, headers=_auth(OLD)).status_code \
        == 401
    assert httpx.post(url + "/v1/completions", json=PROMPT, headers=_auth(NEW),
                      timeout=60).status_code == 200


def test_sighup_with_a_broken_config_keeps_the_running_one(
        reload_server: HugindProcess, gemma_path: Path) -> None:
    broken = _config(gemma_path, {"api_keys": [NEW]})
    broken["models"][0]["n_ctx"] = 16
    _sighup(reload_server, broken)
    _wait_log(reload_server, "config error")
    line = next(x for x in reload_server.logs().splitlines() if "config error" in x)
    assert "models[0].n_ctx" in line and "reload refused" in line and NEW not in line
    assert reload_server.proc is not None and reload_server.proc.poll() is None
    url = reload_server.url
    assert httpx.post(url + "/v1/completions", json=PROMPT, headers=_auth(OLD),
                      timeout=60).status_code == 200
    assert httpx.post(url + "/v1/completions", json=PROMPT, headers=_auth(NEW)).status_code \
        == 401
