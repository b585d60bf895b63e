"""The scenarios: decode, prefill, concurrency, sessions (and responses), embeddings.

Each scenario walks an interleaved schedule (``bench.schedule``) over its runners, bounded by a
count (rounds, levels, users x turns) and by a deadline, prints one progress line per unit of
work, and returns every sample plus a per-target summary whose keys carry their units.
"""

from __future__ import annotations

import asyncio
import random
import sys
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from bench.client import HttpRunner, RequestResult, RequestSpec, Runner, Target
from bench.schedule import interleave
from bench.stats import describe, mean, ratio

__all__ = [
    "Budget",
    "Progress",
    "ScenarioResult",
    "make_text",
    "run_concurrency",
    "run_decode",
    "run_embeddings",
    "run_prefill",
    "run_sessions",
]

_WORD_TEXT = (
    "the of and to in is was for that with as on by at from his her this which are be had it "
    "not one all were they we when an their there been has more if will would so who what out "
    "up into about than them can only other new some time could these two may then do first "
    "any my now such like our over man me even most made after also did many before must "
    "through back years where much your way well down should because each just those people "
    "how too little state good very make world still own see men work long get here between "
    "both life being under never day same another know while last might us great old year off "
    "come since against go came right used take three house river stone light north garden "
    "window city paper water morning road music winter summer table letter market bridge "
    "valley island forest village station harbor lamp field mountain"
)
WORDS: tuple[str, ...] = tuple(_WORD_TEXT.split())


def make_text(n_words: int, seed: int | str) -> str:
    """``n_words`` common English words (about one token each for most tokenizers), seeded."""
    rng = random.Random(str(seed))
    return " ".join(rng.choice(WORDS) for _ in range(max(0, n_words)))


@dataclass
class Budget:
    """A deadline on the ``time.perf_counter`` clock and a per-request timeout."""

    deadline_s: float
    request_timeout_s: float = 120.0

    def remaining_s(self) -> float:
        """Seconds left before the deadline (negative when past)."""
        return self.deadline_s - time.perf_counter()

    def expired(self) -> bool:
        """True once the deadline has passed."""
        return self.remaining_s() <= 0

    def timeout_s(self) -> float:
        """Timeout for a request started now: the request timeout, shortened near the deadline
        (a request may overrun the deadline by at most 30 s)."""
        return max(5.0, min(self.request_timeout_s, self.remaining_s() + 30.0))


class Progress:
    """One line per unit of work on stderr, with the time since the run began."""

    def __init__(self, epoch_s: float, quiet: bool = False) -> None:
        self.epoch_s = epoch_s
        self.quiet = quiet

    def __call__(self, msg: str) -> None:
        """Print ``msg`` with the elapsed time."""
        if not self.quiet:
            elapsed = time.perf_counter() - self.epoch_s
            print(f"[{elapsed:7.1f}s] {msg}", file=sys.stderr, flush=True)


@dataclass
class ScenarioResult:
    """A scenario's parameters, samples and per-target summary."""

    name: str
    params: dict[str, Any]
    samples: list[dict[str, Any]] = field(default_factory=list)
    summary: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False
    slots_planned: int = 0
    slots_run: int = 0

    def to_dict(self) -> dict[str, Any]:
        """JSON-safe dict."""
        return {
            "params": self.params,
            "stopped_early": self.stopped_early,
            "slots_planned": self.slots_planned,
            "slots_run": self.slots_run,
            "summary": self.summary,
            "samples": self.samples,
        }


def _fmt(x: float | None, spec: str = ".1f") -> str:
    return "-" if x is None else format(x, spec)


def _line(r: RequestResult) -> str:
    if not r.ok:
        return f"FAILED ({r.error})"
    return (
        f"ttft {_fmt(r.ttft_ms)} ms, {r.output_tokens} tok, "
        f"{_fmt(r.decode_tokens_per_s)} tok/s decode"
    )


