"""Where a step of Hugind's loop goes: an in-process profile at 1, 4 and 8 streams.

The real engine (``LocalEngine``, the model of a config file, sessions off) decodes N streams
of ``--max-tokens`` tokens at once, while the scheduler's step, ``llama_decode`` and sampling
are timed on the worker thread. Per step at each level:

- ``decode_ms``: inside ``llama_decode`` (the C++ compute; the GIL released);
- ``sample_ms``: drawing tokens on the worker (inline draws and the wait for the sampling
  pool), grammar draws beside the step not counted;
- ``other_ms``: the rest of the step, the Python the loop costs (scheduling, detokenizing,
  stop matching, publishing events to the event loop, bookkeeping);
- ``between_ms``: the worker's time between two steps (its inbox, waits).

Only steps that decode exactly N rows count (no prefill chunk, no stream starting or ending)::

    .venv/bin/python -m bench.step_profile --levels 1 4 8 \\
        --json bench/results/cpu-2core-step-profile/profile.json
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from hugind.config import parse_config
from hugind.engine.local import LocalEngine
from hugind.engine.scheduler import Scheduler
from hugind.engine.types import GenerationRequest, SamplingParams
from hugind.llama.context import GenerationContext
from hugind.llama.sampler import Sampler

__all__ = ["StepClock", "main", "profile"]


class StepClock:
    """Timers wrapped around the scheduler's step, ``llama_decode`` and the worker's draws.
    ``steps`` holds one (rows decoded, step, decode, sample, gap since the last step) per
    step, in nanoseconds."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, int, int, int, int]] = []
        self._worker: threading.Thread | None = None
        self._decode = self._sample = self._rows = 0
        self._last_end: int | None = None
        self._saved: list[tuple[type, str, Any]] = []

    def install(self) -> None:
        clock = self

        def timed_step(inner: Callable[..., None]) -> Callable[..., None]:
            def step(sched: Scheduler) -> None:
                clock._worker = threading.current_thread()
                clock._decode = clock._sample = clock._rows = 0
                t0 = time.perf_counter_ns()
                inner(sched)
                t1 = time.perf_counter_ns()
                gap = t0 - clock._last_end if clock._last_end is not None else 0
                clock._last_end = t1
                clock.steps.append((clock._rows, t1 - t0, clock._decode, clock._sample, gap))
            return step

        def timed_decode(inner: Callable[..., int]) -> Callable[..., int]:
            def decode(ctx: GenerationContext, tokens: list[int], pos: list[int],
                       seqs: list[int], logits: list[bool]) -> int:
                t0 = time.perf_counter_ns()
                rc = inner(ctx, tokens, pos, seqs, logits)
                if threading.current_thread() is clock._worker:
                    clock._decode += time.perf_counter_ns() - t0
                    if all(logits) and clock._rows >= 0:  # a decode step's rows
                        clock._rows += len(tokens)
                    else:  # a prompt chunk (it wants one row's logits): step not counted
                        clock._rows = -(1 << 30)
                return rc
            return decode

        def timed_draw(inner: Callable[..., Any]) -> Callable[..., Any]:
            def draw(owner: Any, *args: Any) -> Any:
                if threading.current_thread() is not clock._worker:
                    return inner(owner, *args)  # a pool thread: its wait is timed already
                t0 = time.perf_counter_ns()
                out = inner(owner, *args)
                clock._sample += time.perf_counter_ns() - t0
                return out
            return draw

        # _sample_ahead: the wait for the sampling pool; Sampler.sample: an inline draw.
        for owner, name, wrap in ((Scheduler, "step", timed_step),
                                  (GenerationContext, "decode", timed_decode),
                                  (Scheduler, "_sample_ahead", timed_draw),
                                  (Sampler, "sample", timed_draw)):
            inner = getattr(owner, name)
            self._saved.append((owner, name, inner))
            setattr(owner, name, wrap(inner))

    def uninstall(self) -> None:
        for owner, name, inner in reversed(self._saved):
            setattr(owner, name, inner)
        self._saved.clear()

    def summary(self, rows: int) -> dict[str, Any]:
        picked = [s for s in self.steps if s[0] == rows]
        if not picked:
            return {"steps": 0}

        def ms(values: list[int]) -> dict[str, float]:
            return {"mean": statistics.fmean(values) / 1e6,
                    "p50": statistics.median(values) / 1e6}

        return {"steps": len(picked),
                "step_ms": ms([s[1] for s in picked]),
                "decode_ms": ms([s[2] for s in picked]),
                "sample_ms": ms([s[3] for s in picked]),
                "other_ms": ms([s[1] - s[2] - s[3] for s in picked]),
                "between_ms": ms([s[4] for s in picked if s[4] > 0])}


