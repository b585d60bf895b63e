"""The Hugging Face download path for real: ``modelstore.resolve`` against a local fake Hub.

A ``ThreadingHTTPServer`` on 127.0.0.1 speaks the part of the Hub protocol that
``huggingface_hub.hf_hub_download`` uses for a plain (non-LFS, non-xet) file:

* ``HEAD {endpoint}/{repo}/resolve/{revision}/{file}`` answers 200 with ``X-Repo-Commit``,
  ``ETag`` (the git blob sha1, as the Hub sends for non-LFS files) and ``Content-Length``;
  no ``X-Xet-Hash`` header, so the client never switches to the xet protocol;
* ``GET`` on the same URL streams the bytes and honours ``Range: bytes=N-`` (206), which the
  client sends when it resumes an interrupted download;
* a missing file is a 404 with ``X-Error-Code: EntryNotFound`` (what the Hub sends), or a bare
  404 (what a plain mirror might send).

Each download runs ``resolve`` in a fresh ``python`` subprocess with ``HF_ENDPOINT`` pointing at
the fake Hub, exactly as a user's environment would (huggingface_hub reads it at import time).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

REPO = "acme/tiny"
FILE = "tiny.gguf"
COMMIT = "0123456789abcdef0123456789abcdef01234567"
# A few KB of binary, not valid UTF-8, with a GGUF magic so it at least looks the part.
PAYLOAD = b"GGUF" + bytes(range(256)) * 24 + b"\x00tail"
SUBPROCESS_TIMEOUT_S = 60.0

RESOLVE_SCRIPT = """
import json, sys
from pathlib import Path

from hugind.config import parse_config
from hugind.modelstore import ModelSourceError, resolve

repo, file, models_dir = sys.argv[1:4]
model = parse_config({"models": [{"id": "x", "hf": {"repo": repo, "file": file}}]}).models[0]
try:
    path = resolve(model, Path(models_dir))
except ModelSourceError as exc:
    print(json.dumps({"error": str(exc)}))
else:
    print(json.dumps({"path": str(path)}))
"""


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\x00" % len(data) + data).hexdigest()


@dataclass
class FakeHub:
    """State shared with the request handler: the files it serves and the requests it saw."""

    files: dict[str, bytes]  # "owner/name/filename" -> bytes
    bare_404: bool = False  # answer 404s without the Hub's X-Error-Code header
    drop_gets: int = 0  # this many GETs send part of the body, then close the connection
    drop_keep: float = 0.5  # the part of the body such a GET sends
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    url: str = ""

    def seen(self, method: str) -> list[dict[str, Any]]:
        with self.lock:
            return [r for r in self.requests if r["method"] == method]


class HubHandler(BaseHTTPRequestHandler):
    server: HubServer

    def log_message(self, format: str, *args: Any) -> None:  # quiet
        pass

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _serve(self, *, head: bool) -> None:
        hub = self.server.hub
        with hub.lock:
            hub.requests.append({"method": self.command, "path": self.path,
                                 "headers": {k.lower(): v for k, v in self.headers.items()}})
            drop = not head and hub.drop_gets > 0
            if drop:
                hub.drop_gets -= 1
        match = re.fullmatch(r"/([^/]+/[^/]+)/resolve/([^/]+)/(.+)", self.path.split("?")[0])
        data = hub.files.get(f"{match[1]}/{match[3]}") if match else None
        if data is None:
            self._not_found(known_repo=bool(match) and any(
                k.startswith(f"{match[1]}/") for k in hub.files))
            return
        start = 0
        range_header = self.headers.get("Range")
        if not head and range_header:
            start = int(re.fullmatch(r"bytes=(\d+)-", range_header.strip())[1])  # type: ignore[index]
        body = data[start:]
        self.send_response(206 if start else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(body)))
        if start:
            self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("ETag", f'"{git_blob_sha1(data)}"')
        self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        if head:
            return
        if drop:
            self.wfile.write(body[: int(len(body) * hub.drop_keep)])
            self.wfile.flush()
            self.close_connection = True
            return
        self.wfile.write(body)

    def _not_found(self, *, known_repo: bool) -> None:
        error = "Entry not found" if known_repo else "Repository not found"
        body = json.dumps({"error": error}).encode()
        self.send_response(404)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if not self.server.hub.bare_404:
            self.send_header("X-Error-Code", "EntryNotFound" if known_repo else "RepoNotFound")
            self.send_header("X-Error-Message", error)
            if known_repo:
                self.send_header("X-Repo-Commit", COMMIT)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)


class HubServer(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, hub: FakeHub) -> None:
        super().__init__(("127.0.0.1", 0), HubHandler)
        self.hub = hub


@pytest.fixture
def hub() -> Iterator[FakeHub]:
    state = FakeHub(files={f"{REPO}/{FILE}": PAYLOAD})
    server = HubServer(state)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                              daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(10)


@dataclass
class Run:
    returncode: int
    result: dict[str, str]
    stderr: str


def child_env(hub: FakeHub, tmp_path: Path) -> dict[str, str]:
    """The user's environment with HF_ENDPOINT set, and nothing that could reach elsewhere."""
    drop = ("HF_", "HUGGINGFACE_", "TQDM_")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(drop) and "proxy" not in k.lower()}
    env.update({
        "HF_ENDPOINT": hub.url,
        "HF_HOME": str(tmp_path / "hf-home"),
        "HF_HUB_DISABLE_XET": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
        "HF_HUB_ETAG_TIMEOUT": "10",
        "HF_HUB_DOWNLOAD_TIMEOUT": "10",
        "NO_PROXY": "127.0.0.1,localhost",
        "PYTHONIOENCODING": "utf-8",
    })
    return env