def _request_summary(results: Sequence[RequestResult]) -> dict[str, Any]:
    """Counts and TTFT / ITL / decode-rate statistics over a set of requests."""
    ok = [r for r in results if r.ok]
    out: dict[str, Any] = {
        "requests": len(results),
        "requests_ok": len(ok),
        "requests_failed": sum(1 for r in results if not r.ok and not r.cut_off),
        "requests_cut_off": sum(1 for r in results if r.cut_off),
        "mean_output_tokens": mean([r.output_tokens for r in ok]),
    }
    out.update(describe((r.ttft_ms for r in ok), "ttft_ms"))
    out.update(describe((x for r in ok for x in r.itl_ms), "itl_ms"))
    out.update(describe((r.decode_tokens_per_s for r in ok), "output_tokens_per_s"))
    return out


def _nonce(run_id: str, *parts: object) -> str:
    return "-".join([run_id, *(str(p) for p in parts)])


# --------------------------------------------------------------------------- decode


async def run_decode(
    runners: Sequence[Runner],
    *,
    run_id: str,
    budget: Budget,
    progress: Progress,
    rounds: int = 3,
    max_tokens: int = 128,
    endpoint: str = "completions",
) -> ScenarioResult:
    """Single-stream generation of ``max_tokens`` tokens, ``rounds`` times per runner.

    Asks for ``ignore_eos`` (where the server accepts it) and uses a prompt that invites a long
    reply; samples that stopped early still count, with their own token count.
    """
    res = ScenarioResult(
        "decode", {"rounds": rounds, "max_tokens": max_tokens, "endpoint": endpoint}
    )
    for runner in runners:  # warm-up, not recorded: first generations pay one-off costs
        if budget.expired():
            break
        spec = RequestSpec.generation(
            endpoint, f"Request {_nonce(run_id, 'warmup')}. Once upon a time", max_tokens=8
        )
        w = await runner.run(spec, budget.timeout_s())
        progress(f"decode warm-up {runner.name}: {_line(w)}")
    slots = interleave([None], list(runners), rounds)
    res.slots_planned = len(slots)
    by_target: dict[str, list[RequestResult]] = {r.name: [] for r in runners}
    for slot in slots:
        if budget.expired():
            res.stopped_early = True
            break
        nonce = _nonce(run_id, "decode", slot.round, slot.position)
        spec = RequestSpec.generation(
            endpoint,
            f"Request {nonce}. Once upon a time, in a lighthouse by the sea, there lived",
            max_tokens=max_tokens,
            labels={"scenario": "decode", "round": slot.round},
        )
        r = await slot.target.run(spec, budget.timeout_s())
        by_target[slot.target.name].append(r)
        res.samples.append(r.to_dict())
        res.slots_run += 1
        progress(f"decode round {slot.round + 1}/{rounds} {slot.target.name}: {_line(r)}")
    for name, results in by_target.items():
        s = _request_summary(results)
        s["finished_early"] = sum(
            1 for r in results if r.ok and r.output_tokens < max_tokens and r.finish_reason
        )
        res.summary[name] = s
    return res


# --------------------------------------------------------------------------- prefill


def _prefill_spec(endpoint: str, run_id: str, size: int, tag: object, stream: bool) -> RequestSpec:
    # the nonce comes first so no two requests share more than a few prompt tokens
    text = make_text(size, seed=f"{size}-{tag}")
    return RequestSpec.generation(
        endpoint,
        f"Request {_nonce(run_id, 'prefill', size, tag)}. {text}\nIn one sentence, the text",
        max_tokens=1,
        stream=stream,
        labels={"scenario": "prefill", "prompt_words": size},
    )


