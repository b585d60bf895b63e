"""Resident memory of a Hugind server as distinct users pile up.

Starts ``hugind serve`` with a generated config (one generation model, ``parallel`` slots,
a RAM session budget and a disk tier), sends one chat turn for each of ``users`` distinct
users (each with its own document, so no two share a prefix), and samples the server's
resident set size (VmRSS from /proc) after loading and every few users. The claim under test:
RSS after N users <= RSS when loaded + session RAM budget + a fixed overhead, however large N.

    python -m bench memory --users 100 --ram-budget-mb 64 --out bench/out/memory.json
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.peers import REPO_ROOT, ManagedServer, PeerConfig, default_model_path
from bench.scenarios import make_text

__all__ = ["add_parser", "run_memory", "vm_rss_bytes"]


def vm_rss_bytes(pid: int) -> int:
    """Resident set size of ``pid`` in bytes (Linux)."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for pid {pid}")


def _config(model_path: str, args: argparse.Namespace, sessions_dir: Path) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1"},
        "models": [{
            "id": "gemma", "path": model_path, "chat_template": "gemma", "n_ctx": args.ctx_size,
            "parallel": args.parallel, "max_queue": 256,
        }],
        "sessions": {"enabled": True, "dir": str(sessions_dir),
                     "ram_budget_mb": args.ram_budget_mb, "disk_budget_mb": args.disk_budget_mb},
    }


def run_memory(args: argparse.Namespace) -> dict[str, Any]:
    out_dir = Path(args.out).parent
    out_dir.mkdir(parents=True, exist_ok=True)
    work = REPO_ROOT / "bench" / "out" / "memory-run"  # config, log, session files
    work.mkdir(parents=True, exist_ok=True)
    cfg_path = work / "hugind-memory.yaml"
    model_path = args.model_path or default_model_path()
    cfg_path.write_text(yaml.safe_dump(_config(model_path, args, work / "sessions")))
    server = ManagedServer(PeerConfig("hugind", name="hugind-memory", hugind_config=str(cfg_path),
                                      log_dir=str(work)))
    samples: list[dict[str, Any]] = []
    with server:
        server.wait_ready(180)
        assert server.proc is not None
        pid = server.proc.pid
        with httpx.Client(base_url=server.url, timeout=args.request_timeout_s) as client:
            # one warm-up turn so the compute buffers are allocated before the baseline
            client.post("/v1/chat/completions", json={
                "model": "gemma", "max_tokens": 4, "temperature": 0,
                "messages": [{"role": "user", "content": "Hello"}]}).raise_for_status()
            loaded = vm_rss_bytes(pid)
            samples.append({"users": 0, "rss_bytes": loaded})
            t0 = time.monotonic()
            for u in range(1, args.users + 1):
                doc = make_text(args.doc_words, seed=f"memory-user-{u}")
                r = client.post("/v1/chat/completions", json={
                    "model": "gemma", "max_tokens": 8, "temperature": 0, "user": f"user-{u}",
                    "messages": [{"role": "user", "content": f"User {u}. {doc}\nSummarise."}]})
                r.raise_for_status()
                if u % args.sample_every == 0 or u == args.users:
                    stats = client.get("/v1/sessions/stats").json()["gemma"]
                    samples.append({"users": u, "rss_bytes": vm_rss_bytes(pid),
                                    "ram_bytes": stats["ram_bytes"],
                                    "disk_bytes": stats["disk_bytes"],
                                    "ram_sessions": stats["ram_sessions"],
                                    "disk_sessions": stats["disk_sessions"],
                                    "elapsed_s": round(time.monotonic() - t0, 1)})
                    if not args.quiet:
                        s = samples[-1]
                        print(f"memory: {u} users, RSS {s['rss_bytes'] / 2**20:.0f} MiB, "
                              f"RAM tier {s['ram_bytes'] / 2**20:.1f} MiB "
                              f"({s['ram_sessions']}), disk {s['disk_sessions']}", flush=True)
    budget = args.ram_budget_mb * 2**20
    peak = max(s["rss_bytes"] for s in samples)
    report = {
        "users": args.users, "parallel": args.parallel, "ctx_size": args.ctx_size,
        "ram_budget_bytes": budget, "overhead_allowance_bytes": args.overhead_mb * 2**20,
        "rss_loaded_bytes": loaded, "rss_peak_bytes": peak,
        "growth_bytes": peak - loaded,
        "bounded": peak <= loaded + budget + args.overhead_mb * 2**20,
        "samples": samples,
    }
    Path(args.out).write_text(json.dumps(report, indent=2))
    return report


def cmd_memory(args: argparse.Namespace) -> int:
    report = run_memory(args)
    mib = 2**20
    print(f"RSS loaded {report['rss_loaded_bytes'] / mib:.0f} MiB, peak after {report['users']} "
          f"users {report['rss_peak_bytes'] / mib:.0f} MiB (growth "
          f"{report['growth_bytes'] / mib:.0f} MiB; RAM budget "
          f"{report['ram_budget_bytes'] / mib:.0f} MiB + {args.overhead_mb} MiB allowance): "
          f"{'bounded' if report['bounded'] else 'NOT bounded'} -> {args.out}")
    return 0 if report["bounded"] else 1


def add_parser(sub: Any) -> None:
    p = sub.add_parser("memory", help="Hugind's resident memory as distinct users pile up")
    p.add_argument("--users", type=int, default=100)
    p.add_argument("--parallel", type=int, default=4)
    p.add_argument("--ctx-size", type=int, default=2048)
    p.add_argument("--doc-words", type=int, default=200)
    p.add_argument("--ram-budget-mb", type=int, default=64)
    p.add_argument("--disk-budget-mb", type=int, default=1024)
    p.add_argument("--overhead-mb", type=int, default=64,
                   help="fixed allowance on top of the RAM budget (allocator, Python)")
    p.add_argument("--sample-every", type=int, default=10)
    p.add_argument("--model-path", default="")
    p.add_argument("--request-timeout-s", type=float, default=120.0)
    p.add_argument("--out", default=str(REPO_ROOT / "bench" / "out" / "memory.json"))
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_memory)