def run_resolve(hub: FakeHub, tmp_path: Path, models_dir: Path, file: str = FILE, *,
                tty: bool = False) -> Run:
    """``resolve`` in a subprocess; with ``tty`` its stderr is a pseudo-terminal (80x24)."""
    cmd = [sys.executable, "-c", RESOLVE_SCRIPT, REPO, file, str(models_dir)]
    env = child_env(hub, tmp_path)
    if not tty:
        proc = subprocess.run(cmd, env=env, cwd=tmp_path, capture_output=True,
                              timeout=SUBPROCESS_TIMEOUT_S, check=False)
        stdout, stderr = proc.stdout, proc.stderr
        returncode = proc.returncode
    else:
        master, slave = pty.openpty()
        fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 80, 0, 0))
        chunks: list[bytes] = []

        def drain() -> None:
            while True:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO once the child has exited and the slave is closed
                    return
                if not chunk:
                    return
                chunks.append(chunk)

        reader = threading.Thread(target=drain, daemon=True)
        reader.start()
        try:
            child = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdin=subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=slave)
        finally:
            os.close(slave)
        try:
            stdout, _ = child.communicate(timeout=SUBPROCESS_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            child.kill()
            child.communicate()
            raise
        finally:
            reader.join(10)
            os.close(master)
        stderr = b"".join(chunks)
        returncode = child.returncode
    text = stderr.decode("utf-8", "replace")
    assert returncode == 0, f"resolve subprocess failed ({returncode}):\n{text[-4000:]}"
    lines = stdout.decode().strip().splitlines()
    assert lines, f"no result on stdout; stderr:\n{text[-4000:]}"
    return Run(returncode, json.loads(lines[-1]), text)


def test_download_lands_in_store_once_with_progress_bar(hub: FakeHub, tmp_path: Path) -> None:
    models_dir = tmp_path / "models"
    target = models_dir / "acme--tiny" / FILE

    first = run_resolve(hub, tmp_path, models_dir, tty=True)
    assert first.result == {"path": str(target)}
    assert target.read_bytes() == PAYLOAD
    # One metadata HEAD, one GET, both on the resolve URL: no /api calls, nothing xet.
    resolve_path = f"/{REPO}/resolve/main/{FILE}"
    assert [(r["method"], r["path"]) for r in hub.requests] == [
        ("HEAD", resolve_path), ("GET", resolve_path)]
    # The user sees a tqdm bar for the file on their terminal.
    bar = first.stderr
    assert FILE in bar, bar
    assert "100%" in bar, bar
    assert f"{len(PAYLOAD) / 1000:.2f}k/{len(PAYLOAD) / 1000:.2f}k" in bar, bar

    mtime = target.stat().st_mtime_ns
    second = run_resolve(hub, tmp_path, models_dir)
    assert second.result == {"path": str(target)}
    assert len(hub.seen("GET")) == 1, "second resolve downloaded the file again"
    assert len(hub.seen("HEAD")) == 2  # it only re-checked the ETag
    assert target.stat().st_mtime_ns == mtime
    assert target.read_bytes() == PAYLOAD
    assert "100%" not in second.stderr


def test_interrupted_download_is_retried(hub: FakeHub, tmp_path: Path) -> None:
    hub.drop_gets = 1  # the first GET breaks off half-way through the body
    models_dir = tmp_path / "models"
    run = run_resolve(hub, tmp_path, models_dir)
    target = models_dir / "acme--tiny" / FILE
    assert run.result == {"path": str(target)}
    assert target.read_bytes() == PAYLOAD
    gets = hub.seen("GET")
    assert len(gets) == 2
    assert "range" not in gets[0]["headers"]
    # huggingface_hub resumes from what it has written, in 10 MiB chunks: for a file this small
    # nothing was written yet, so the retry fetches it whole; a Range would be a written prefix.
    resumed_at = gets[1]["headers"].get("range", "bytes=0-")
    assert re.fullmatch(r"bytes=\d+-", resumed_at)
    assert int(resumed_at[6:-1]) <= len(PAYLOAD) // 2
    assert not list((models_dir / "acme--tiny").glob("**/*.incomplete"))


@pytest.mark.parametrize("bare_404", [False, True], ids=["hub-404", "bare-404"])
def test_missing_file_is_model_source_error(hub: FakeHub, tmp_path: Path,
                                            bare_404: bool) -> None:
    hub.bare_404 = bare_404
    models_dir = tmp_path / "models"
    run = run_resolve(hub, tmp_path, models_dir, file="missing.gguf")
    message = run.result.get("error", "")
    assert f"{REPO}/missing.gguf" in message, run.result
    assert "Traceback" not in message and "Traceback" not in run.stderr
    assert not hub.seen("GET")
    assert not (models_dir / "acme--tiny" / "missing.gguf").exists()


def test_connection_lost_for_good_is_model_source_error(hub: FakeHub, tmp_path: Path) -> None:
    # Every GET sends its headers, then hangs up: the client retries a few times, then gives up.
    hub.drop_gets, hub.drop_keep = 100, 0.0
    models_dir = tmp_path / "models"
    run = run_resolve(hub, tmp_path, models_dir)
    message = run.result.get("error", "")
    assert f"{REPO}/{FILE}" in message, run.result
    assert "Traceback" not in run.stderr
    assert len(hub.seen("GET")) > 1
    assert not (models_dir / "acme--tiny" / FILE).exists()
    assert not list((models_dir / "acme--tiny").glob("**/*.incomplete"))


def run_pull(hub: FakeHub, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``hugind pull`` on a config naming the fake Hub's file, stderr not a terminal."""
    cfg = tmp_path / "pull.yaml"
    cfg.write_text(json.dumps({"models": [
        {"id": "tiny", "hf": {"repo": REPO, "file": FILE}},
        {"id": "local", "path": str(tmp_path / "local.gguf")}]}))
    return subprocess.run([sys.executable, "-m", "hugind", "pull", str(cfg)],
                          env=child_env(hub, tmp_path), cwd=tmp_path, capture_output=True,
                          text=True, timeout=SUBPROCESS_TIMEOUT_S, check=False)


def test_pull_downloads_ahead_with_progress_lines_and_resumes(hub: FakeHub,
                                                               tmp_path: Path) -> None:
    hub.drop_gets = 1  # the first attempt breaks off: the download is retried and completes
    first = run_pull(hub, tmp_path)
    assert first.returncode == 0, first.stderr
    target = tmp_path / "models" / "acme--tiny" / FILE
    assert target.read_bytes() == PAYLOAD
    assert f"tiny: {target}" in first.stdout
    assert "local: path" in first.stdout and "nothing to download" in first.stdout
    # Not a terminal: progress arrives as log lines, not a bar redrawn with \r.
    assert "\r" not in first.stderr
    assert re.search(rf"downloading {re.escape(FILE)}: 100%", first.stderr), first.stderr
    assert len(hub.seen("GET")) == 2
    second = run_pull(hub, tmp_path)
    assert second.returncode == 0, second.stderr
    assert len(hub.seen("GET")) == 2, "a second pull downloaded the file again"
    assert "100%" not in second.stderr


def test_pull_of_a_missing_file_fails_with_one_line(hub: FakeHub, tmp_path: Path) -> None:
    hub.files.clear()
    run = run_pull(hub, tmp_path)
    assert run.returncode == 1
    assert f"hugind: tiny: could not download hf {REPO}/{FILE}" in run.stderr
    assert "Traceback" not in run.stderr
