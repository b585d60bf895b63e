"""Nothing lost, nobody stalled, on the real model: conversations survive kill -9, a huge
grammar holds no other request, a client that leaves a non-streaming request frees its
sequence, and a session directory that fails and comes back costs nothing but a counter."""

from __future__ import annotations

import concurrent.futures
import shutil
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.integration.test_sessions import (
    ADMIN_KEY,
    KEYS,
    QUESTIONS,
    _cfg,
    cached,
    chat,
    conversation,
)
from tests.servers import HugindProcess

pytestmark = pytest.mark.model

AUTH = {"Authorization": f"Bearer {KEYS[0]}"}


def stats(url: str) -> dict[str, Any]:
    return httpx.get(url + "/v1/sessions/stats",
                     headers={"Authorization": f"Bearer {ADMIN_KEY}"}).json()["gemma"]


def wait_for(cond: Any, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


@pytest.fixture(scope="module")
def server(gemma_path: Path, tmp_path_factory: pytest.TempPathFactory,
           ) -> Iterator[HugindProcess]:
    cfg = _cfg(gemma_path, parallel=4, ram_mb=64)
    cfg["sessions"]["flush_s"] = 1.0
    proc = HugindProcess(cfg, tmp_path_factory.mktemp("reliable"), name="reliable").start()
    yield proc
    proc.stop()


def test_conversations_survive_kill_9(server: HugindProcess) -> None:
    """Two turns each for three users, SIGKILL after the flush interval, restart: every
    third turn resumes from disk and equals a fresh prefill."""
    convs = {u: conversation(server.url, u, 2)[0] for u in ("kim", "lee", "max")}
    wait_for(lambda: stats(server.url)["pending_writes"] == 0, 10, "write-behind")
    time.sleep(1.2)  # past flush_s even without the check above
    assert server.proc is not None
    server.proc.kill()
    server.proc.wait(10)
    server.start()
    for user, messages in convs.items():
        messages = [*messages, {"role": "user", "content": QUESTIONS[2]}]
        resumed = chat(server.url, messages, user=user)
        assert cached(resumed) > 0, user
        fresh = chat(server.url, messages, cache=False)
        assert fresh["choices"][0]["message"] == resumed["choices"][0]["message"], user
    assert stats(server.url)["restored_disk"] == 3


def test_a_huge_enum_schema_holds_no_other_request(server: HugindProcess) -> None:
    schema = {"type": "object", "properties": {"city": {
        "type": "string", "enum": [f"city-{i:05d}" for i in range(20_000)]}},
        "required": ["city"], "additionalProperties": False}
    body = {"model": "gemma", "max_tokens": 8, "temperature": 0,
            "messages": [{"role": "user", "content": "Pick a city."}],
            "response_format": {"type": "json_schema",
                                "json_schema": {"name": "c", "schema": schema, "strict": True}}}
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        big = pool.submit(httpx.post, server.url + "/v1/chat/completions", json=body,
                          headers=AUTH, timeout=300)
        time.sleep(1.0)  # the schema is compiling or its first token is being drawn
        start = time.monotonic()
        plain = chat(server.url, [{"role": "user", "content": "Say hi."}], max_tokens=4)
        took = time.monotonic() - start
        assert plain["choices"][0]["finish_reason"] in ("stop", "length")
        assert took < 2.0, f"a 4-token chat beside the enum request took {took:.1f} s"
        r = big.result(300)
    assert r.status_code == 200, r.text
    content = r.json()["choices"][0]["message"]["content"]
    assert content.replace(" ", "").startswith('{"city":"city-'), content  # 8 tokens of it


def test_a_client_leaving_a_non_streaming_request_frees_its_sequence(
        server: HugindProcess) -> None:
    before = stats(server.url)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(server.url + "/v1/completions", headers=AUTH, timeout=1.5,
                   json={"model": "gemma", "prompt": "Count: 1, 2,", "max_tokens": 500,
                         "ignore_eos": True})
    wait_for(lambda: stats(server.url)["active_sequences"] == 0, 10, "the sequence to free")
    after = stats(server.url)
    assert after["cancelled"] > before["cancelled"]
    assert after["generated_tokens"] - before["generated_tokens"] < 200


def test_a_failing_session_directory_keeps_serving(server: HugindProcess) -> None:
    folder = server.workdir / "sessions" / "gemma"
    saved = server.workdir / "sessions-saved"
    shutil.move(folder, saved)
    folder.write_text("the disk tier is gone")
    try:
        failures = stats(server.url)["disk_write_failures"]
        _, replies = conversation(server.url, "nia", 2)
        assert all(r["choices"][0]["message"]["content"] for r in replies)
        assert cached(replies[1]) > 0  # the conversation itself is intact (KV)
        wait_for(lambda: stats(server.url)["disk_write_failures"] > failures, 10,
                 "a counted write failure")
    finally:
        folder.unlink()
        shutil.move(saved, folder)
    written = stats(server.url)["snapshots_written"]
    wait_for(lambda: stats(server.url)["snapshots_written"] > written, 20, "writes to resume")
    assert stats(server.url)["pending_writes"] == 0
    assert httpx.get(server.url + "/health").status_code == 200
