"""What ``batch_invariant: true`` buys and costs, measured over HTTP on Hugind itself.

Starts ``hugind serve`` with ``batch_invariant`` off, then on (``--repeats`` times, alternating,
since this machine's speed drifts), and for each server measures:

- exactness: ``--streams`` greedy completions (two with long prompts, whose prefill shares steps
  with the others' decoding) run alone, then all at once; counted are the streams whose text or
  token logprobs differ from their solo run;
- prefill: prompt tokens/s of ~510- and ~2000-token prompts (time to the one output token);
- decode: output tokens/s of one stream, and aggregate output tokens/s of ``--streams`` at once.

    python -m bench invariance --out bench/results/cpu-2core-invariance/invariance.json
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import statistics
import time
from pathlib import Path
from typing import Any

import httpx
import yaml

from bench.peers import REPO_ROOT, ManagedServer, PeerConfig, default_model_path
from bench.scenarios import make_text

__all__ = ["add_parser", "run_invariance"]

LONG = "Rivers carry water from the hills down to the sea, and towns grow on their banks. " * 12


def _config(model_path: str, args: argparse.Namespace, invariant: bool) -> dict[str, Any]:
    return {
        "server": {"host": "127.0.0.1"},
        "models": [{"id": "gemma", "path": model_path, "n_ctx": 4096, "parallel": args.streams,
                    "max_queue": 64, "batch_invariant": invariant}],
        "sessions": {"enabled": False},
    }


def _complete(client: httpx.Client, prompt: str, max_tokens: int) -> dict[str, Any]:
    r = client.post("/v1/completions", json={
        "model": "gemma", "prompt": prompt, "max_tokens": max_tokens, "temperature": 0,
        "ignore_eos": True, "cache_prompt": False, "logprobs": 1})
    r.raise_for_status()
    return dict(r.json())


def _exactness(client: httpx.Client, n: int) -> int:
    prompts = [(LONG if i % 4 == 2 else "") + f"Story {i}: once upon a time" for i in range(n)]

    def run(p: str) -> tuple[str, list[float]]:
        c = _complete(client, p, 24)["choices"][0]
        return c["text"], c["logprobs"]["token_logprobs"]

    solo = [run(p) for p in prompts]
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        together = list(pool.map(run, prompts))
    return sum(a != b for a, b in zip(solo, together, strict=True))


def _prefill_rate(client: httpx.Client, words: int, tag: str) -> float:
    t0 = time.perf_counter()
    usage = _complete(client, f"{tag} " + make_text(words, seed=tag), 1)["usage"]
    return float(usage["prompt_tokens"]) / (time.perf_counter() - t0)


def _decode_rate(client: httpx.Client, n: int, tag: str) -> float:
    t0 = time.perf_counter()
    with concurrent.futures.ThreadPoolExecutor(n) as pool:
        outs = list(pool.map(lambda i: _complete(client, f"{tag} {i}. Once upon a time", 64),
                             range(n)))
    return sum(o["usage"]["completion_tokens"] for o in outs) / (time.perf_counter() - t0)


def _measure(url: str, args: argparse.Namespace, rep: int) -> dict[str, Any]:
    with httpx.Client(base_url=url, timeout=args.request_timeout_s) as client:
        _complete(client, "Hello", 4)  # warm-up: compute buffers allocated
        return {
            "streams_differing": _exactness(client, args.streams),
            "prefill_512_tok_s": max(_prefill_rate(client, 500, f"p512-{rep}-{k}")
                                     for k in range(2)),
            "prefill_2000_tok_s": _prefill_rate(client, 1960, f"p2000-{rep}"),
            "decode_1_tok_s": _decode_rate(client, 1, f"d1-{rep}"),
            f"decode_{args.streams}_tok_s": _decode_rate(client, args.streams, f"dn-{rep}"),
        }


def run_invariance(args: argparse.Namespace) -> dict[str, Any]:
    work = REPO_ROOT / "bench" / "out" / "invariance-run"
    work.mkdir(parents=True, exist_ok=True)
    model_path = args.model_path or default_model_path()
    runs: list[dict[str, Any]] = []
    for rep in range(args.repeats):
        for invariant in (False, True):
            cfg_path = work / f"hugind-invariant-{invariant}.yaml"
            cfg_path.write_text(yaml.safe_dump(_config(model_path, args, invariant)))
            server = ManagedServer(PeerConfig("hugind", name=f"hugind-bi-{invariant}",
                                              hugind_config=str(cfg_path), log_dir=str(work)))
            with server:
                server.wait_ready(180)
                row = {"batch_invariant": invariant, "repeat": rep,
                       **_measure(server.url, args, rep)}
            runs.append(row)
            if not args.quiet:
                print("invariance:", {k: round(v, 1) if isinstance(v, float) else v
                                      for k, v in row.items()}, flush=True)
    keys = [k for k in runs[0] if k.endswith("_tok_s")]
    summary = {}
    for invariant in (False, True):
        rows = [r for r in runs if r["batch_invariant"] is invariant]
        summary[f"batch_invariant={str(invariant).lower()}"] = {
            "streams_differing_max": max(r["streams_differing"] for r in rows),
            **{k + "_median": round(statistics.median(r[k] for r in rows), 1) for k in keys},
        }
    report = {"streams": args.streams, "repeats": args.repeats, "runs": runs, "summary": summary}
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(report, indent=2))
    return report


def cmd_invariance(args: argparse.Namespace) -> int:
    report = run_invariance(args)
    for name, s in report["summary"].items():
        print(f"{name}: " + ", ".join(f"{k} {v}" for k, v in s.items()))
    print(f"-> {args.out}")
    return 0


def add_parser(sub: Any) -> None:
    p = sub.add_parser("invariance", help="batch_invariant off vs on: exactness and speed")
    p.add_argument("--streams", type=int, default=8, help="parallel slots and concurrent streams")
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--model-path", default="")
    p.add_argument("--request-timeout-s", type=float, default=300.0)
    p.add_argument("--out", default=str(REPO_ROOT / "bench" / "out" / "invariance.json"))
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(func=cmd_invariance)