async def _streams(engine: LocalEngine, model: str, n: int, max_tokens: int,
                   temperature: float, top_logprobs: int | None = None) -> float:
    prompts = [await engine.tokenize(model, f"Story {i}: once upon a time, far away,")
               for i in range(n)]
    reqs = [GenerationRequest(model=model, prompt_tokens=p, max_tokens=max_tokens,
                              sampling=SamplingParams(temperature=temperature, seed=i),
                              ignore_eos=True, use_cache=False, top_logprobs=top_logprobs)
            for i, p in enumerate(prompts)]
    t0 = time.perf_counter()
    streams = await engine.submit_many(reqs)

    async def drain(stream: Any) -> None:
        async for _ in stream:
            pass

    await asyncio.gather(*(drain(s) for s in streams))
    return n * max_tokens / (time.perf_counter() - t0)


def profile(config: dict[str, Any], model: str, levels: list[int], *, max_tokens: int,
            temperature: float, base_dir: Path,
            top_logprobs: int | None = None) -> dict[str, Any]:
    """The step breakdown at each level (one warm-up stream first)."""
    engine = LocalEngine(parse_config(config), base_dir=base_dir)
    engine.start()
    clock = StepClock()
    out: dict[str, Any] = {}
    try:
        if not engine.wait_ready(300):
            raise SystemExit(f"model {model} did not load")
        asyncio.run(_streams(engine, model, 1, 16, temperature))
        clock.install()
        for n in levels:
            clock.steps.clear()
            rate = asyncio.run(_streams(engine, model, n, max_tokens, temperature,
                                        top_logprobs))
            out[str(n)] = {"tokens_per_s": rate, **clock.summary(n)}
            s = out[str(n)]
            print(f"streams {n}: {rate:.1f} tok/s, {s['steps']} steps: step "
                  f"{s['step_ms']['mean']:.2f} ms = decode {s['decode_ms']['mean']:.2f} + "
                  f"sample {s['sample_ms']['mean']:.2f} + other {s['other_ms']['mean']:.3f}"
                  f"; between steps {s['between_ms']['mean']:.3f} ms", flush=True)
    finally:
        clock.uninstall()
        engine.close()
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.step_profile",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--config", default="config/default.yaml")
    parser.add_argument("--model", default="gemma-3-270m")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 8])
    parser.add_argument("--max-tokens", type=int, default=128)
    parser.add_argument("--temperature", type=float, default=1.0)
    parser.add_argument("--top-logprobs", type=int, default=None,
                        help="every stream asks for its tokens' logprobs and this many "
                        "alternatives (the logprobs are worked out on the worker, in the step)")
    parser.add_argument("--json", help="write the figures here")
    args = parser.parse_args(argv)
    path = Path(args.config)
    data = yaml.safe_load(path.read_text())
    data["models"] = [m for m in data["models"] if m.get("id") == args.model]
    data["models"][0]["parallel"] = max(args.levels)
    data["sessions"] = {"enabled": False}
    result = {"command": "python -m bench.step_profile " + " ".join(
        sys.argv[1:] if argv is None else argv),
        "levels": profile(data, args.model, args.levels, max_tokens=args.max_tokens,
                          temperature=args.temperature, base_dir=Path.cwd(),
                          top_logprobs=args.top_logprobs)}
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
