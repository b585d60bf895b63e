"""Structured outputs on any OpenAI-compatible server: does what a JSON schema promises hold,
and what does constrained decoding cost.

``coverage``: for each keyword group, hand-written schemas and schemas drawn by Hypothesis,
each sampled with several seeds at temperature 1 through ``response_format: json_schema``
(``strict: true``); a generation counts as valid when it ends by itself (not cut at
``max_tokens``) and validates under Draft 2020-12 with its ``FormatChecker``. A refusal (4xx)
counts as not valid, with its message kept::

    .venv/bin/python -m bench.structured coverage --url http://127.0.0.1:8080 --model gemma

``speed``: tokens/s of a schema-constrained generation over the same generation without the
schema, one stream and N streams at once (``--streams``), a ratio per level::

    .venv/bin/python -m bench.structured speed --url http://127.0.0.1:8080 --model gemma

Each request uses a fresh connection (llama-server closes a connection after a stream).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections import defaultdict
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import httpx
import jsonschema
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import seed as hypothesis_seed
from hypothesis import strategies as st

CHECKER = jsonschema.Draft202012Validator.FORMAT_CHECKER  # 2020-12's own formats

__all__ = ["SCHEMAS", "Generation", "coverage", "drawn_schemas", "generate", "main", "speed"]

_D = {"type": "integer", "minimum": 0, "maximum": 9}
_TREE = {"$defs": {"node": {"type": "object", "properties": {
    "name": {"type": "string", "maxLength": 12},
    "children": {"type": "array", "items": {"$ref": "#/$defs/node"}, "maxItems": 2}},
    "required": ["name", "children"]}}, "$ref": "#/$defs/node"}


def _obj(**props: Any) -> dict[str, Any]:
    return {"type": "object", "properties": props, "required": list(props)}


# (keyword group, schema). Bounded strings and arrays keep a tiny model's answers short
# enough to close within max_tokens; the bound is part of what is checked.
SCHEMAS: list[tuple[str, dict[str, Any]]] = [
    ("integer range", _obj(n=_D)),
    ("integer range", {"type": "integer", "minimum": -20, "maximum": -10}),
    ("number range", _obj(x={"type": "number", "minimum": -1.5, "maximum": 2.5})),
    ("exclusiveMinimum/Maximum", _obj(n={"type": "integer", "exclusiveMinimum": 0,
                                         "exclusiveMaximum": 5})),
    ("exclusiveMinimum/Maximum", _obj(x={"type": "number", "exclusiveMinimum": 0,
                                         "exclusiveMaximum": 1})),
    ("multipleOf", _obj(n={"type": "integer", "multipleOf": 5, "minimum": 0, "maximum": 100})),
    ("minLength/maxLength", _obj(s={"type": "string", "minLength": 3, "maxLength": 6})),
    ("pattern", _obj(code={"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"})),
    ("format date", _obj(d={"type": "string", "format": "date"})),
    ("format time", _obj(t={"type": "string", "format": "time"})),
    ("format date-time", _obj(t={"type": "string", "format": "date-time"})),
    ("format email", _obj(e={"type": "string", "format": "email", "maxLength": 40})),
    ("format uuid", _obj(u={"type": "string", "format": "uuid"})),
    ("format uri", _obj(u={"type": "string", "format": "uri", "maxLength": 40})),
    ("format ipv4", _obj(ip={"type": "string", "format": "ipv4"})),
    ("enum (mixed)", _obj(v={"enum": ["red", 3, None, True, 2.5]})),
    ("const", _obj(kind={"const": "point"}, x=_D)),
    ("minItems/maxItems", _obj(xs={"type": "array", "items": _D, "minItems": 2, "maxItems": 4})),
    ("prefixItems", {"type": "array", "prefixItems": [{"type": "string", "maxLength": 8}, _D],
                     "items": False}),
    ("anyOf", _obj(v={"anyOf": [_D, {"type": "string", "maxLength": 5}]})),
    ("oneOf", _obj(v={"oneOf": [{"type": "boolean"}, {"type": "string", "maxLength": 5}]})),
    ("oneOf", _obj(shape={"oneOf": [_obj(kind={"const": "circle"}, r=_D),
                                    _obj(kind={"const": "square"}, side=_D)]})),
    ("allOf", {"allOf": [_obj(a={"type": "integer", "minimum": 1, "maximum": 3}),
                         _obj(b={"type": "boolean"})]}),
    ("nullable type list", _obj(v={"type": ["integer", "null"], "minimum": 0, "maximum": 5})),
    ("$ref/$defs", {"$defs": {"pt": _obj(x=_D, y=_D)}, "type": "array",
                    "items": {"$ref": "#/$defs/pt"}, "maxItems": 3}),
    ("recursive $ref", _TREE),
    ("additionalProperties schema", {"type": "object", "additionalProperties": _D,
                                     "maxProperties": 3}),
    ("optional properties", {"type": "object", "properties": {
        "name": {"type": "string", "maxLength": 10}, "age": {"type": "integer", "minimum": 0,
                                                            "maximum": 120}},
        "required": ["name"]}),
    ("uniqueItems", _obj(xs={"type": "array", "items": {"enum": ["a", "b", "c"]},
                             "uniqueItems": True, "minItems": 2, "maxItems": 3})),
    ("uniqueItems", {"type": "array", "items": {"type": "integer", "minimum": 0, "maximum": 3},
                     "uniqueItems": True, "maxItems": 3}),
]


# -- schemas drawn by Hypothesis: small leaves combined into objects and arrays -----------------

def _leaves() -> st.SearchStrategy[dict[str, Any]]:
    ints = st.tuples(st.integers(-50, 50), st.integers(0, 30)).map(
        lambda t: {"type": "integer", "minimum": t[0], "maximum": t[0] + t[1]})
    nums = st.tuples(st.integers(-5, 5), st.integers(1, 10)).map(
        lambda t: {"type": "number", "exclusiveMinimum": t[0], "maximum": t[0] + t[1]})
    strs = st.tuples(st.integers(1, 4), st.integers(0, 6)).map(
        lambda t: {"type": "string", "minLength": t[0], "maxLength": t[0] + t[1]})
    fmts = st.sampled_from(["date", "date-time", "uuid", "email", "ipv4"]).map(
        lambda f: {"type": "string", "format": f, "maxLength": 40})
    enums = st.lists(st.one_of(st.text("abcxyz", min_size=1, max_size=5), st.integers(0, 99),
                               st.booleans()), min_size=1, max_size=4, unique_by=repr).map(
        lambda vs: {"enum": vs})
    nullable = ints.map(lambda s: {**s, "type": ["integer", "null"]})
    return st.one_of(ints, nums, strs, fmts, enums, nullable, st.just({"type": "boolean"}))


def _schemas() -> st.SearchStrategy[dict[str, Any]]:
    names = st.sampled_from(["a", "b", "id", "name", "when", "tag"])
    obj = st.dictionaries(names, _leaves(), min_size=1, max_size=3).flatmap(
        lambda props: st.lists(st.sampled_from(sorted(props)), unique=True).map(
            lambda req: {"type": "object", "properties": props, "required": req}))
    arr = st.tuples(_leaves(), st.integers(0, 2), st.integers(0, 2)).map(
        lambda t: {"type": "array", "items": t[0], "minItems": t[1], "maxItems": t[1] + t[2]})
    return st.one_of(obj, arr, _leaves().map(lambda leaf: _obj(v=leaf)))


def drawn_schemas(n: int, seed: int = 2026) -> list[dict[str, Any]]:
    """``n`` schemas from Hypothesis, the same ones for the same seed."""
    out: list[dict[str, Any]] = []

    @hypothesis_seed(seed)
    @settings(max_examples=n, database=None, deadline=None, phases=[Phase.generate],
              suppress_health_check=list(HealthCheck))
    @given(_schemas())
    def draw(schema: dict[str, Any]) -> None:
        if len(out) < n and schema not in out:
            out.append(schema)

    draw()
    return out


# -- one generation -----------------------------------------------------------------------------

@dataclass
class Generation:
    group: str
    schema: dict[str, Any]
    seed: int
    status: int
    valid: bool
    text: str = ""
    finish_reason: str | None = None
    problem: str = ""


# A one-shot example keeps a tiny model's recursive trees shallow enough to close within
# max_tokens (at temperature 1 it otherwise nests until cut off: valid, but never finished).
_EXAMPLES = {"recursive $ref": [
    {"role": "user", "content": "A family tree as JSON."},
    {"role": "assistant",
     "content": '{"name": "Ann", "children": [{"name": "Bob", "children": []}]}'}]}


def _body(model: str, schema: dict[str, Any] | None, *, seed: int, max_tokens: int,
          temperature: float, stream: bool = False, group: str = "",
          content: str | None = None) -> dict[str, Any]:
    """A chat request for JSON; ``content`` (default: the schema, asked for in words) is the
    user message."""
    if content is None:
        content = "Answer with JSON only."
        if schema is not None:
            content += " It must follow this JSON schema: " + json.dumps(schema)
    body: dict[str, Any] = {"model": model, "max_tokens": max_tokens, "seed": seed,
                            "temperature": temperature, "stream": stream,
                            "messages": [*_EXAMPLES.get(group, []),
                                         {"role": "user", "content": content}]}
    if schema is not None:
        body["response_format"] = {"type": "json_schema", "json_schema": {
            "name": "out", "schema": schema, "strict": True}}
    return body


def generate(url: str, model: str, group: str, schema: dict[str, Any], seed: int, *,
             max_tokens: int = 160, temperature: float = 1.0,
             timeout_s: float = 300.0) -> Generation:
    body = _body(model, schema, seed=seed, max_tokens=max_tokens, temperature=temperature,
                 group=group)
    with httpx.Client(timeout=timeout_s) as client:
        r = client.post(f"{url}/v1/chat/completions", json=body)
    if r.status_code != 200:
        try:
            problem = str(r.json()["error"]["message"])[:300]
        except (ValueError, KeyError, TypeError):
            problem = r.text[:300]
        return Generation(group, schema, seed, r.status_code, False, problem=problem)
    choice = r.json()["choices"][0]
    text = choice["message"].get("content") or ""
    gen = Generation(group, schema, seed, 200, False, text, choice.get("finish_reason"))
    if gen.finish_reason != "stop":
        gen.problem = f"finish_reason {gen.finish_reason}"
        return gen
    try:
        value = json.loads(text)
        jsonschema.Draft202012Validator(schema, format_checker=CHECKER).validate(value)
    except (ValueError, jsonschema.ValidationError) as exc:
        gen.problem = str(getattr(exc, "message", exc))[:300]
        return gen
    gen.valid = True
    return gen


def coverage(url: str, model: str, *, seeds: list[int], drawn: int = 12,
             max_tokens: int = 160, concurrency: int = 1,
             log: Any = None) -> dict[str, Any]:
    """Every schema of :data:`SCHEMAS` and ``drawn`` Hypothesis schemas, once per seed."""
    cases = [(g, s) for g, s in SCHEMAS] + [("hypothesis", s) for s in drawn_schemas(drawn)]
    jobs = [(g, s, seed) for g, s in cases for seed in seeds]
    with ThreadPoolExecutor(concurrency) as pool:
        gens = list(pool.map(lambda j: generate(url, model, *j, max_tokens=max_tokens), jobs))
    by_group: dict[str, list[int]] = defaultdict(lambda: [0, 0])
    for g in gens:
        by_group[g.group][0] += g.valid
        by_group[g.group][1] += 1
        if log is not None and not g.valid:
            log(f"not valid [{g.group}] seed {g.seed}: {g.problem} | {g.text[:120]!r}")
    return {"valid": sum(g.valid for g in gens), "total": len(gens),
            "by_group": {k: {"valid": v, "total": t} for k, (v, t) in by_group.items()},
            "generations": [asdict(g) for g in gens]}


# -- speed --------------------------------------------------------------------------------------

# Records that never run out within max_tokens: every token is masked, none is free text.
SPEED_SCHEMA = {"type": "object", "properties": {"rows": {
    "type": "array", "minItems": 200, "items": _obj(
        id={"type": "integer", "minimum": 0, "maximum": 9999},
        name={"type": "string", "maxLength": 12},
        tag={"enum": ["alpha", "beta", "gamma", "delta"]},
        ok={"type": "boolean"})}}, "required": ["rows"]}


@dataclass
class Stream:
    tokens: int = 0
    first_s: float | None = None
    last_s: float | None = None
    error: str = ""

    def rate(self) -> float | None:
        """Tokens/s after the first token (decode, not the prompt's read)."""
        if self.first_s is None or self.last_s is None or self.tokens < 2:
            return None
        return (self.tokens - 1) / max(self.last_s - self.first_s, 1e-9)


def _stream(url: str, body: dict[str, Any], timeout_s: float) -> Stream:
    out = Stream()
    try:
        with httpx.Client(timeout=timeout_s) as client, client.stream(
                "POST", f"{url}/v1/chat/completions", json=body) as r:
            if r.status_code != 200:
                r.read()
                out.error = f"{r.status_code}: {r.text[:200]}"
                return out
            for line in r.iter_lines():
                if not line.startswith("data: {"):
                    continue
                chunk = json.loads(line[6:])
                for c in chunk.get("choices") or []:
                    if (c.get("delta") or {}).get("content"):
                        now = time.perf_counter()
                        out.first_s = out.first_s or now
                        out.last_s = now
                        out.tokens += 1  # both servers send one token a chunk
    except httpx.HTTPError as exc:
        out.error = repr(exc)
    return out


def speed(url: str, model: str, *, levels: list[int], rounds: int = 3, max_tokens: int = 128,
          timeout_s: float = 300.0, log: Any = None) -> dict[str, Any]:
    """Mean tokens/s a stream, constrained and not, at each level; interleaved rounds."""
    out: dict[str, Any] = {}
    for level in levels:
        rates: dict[str, list[float]] = {"constrained": [], "unconstrained": []}
        errors: list[str] = []
        for rnd in range(rounds):
            for kind in ("unconstrained", "constrained"):
                schema = SPEED_SCHEMA if kind == "constrained" else None
                # The same prompt either way: only the mask differs.
                bodies = [{**_body(model, schema, seed=100 * rnd + i, max_tokens=max_tokens,
                                   temperature=1.0, stream=True,
                                   content="Write a long JSON list of records."),
                           "ignore_eos": True} for i in range(level)]
                with ThreadPoolExecutor(level) as pool:
                    streams = list(pool.map(lambda b: _stream(url, b, timeout_s), bodies))
                for s in streams:
                    r = s.rate()
                    if r is None:
                        errors.append(s.error or f"{s.tokens} tokens")
                    else:
                        rates[kind].append(r)
                if log is not None:
                    log(f"streams {level} round {rnd + 1} {kind}: "
                        + ", ".join(f"{s.rate() or 0:.1f}" for s in streams) + " tok/s")
        mean = {k: sum(v) / len(v) if v else None for k, v in rates.items()}
        ratio = (mean["constrained"] / mean["unconstrained"]
                 if mean["constrained"] and mean["unconstrained"] else None)
        out[str(level)] = {"constrained_tok_s": mean["constrained"],
                           "unconstrained_tok_s": mean["unconstrained"], "ratio": ratio,
                           "samples": rates, "errors": errors}
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.structured",
                                     description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("coverage", "speed"):
        p = sub.add_parser(name)
        p.add_argument("--url", required=True, action="append",
                       help="a server's base URL, as NAME=URL or URL (repeat for peers)")
        p.add_argument("--model", required=True)
        p.add_argument("--json", help="write the figures here")
        p.add_argument("--max-tokens", type=int, default=160 if name == "coverage" else 128)
    cov = sub.choices["coverage"]
    cov.add_argument("--seeds", type=int, nargs="+", default=[1, 2])
    cov.add_argument("--drawn", type=int, default=12, help="schemas drawn by Hypothesis")
    cov.add_argument("--concurrency", type=int, default=1, help="requests at once")
    spd = sub.choices["speed"]
    spd.add_argument("--streams", type=int, nargs="+", default=[1, 4])
    spd.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args(argv)

    def log(msg: str) -> None:
        print(msg, file=sys.stderr, flush=True)

    results: dict[str, Any] = {"command": "python -m bench.structured " + " ".join(
        sys.argv[1:] if argv is None else argv), "targets": {}}
    for spec in args.url:
        name, _, url = spec.partition("=") if "=" in spec.split("://")[0] else (spec, "", spec)
        url = url.rstrip("/")
        log(f"== {name}")
        if args.command == "coverage":
            res = coverage(url, args.model, seeds=args.seeds, drawn=args.drawn,
                           max_tokens=args.max_tokens, concurrency=args.concurrency, log=log)
            print(f"{name}: {res['valid']} of {res['total']} valid")
            for group, v in res["by_group"].items():
                print(f"  {group}: {v['valid']}/{v['total']}")
        else:
            res = speed(url, args.model, levels=args.streams, rounds=args.rounds,
                        max_tokens=args.max_tokens, log=log)
            for level, v in res.items():
                print(f"{name} streams {level}: constrained {v['constrained_tok_s'] or 0:.1f}, "
                      f"unconstrained {v['unconstrained_tok_s'] or 0:.1f} tok/s, "
                      f"ratio {v['ratio'] or 0:.3f}")
        results["targets"][name] = res
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1))
    return 0


if __name__ == "__main__":
    sys.exit(main())