async def run_prefill(
    runners: Sequence[Runner],
    *,
    run_id: str,
    budget: Budget,
    progress: Progress,
    sizes: Sequence[int] = (64, 512, 2000),
    rounds: int = 3,
    endpoint: str = "completions",
) -> ScenarioResult:
    """Time to first token and prompt tokens/s for prompts of about ``sizes`` tokens.

    Each size is first sent once per runner without streaming (warm-up, and the server's
    ``usage.prompt_tokens`` calibrates the prompt length for servers whose streams carry no
    usage). Every measured prompt starts with a fresh nonce, so no prefix cache can help.
    """
    res = ScenarioResult(
        "prefill", {"sizes_words": list(sizes), "rounds": rounds, "endpoint": endpoint}
    )
    calibrated: dict[tuple[str, int], int | None] = {}
    for runner in runners:
        for size in sizes:
            if budget.expired():
                break
            r = await runner.run(
                _prefill_spec(endpoint, run_id, size, "warmup", False), budget.timeout_s()
            )
            calibrated[(runner.name, size)] = r.prompt_tokens
            progress(
                f"prefill warm-up {runner.name} {size} words: "
                f"{r.prompt_tokens} prompt tokens{'' if r.ok else ' FAILED: ' + str(r.error)}"
            )
    slots = interleave(list(sizes), list(runners), rounds)
    res.slots_planned = len(slots)
    by_key: dict[tuple[str, int], list[RequestResult]] = {}
    for slot in slots:
        if budget.expired():
            res.stopped_early = True
            break
        spec = _prefill_spec(endpoint, run_id, slot.step, f"r{slot.round}p{slot.position}", True)
        spec.labels["round"] = slot.round
        r = await slot.target.run(spec, budget.timeout_s())
        if r.prompt_tokens is None:
            r.prompt_tokens = calibrated.get((slot.target.name, slot.step))
            r.labels["prompt_tokens_source"] = "calibration"
        by_key.setdefault((slot.target.name, slot.step), []).append(r)
        res.samples.append(r.to_dict())
        res.slots_run += 1
        pps = _prompt_rate(r)
        progress(
            f"prefill round {slot.round + 1}/{rounds} {slot.step} words {slot.target.name}: "
            f"ttft {_fmt(r.ttft_ms)} ms, {r.prompt_tokens} tok, {_fmt(pps)} tok/s"
            + ("" if r.ok else f" FAILED ({r.error})")
        )
    for runner in runners:
        per_size: dict[str, Any] = {}
        for size in sizes:
            results = by_key.get((runner.name, size), [])
            ok = [r for r in results if r.ok]
            s: dict[str, Any] = {
                "requests": len(results),
                "requests_failed": len(results) - len(ok),
                "mean_prompt_tokens": mean([r.prompt_tokens for r in ok if r.prompt_tokens]),
            }
            s.update(describe((r.ttft_ms for r in ok), "ttft_ms"))
            s.update(describe((_prompt_rate(r) for r in ok), "prompt_tokens_per_s"))
            per_size[str(size)] = s
        res.summary[runner.name] = per_size
    return res


def _prompt_rate(r: RequestResult) -> float | None:
    if not r.ok or not r.prompt_tokens or not r.ttft_ms:
        return None
    return r.prompt_tokens / (r.ttft_ms / 1000.0)


# --------------------------------------------------------------------------- concurrency


