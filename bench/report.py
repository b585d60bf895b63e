"""Reports: the JSON file (every sample and summary), a markdown table, optional PNG plots.

Headline rows pull one number per target out of each scenario's summary; ratios compare the
subject (the first target unless told otherwise) against every other target, and every target
against the in-process engine ceiling where the engine measured the same thing.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bench.stats import ratio

__all__ = ["headline_rows", "load_report", "render_markdown", "write_plots", "write_report"]


def _row(metric: str, unit: str, higher: bool, values: dict[str, Any]) -> dict[str, Any]:
    return {"metric": metric, "unit": unit, "higher_is_better": higher, "values": values}


def headline_rows(report: dict[str, Any]) -> list[dict[str, Any]]:
    """One row per headline metric: ``{metric, unit, higher_is_better, values: {target: x}}``."""
    sc = report.get("scenarios", {})
    rows: list[dict[str, Any]] = []
    if "decode" in sc:
        s = sc["decode"]["summary"]
        rows.append(
            _row(
                "decode: output tokens/s (mean)",
                "tok/s",
                True,
                {t: v.get("mean_output_tokens_per_s") for t, v in s.items()},
            )
        )
        rows.append(
            _row("decode: TTFT p50", "ms", False, {t: v.get("p50_ttft_ms") for t, v in s.items()})
        )
    if "prefill" in sc:
        s = sc["prefill"]["summary"]
        for size in sc["prefill"]["params"]["sizes_words"]:
            k = str(size)
            rows.append(
                _row(
                    f"prefill ~{size} tokens: prompt tokens/s (mean)",
                    "tok/s",
                    True,
                    {t: v.get(k, {}).get("mean_prompt_tokens_per_s") for t, v in s.items()},
                )
            )
            rows.append(
                _row(
                    f"prefill ~{size} tokens: TTFT p50",
                    "ms",
                    False,
                    {t: v.get(k, {}).get("p50_ttft_ms") for t, v in s.items()},
                )
            )
    if "concurrency" in sc:
        s = sc["concurrency"]["summary"]
        for c in sc["concurrency"]["params"]["levels"]:
            k = str(c)
            rows.append(
                _row(
                    f"C={c}: aggregate output tokens/s (mean)",
                    "tok/s",
                    True,
                    {
                        t: v.get(k, {}).get("mean_aggregate_output_tokens_per_s")
                        for t, v in s.items()
                    },
                )
            )
            rows.append(
                _row(
                    f"C={c}: TTFT p90",
                    "ms",
                    False,
                    {t: v.get(k, {}).get("p90_ttft_ms") for t, v in s.items()},
                )
            )
            rows.append(
                _row(
                    f"C={c}: ITL p99",
                    "ms",
                    False,
                    {t: v.get(k, {}).get("p99_itl_ms") for t, v in s.items()},
                )
            )
            rows.append(
                _row(
                    f"C={c}: failed + cut-off requests",
                    "count",
                    False,
                    {t: _bad(v.get(k, {})) for t, v in s.items()},
                )
            )
    for conv in ("sessions", "responses"):  # the same conversations, chat-like or Responses
        if conv not in sc:
            continue
        s = sc[conv]["summary"]
        rows.append(
            _row(
                f"{conv}: TTFT turn 1 (mean)",
                "ms",
                False,
                {t: v.get("mean_ttft_turn1_ms") for t, v in s.items()},
            )
        )
        rows.append(
            _row(
                f"{conv}: TTFT later turns (mean)",
                "ms",
                False,
                {t: v.get("mean_ttft_later_turns_ms") for t, v in s.items()},
            )
        )
        rows.append(
            _row(
                f"{conv}: later / turn-1 TTFT",
                "ratio",
                False,
                {t: v.get("later_over_first_ttft_ratio") for t, v in s.items()},
            )
        )
        rows.append(
            _row(
                f"{conv}: failed requests",
                "count",
                False,
                {t: v.get("requests_failed") for t, v in s.items()},
            )
        )
    if "embeddings" in sc:
        s = sc["embeddings"]["summary"]
        for b in sc["embeddings"]["params"]["batches"]:
            k = str(b)
            rows.append(
                _row(
                    f"embeddings batch {b}: inputs/s (mean)",
                    "inputs/s",
                    True,
                    {t: v.get(k, {}).get("mean_inputs_per_s") for t, v in s.items()},
                )
            )
    return rows  # fmt: skip


def _bad(level: dict[str, Any]) -> int | None:
    if not level or not level.get("requests"):
        return None
    return int(level.get("requests_failed", 0)) + int(level.get("requests_cut_off", 0))


def add_comparisons(report: dict[str, Any]) -> None:
    """Fill ``report["headline"]`` with rows and ratios (subject / peer, target / engine)."""
    rows = headline_rows(report)
    subject = report.get("subject")
    engine = report.get("engine", {}).get("name") if report.get("engine") else None
    for row in rows:
        vals = row["values"]
        if row["unit"] in ("tok/s", "inputs/s", "ms") and subject in vals:
            row["subject_over_peer"] = {
                t: ratio(vals.get(subject), v)
                for t, v in vals.items()
                if t not in (subject, engine)
            }
        if engine and vals.get(engine) is not None and row["unit"] == "tok/s":
            row["fraction_of_engine"] = {
                t: ratio(v, vals[engine]) for t, v in vals.items() if t != engine
            }
    report["headline"] = rows


def write_report(report: dict[str, Any], out_dir: Path, *, plots: bool = True) -> list[Path]:
    """Write ``results.json``, ``results.md`` and (if matplotlib is installed) PNGs."""
    out_dir.mkdir(parents=True, exist_ok=True)
    add_comparisons(report)
    paths = [out_dir / "results.json", out_dir / "results.md"]
    paths[0].write_text(json.dumps(report, indent=1, sort_keys=False) + "\n")
    if plots:
        paths += write_plots(report, out_dir)
    paths[1].write_text(render_markdown(report, [p.name for p in paths[2:]]))
    return paths


def load_report(path: Path) -> dict[str, Any]:
    """Read a ``results.json``."""
    data = json.loads(path.read_text())
    if not isinstance(data, dict):
        raise ValueError(f"{path} is not a bench report")
    return data


def _cell(x: Any, unit: str = "") -> str:
    if x is None:
        return "–"
    if isinstance(x, float):
        if unit == "ratio":
            return f"{x:.2f}"
        return f"{x:.3g}" if abs(x) < 10 else f"{x:,.0f}" if abs(x) >= 1000 else f"{x:.1f}"
    return str(x)


def _table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def render_markdown(report: dict[str, Any], images: Sequence[str] = ()) -> str:
    """The markdown summary: context, headline table with ratios, per-scenario details."""
    if "headline" not in report:
        add_comparisons(report)
    m = report.get("machine", {})
    targets = [t["name"] for t in report.get("targets", [])]
    engine = report.get("engine", {}).get("name") if report.get("engine") else None
    cols = targets + ([engine] if engine else [])
    subject = report.get("subject")
    peers = [t for t in targets if t != subject]
    lines = [
        f"# Bench results {report.get('run_id', '')}",
        "",
        f"- started {report.get('started_at_utc')} UTC, {report.get('duration_s', 0):.0f} s"
        + (" (stopped early: " + str(report.get("stop_reason")) + ")"
           if report.get("stopped_early") else ""),
        f"- machine: {m.get('cpu_model')}, {m.get('logical_cpus')} logical CPUs "
        f"({m.get('usable_cpus')} usable), {m.get('mem_total_gib')} GiB, GPUs: "
        f"{', '.join(m.get('gpus') or []) or 'none'}, load {m.get('loadavg_1_5_15')}",
        f"- packages: {', '.join(f'{k} {v}' for k, v in (m.get('packages') or {}).items() if v)}",
        f"- command: `{' '.join(report.get('command', []))}`",
        f"- subject: **{subject}**; ratios are subject / peer (for ms rows, lower is better)",
        "",
        "## Targets",
        "",
    ]  # fmt: skip
    for t in report.get("targets", []):
        managed = t.get("managed") or {}
        cmd = " ".join(managed.get("command", [])) if managed else "(not started by the harness)"
        lines.append(
            f"- **{t['name']}**: {t['base_url']} model `{t['model']}`"
            f"{' embed `' + str(t['embed_model']) + '`' if t.get('embed_model') else ''}"
            f", version {managed.get('version')}, accepts {t.get('supports')}: `{cmd}`"
        )
    if engine:
        e = report["engine"]
        lines.append(
            f"- **{engine}**: {e.get('kind')}, n_ctx {e.get('n_ctx')}, "
            f"threads {e.get('n_threads')}, n_batch {e.get('n_batch')}"
        )
    header = ["metric", "unit", *cols]
    header += [f"{subject} / {p}" for p in peers]
    if engine:
        header += [f"{t} / engine" for t in targets]
    body = []
    for row in report["headline"]:
        cells = [row["metric"], row["unit"]] + [
            _cell(row["values"].get(c), row["unit"]) for c in cols
        ]
        so = row.get("subject_over_peer", {})
        cells += [_cell(so.get(p), "ratio") for p in peers]
        if engine:
            fe = row.get("fraction_of_engine", {})
            cells += [_cell(fe.get(t), "ratio") for t in targets]
        body.append(cells)
    lines += ["", "## Headline", "", *_table(header, body), ""]  # fmt: skip
    lines += _details(report)
    for img in images:
        lines += [f"![{img}]({img})", ""]
    return "\n".join(lines) + "\n"


def _details(report: dict[str, Any]) -> list[str]:
    sc = report.get("scenarios", {})
    lines: list[str] = []
    for name, data in sc.items():
        lines += [
            f"## {name}",
            "",
            f"params: `{json.dumps(data.get('params'))}`, "
            f"slots run {data.get('slots_run')}/{data.get('slots_planned')}"
            + (" (stopped early)" if data.get("stopped_early") else ""),
            "",
        ]
        if name == "responses":
            lines += [
                f"- **{t}**: input {s.get('input')}, {s.get('requests_chained')} chained requests"
                for t, s in data["summary"].items()
            ] + [""]
        if name in ("sessions", "responses"):
            header = [
                "target",
                "turn",
                "requests ok",
                "mean TTFT ms",
                "mean prompt tokens",
                "mean cached tokens",
            ]
            rows = [
                [
                    t,
                    str(p["turn"]),
                    str(p["requests_ok"]),
                    _cell(p["mean_ttft_ms"]),
                    _cell(p["mean_prompt_tokens"]),
                    _cell(p["mean_cached_tokens"]),
                ]
                for t, s in data["summary"].items()
                for p in s.get("per_turn", [])
            ]
            lines += [*_table(header, rows), ""]
            continue
        nested = name in ("prefill", "concurrency", "embeddings")
        keys = [
            "requests",
            "requests_failed",
            "requests_cut_off",
            "mean_output_tokens",
            "mean_prompt_tokens",
            "p50_ttft_ms",
            "p90_ttft_ms",
            "p99_ttft_ms",
            "p50_itl_ms",
            "p99_itl_ms",
            "mean_output_tokens_per_s",
            "mean_prompt_tokens_per_s",
            "mean_aggregate_output_tokens_per_s",
            "mean_inputs_per_s",
            "p50_latency_ms",
        ]
        rows = []
        for t, s in data["summary"].items():
            items = s.items() if nested else [("", s)]
            for step, v in items:
                rows.append((t, step, v))
        present = [k for k in keys if any(v.get(k) is not None for _, _, v in rows)]
        header = ["target", *(["step"] if nested else []), *present]
        lines += [
            *_table(
                header,
                [
                    [t, *([step] if nested else []), *(_cell(v.get(k)) for k in present)]
                    for t, step, v in rows
                ],
            ),
            "",
        ]
    return lines  # fmt: skip


def write_plots(report: dict[str, Any], out_dir: Path) -> list[Path]:
    """PNG plots (throughput against concurrency, TTFT by turn); none without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return []
    sc = report.get("scenarios", {})
    paths: list[Path] = []
    if "concurrency" in sc:
        levels = sc["concurrency"]["params"]["levels"]
        fig, ax = plt.subplots(figsize=(6, 4))
        for t, s in sc["concurrency"]["summary"].items():
            ys = [s.get(str(c), {}).get("mean_aggregate_output_tokens_per_s") for c in levels]
            ax.plot(levels, [float("nan") if y is None else y for y in ys], marker="o", label=t)
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel("concurrent clients")
        ax.set_ylabel("aggregate output tokens/s")
        ax.set_title("Throughput against concurrency")
        ax.grid(True, alpha=0.3)
        ax.legend()
        p = out_dir / "concurrency_throughput.png"
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    for conv in ("sessions", "responses"):
        if conv not in sc:
            continue
        fig, ax = plt.subplots(figsize=(6, 4))
        for t, s in sc[conv]["summary"].items():
            turns = [p["turn"] for p in s.get("per_turn", [])]
            ys = [p["mean_ttft_ms"] for p in s.get("per_turn", [])]
            ax.plot(turns, [float("nan") if y is None else y for y in ys], marker="o", label=t)
        n_turns = int(sc[conv]["params"].get("turns", 0))
        ax.set_xticks(list(range(1, n_turns + 1)))
        ax.set_xlabel("turn")
        ax.set_ylabel("mean TTFT (ms)")
        ax.set_title(f"{conv.capitalize()}: time to first token by turn")
        ax.grid(True, alpha=0.3)
        ax.legend()
        p = out_dir / f"{conv}_ttft_by_turn.png"
        fig.tight_layout()
        fig.savefig(p, dpi=110)
        plt.close(fig)
        paths.append(p)
    return paths
