"""No open bind without keys: the check, and `hugind serve` refusing or (--insecure) starting."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
import yaml

from hugind.config import parse_config
from hugind.exposure import is_loopback, open_bind_error
from tests.servers import free_port


@pytest.mark.parametrize(("host", "loopback"), [
    ("127.0.0.1", True), ("127.3.2.1", True), ("::1", True), ("[::1]", True),
    ("localhost", True), ("LOCALHOST", True), ("0.0.0.0", False), ("::", False),
    ("192.168.1.5", False), ("", False), ("example.com", False)])
def test_is_loopback(host: str, loopback: bool) -> None:
    assert is_loopback(host) is loopback


def test_open_bind_needs_keys_or_insecure(tmp_path: Path) -> None:
    bare = parse_config({})
    message = open_bind_error("0.0.0.0", bare)
    assert message is not None and "\n" not in message
    assert "server.api_keys" in message and "server.api_key_files" in message
    assert "--insecure" in message and "${" in message
    assert open_bind_error("0.0.0.0", bare, insecure=True) is None
    assert open_bind_error("127.0.0.1", bare) is None
    assert open_bind_error("0.0.0.0", parse_config({"server": {"api_keys": ["k"]}})) is None
    keys = tmp_path / "keys"
    keys.write_text("file-key\n")
    with_file = parse_config({"server": {"api_key_files": [str(keys)]}})
    assert open_bind_error("0.0.0.0", with_file) is None


def _serve(tmp_path: Path, *extra: str) -> subprocess.Popen[str]:
    config = tmp_path / "open.yaml"
    config.write_text(yaml.safe_dump({"server": {"host": "127.0.0.1"}, "models": []}))
    return subprocess.Popen([sys.executable, "-m", "hugind", "serve", str(config), *extra],
                            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def test_serve_refuses_an_open_bind_without_keys(tmp_path: Path) -> None:
    proc = _serve(tmp_path, "--host", "0.0.0.0", "--port", str(free_port()))
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 2
    assert out == "" and len(err.strip().splitlines()) == 1
    assert err.startswith("hugind: refusing to serve on 0.0.0.0 without API keys")


def test_serve_binds_open_with_insecure(tmp_path: Path) -> None:
    port = free_port()
    proc = _serve(tmp_path, "--host", "0.0.0.0", "--port", str(port), "--insecure")
    try:
        deadline = time.monotonic() + 60
        while True:
            assert proc.poll() is None, proc.communicate()[1]
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "did not start"
            time.sleep(0.2)
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