async def run_concurrency(
    runners: Sequence[Runner],
    *,
    run_id: str,
    budget: Budget,
    progress: Progress,
    levels: Sequence[int] = (1, 2, 4, 8),
    rounds: int = 2,
    max_tokens: int = 64,
    endpoint: str = "completions",
    temperature: float = 0.0,
) -> ScenarioResult:
    """C clients at once against one runner: aggregate output tokens/s, TTFT, ITL, failures.

    A burst starts C streams together and lasts until the last one ends; aggregate output
    tokens/s is the tokens all streams delivered divided by the burst's wall time. With a
    ``temperature`` above 0 each server samples with its own defaults for everything else
    (llama-server and llama-cpp-python: top-k 40, top-p 0.95, min-p 0.05; Hugind: none).
    """
    res = ScenarioResult(
        "concurrency",
        {"levels": list(levels), "rounds": rounds, "max_tokens": max_tokens, "endpoint": endpoint,
         "temperature": temperature},
    )
    slots = interleave(list(levels), list(runners), rounds)
    res.slots_planned = len(slots)
    reqs: dict[tuple[str, int], list[RequestResult]] = {}
    bursts: dict[tuple[str, int], list[float]] = {}
    for slot in slots:
        if budget.expired():
            res.stopped_early = True
            break
        c = slot.step
        specs = [
            RequestSpec.generation(
                endpoint,
                f"Request {_nonce(run_id, 'conc', c, slot.round, i)}. Once upon a time, "
                f"near the {make_text(2, seed=i)}, there lived",
                max_tokens=max_tokens,
                labels={"scenario": "concurrency", "concurrency": c, "round": slot.round},
                extra={"temperature": temperature} if temperature else {},
            )
            for i in range(c)
        ]
        timeout = budget.timeout_s()
        t0 = time.perf_counter()
        results = await asyncio.gather(*(slot.target.run(s, timeout) for s in specs))
        wall_s = time.perf_counter() - t0
        tokens = sum(r.output_tokens for r in results if r.ok)
        agg = tokens / wall_s if wall_s > 0 else None
        for r in results:
            r.labels["burst_wall_s"] = round(wall_s, 4)
            res.samples.append(r.to_dict())
        reqs.setdefault((slot.target.name, c), []).extend(results)
        if agg is not None:
            bursts.setdefault((slot.target.name, c), []).append(agg)
        res.slots_run += 1
        bad = sum(1 for r in results if not r.ok)
        errs = {r.error for r in results if r.error}
        progress(
            f"concurrency C={c} round {slot.round + 1}/{rounds} {slot.target.name}: "
            f"{_fmt(agg)} tok/s aggregate, {bad} failed/cut off"
            + (f" ({'; '.join(sorted(errs))[:160]})" if errs else "")
        )
    for runner in runners:
        per_level: dict[str, Any] = {}
        for c in levels:
            s = _request_summary(reqs.get((runner.name, c), []))
            s.update(describe(bursts.get((runner.name, c), []), "aggregate_output_tokens_per_s"))
            per_level[str(c)] = s
        res.summary[runner.name] = per_level
    return res


# --------------------------------------------------------------------------- sessions

TurnHook = Callable[[int], Awaitable[None]]


async def run_sessions(
    runners: Sequence[Runner],
    *,
    run_id: str,
    budget: Budget,
    progress: Progress,
    users: int = 8,
    turns: int = 4,
    doc_words: int = 600,
    reply_tokens: int = 16,
    on_turn_end: TurnHook | None = None,
    endpoint: str = "completions",
) -> ScenarioResult:
    """U users each hold a conversation that grows turn by turn, requests interleaved.

    Turn 1 of each user carries a long, unique document; later turns add a short question to
    the whole history (with the previous replies). Requests set ``user`` and
    ``prompt_cache_key``. Reported: TTFT per turn, mean TTFT of later turns / turn 1, and
    ``cached_tokens`` where the server reports it. ``on_turn_end(turn)`` (e.g. restart a
    server) runs after every turn but the last.

    ``endpoint="responses"`` holds the same conversations over ``/v1/responses`` (the scenario
    is then named "responses"). A target that chains stored responses
    (``supports["previous_response_id"]``, found by ``probe_responses``) gets only the new user
    message and the previous turn's ``previous_response_id``, with ``store: true``; any other
    (llama-server: its /v1/responses is stateless) gets the whole history as input items, with
    ``store: false``. A chained turn whose previous turn failed resends the history.
    """
    name = "responses" if endpoint == "responses" else "sessions"
    res = ScenarioResult(
        name,
        {
            "users": users,
            "turns": turns,
            "doc_words": doc_words,
            "reply_tokens": reply_tokens,
            "hook": on_turn_end is not None,
            "endpoint": endpoint,
        },
    )
    steps = [(t, u) for t in range(turns) for u in range(users)]
    slots = interleave(steps, list(runners), 1)
    res.slots_planned = len(slots)
    convs: dict[tuple[str, int], list[dict[str, str]]] = {}
    chain: dict[tuple[str, int], str] = {}  # the last stored response id of each conversation
    by_target: dict[str, list[RequestResult]] = {r.name: [] for r in runners}
    last_turn = 0
    for slot in slots:
        turn, user = slot.step
        if turn != last_turn:
            if on_turn_end is not None:
                await on_turn_end(last_turn)
            last_turn = turn
        if budget.expired():
            res.stopped_early = True
            break
        key = (slot.target.name, user)
        msgs = convs.setdefault(key, [])
        if turn == 0:
            doc = make_text(doc_words, seed=f"doc-{user}")
            content = f"Session {_nonce(run_id, 'user', user)}. Document:\n{doc}\n"
            content += "Question 1: what is the document about?"
        else:
            content = f"Question {turn + 1}: which word appears most often?"
        msgs.append({"role": "user", "content": content})
        labels: dict[str, Any] = {"scenario": name, "user": user, "turn": turn + 1}
        if endpoint == "responses":
            chains = _chains(slot.target)
            spec = _responses_spec(msgs, reply_tokens, chain.get(key) if chains else None, chains)
            labels["input"] = "previous_response_id" if spec.previous_response_id else "history"
        else:
            spec = _session_spec(endpoint, msgs, reply_tokens)
        if spec.previous_response_id is None:
            # a chain is found by its id alone (as a plain Responses client does); the session
            # name is the hint every other request carries, as in the sessions scenario
            spec.session = f"bench-{run_id}-u{user}"
        spec.labels = labels
        r = await slot.target.run(spec, budget.timeout_s())
        msgs.append({"role": "assistant", "content": r.text if r.ok and r.text else " ..."})
        if r.ok and r.response_id and spec.store:
            chain[key] = r.response_id
        else:
            chain.pop(key, None)
        by_target[slot.target.name].append(r)
        res.samples.append(r.to_dict())
        res.slots_run += 1
        progress(
            f"{name} turn {turn + 1}/{turns} user {user + 1}/{users} {slot.target.name}: "
            f"ttft {_fmt(r.ttft_ms)} ms, prompt {r.prompt_tokens}, cached {r.cached_tokens}"
            + ("" if r.ok else f" FAILED ({r.error})")
        )
    for runner in runners:
        done = by_target[runner.name]
        s = _sessions_summary(done, turns)
        if endpoint == "responses":
            s["input"] = "previous_response_id" if _chains(runner) else "full history"
            s["requests_chained"] = sum(
                1 for r in done if r.labels.get("input") == "previous_response_id"
            )
        res.summary[runner.name] = s
    return res


def _chains(runner: Runner) -> bool:
    """Whether ``runner``'s target chains stored responses (only a probed ``HttpRunner``)."""
    target = getattr(runner, "target", None)
    return isinstance(target, Target) and target.supports.get("previous_response_id") is True


def _responses_spec(
    msgs: list[dict[str, str]], max_tokens: int, previous: str | None, chains: bool
) -> RequestSpec:
    """One Responses turn: the new user message after ``previous`` on a chaining target, else
    the whole conversation as input items. Stored only where a next turn will name it."""
    if previous is not None:
        return RequestSpec(
            kind="responses", messages=[msgs[-1]], max_tokens=max_tokens, store=True,
            previous_response_id=previous,
        )  # fmt: skip
    # llama-server takes an assistant item only with "type": "message" (a role alone is
    # "Cannot determine type of 'item'"); OpenAI and Hugind accept both
    items = [{"type": "message", **m} if m["role"] == "assistant" else dict(m) for m in msgs]
    return RequestSpec(kind="responses", messages=items, max_tokens=max_tokens, store=chains)


def _session_spec(endpoint: str, msgs: list[dict[str, str]], max_tokens: int) -> RequestSpec:
    """The whole conversation so far: chat messages, or one prompt (each user turn followed by
    "Answer:" and the reply) for the completions endpoint."""
    if endpoint == "chat":
        return RequestSpec(kind="chat", messages=list(msgs), max_tokens=max_tokens)
    parts = []
    for m in msgs:
        if m["role"] == "user":
            parts.append(("\n\n" if parts else "") + m["content"] + "\nAnswer:")
        else:
            parts.append(m["content"])
    return RequestSpec.generation(endpoint, "".join(parts), max_tokens=max_tokens)


def _sessions_summary(results: Sequence[RequestResult], turns: int) -> dict[str, Any]:
    ok = [r for r in results if r.ok and r.ttft_ms is not None]
    per_turn: list[dict[str, Any]] = []
    for t in range(1, turns + 1):
        rs = [r for r in ok if r.labels.get("turn") == t]
        per_turn.append(
            {
                "turn": t,
                "requests_ok": len(rs),
                "mean_ttft_ms": mean([r.ttft_ms for r in rs if r.ttft_ms is not None]),
                "mean_prompt_tokens": mean([r.prompt_tokens for r in rs if r.prompt_tokens]),
                "mean_cached_tokens": mean(
                    [r.cached_tokens for r in rs if r.cached_tokens is not None]
                ),
            }
        )
    first = mean([r.ttft_ms for r in ok if r.labels.get("turn") == 1 and r.ttft_ms])
    later = mean([r.ttft_ms for r in ok if r.labels.get("turn", 1) > 1 and r.ttft_ms])
    return {
        "requests": len(results),
        "requests_failed": len(results) - len(ok),
        "mean_ttft_turn1_ms": first,
        "mean_ttft_later_turns_ms": later,
        "later_over_first_ttft_ratio": ratio(later, first),
        "per_turn": per_turn,
    }


# --------------------------------------------------------------------------- embeddings


async def run_embeddings(
    runners: Sequence[Runner],
    *,
    run_id: str,
    budget: Budget,
    progress: Progress,
    batches: Sequence[int] = (1, 16, 128),
    rounds: int = 3,
) -> ScenarioResult:
    """Inputs/s for batches of short texts, on runners whose target names an embedding model."""
    targets = [r for r in runners if isinstance(r, HttpRunner) and r.target.embed_model is not None]
    res = ScenarioResult(
        "embeddings",
        {"batches": list(batches), "rounds": rounds, "targets": [r.name for r in targets]},
    )

    def spec(n: int, tag: object) -> RequestSpec:
        inputs = [
            f"{_nonce(run_id, 'emb', tag, i)} {make_text(8, seed=f'{tag}-{i}')}" for i in range(n)
        ]
        return RequestSpec(
            kind="embeddings", inputs=inputs, stream=False, labels={"scenario": "embeddings"}
        )

    for runner in targets:
        if not budget.expired():
            w = await runner.run(spec(4, "warmup"), budget.timeout_s())
            progress(f"embeddings warm-up {runner.name}: {'ok' if w.ok else w.error}")
    slots = interleave(list(batches), targets, rounds)
    res.slots_planned = len(slots)
    per: dict[tuple[str, int], list[RequestResult]] = {}
    for slot in slots:
        if budget.expired():
            res.stopped_early = True
            break
        sp = spec(slot.step, f"r{slot.round}b{slot.step}p{slot.position}")
        sp.labels.update({"batch": slot.step, "round": slot.round})
        r = await slot.target.run(sp, budget.timeout_s())
        if r.ok and r.inputs != slot.step:
            r.ok = False
            r.error = f"asked {slot.step} embeddings, got {r.inputs}"
        per.setdefault((slot.target.name, slot.step), []).append(r)
        res.samples.append(r.to_dict())
        res.slots_run += 1
        rate = _inputs_rate(r)
        progress(
            f"embeddings batch {slot.step} round {slot.round + 1}/{rounds} {slot.target.name}: "
            + (f"{_fmt(rate)} inputs/s" if r.ok else f"FAILED ({r.error})")
        )
    for runner in targets:
        per_batch: dict[str, Any] = {}
        for b in batches:
            results = per.get((runner.name, b), [])
            ok = [r for r in results if r.ok]
            s: dict[str, Any] = {
                "requests": len(results),
                "requests_failed": len(results) - len(ok),
            }
            s.update(describe((r.latency_ms for r in ok), "latency_ms"))
            s.update(describe((_inputs_rate(r) for r in ok), "inputs_per_s"))
            per_batch[str(b)] = s
        res.summary[runner.name] = per_batch
    return res


def _inputs_rate(r: RequestResult) -> float | None:
    if not r.ok or not r.inputs or not r.latency_ms:
        return None
    return r.inputs / (r.latency_ms / 1000.0)
