"""``hugind serve | check | models | bench``. A config error prints one line and exits 2."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from hugind import __version__
from hugind.config import DEFAULT_CONFIG, Config, ConfigError, load_config
from hugind.modelstore import ModelSourceError, describe_source, expected_path, resolve

EXIT_CONFIG = 2


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="hugind", description="Serve GGUF models over the "
                                "OpenAI API, with per-user KV sessions and remote providers.")
    p.add_argument("--version", action="version", version=f"hugind {__version__}")
    sub = p.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve", help="load the configured models and serve the API")
    serve.add_argument("config", nargs="?", default=DEFAULT_CONFIG,
                       help=f"YAML config (default: {DEFAULT_CONFIG})")
    serve.add_argument("--host", help="override server.host")
    serve.add_argument("--port", type=int, help="override server.port")
    serve.add_argument("--log-level", choices=["debug", "info", "warning", "error"])
    serve.add_argument("--insecure", action="store_true",
                       help="serve a non-loopback host even without API keys (an open API)")
    check = sub.add_parser("check", help="validate a config and print the resolved models")
    check.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    models = sub.add_parser("models", help="list the configured models and their files")
    models.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    pull = sub.add_parser("pull", help="download every hf: model the config names, ahead of "
                          "time (resumable)")
    pull.add_argument("config", nargs="?", default=DEFAULT_CONFIG)
    # Listed for `hugind --help`; main() hands `bench ...` to bench/cli.py before parsing.
    sub.add_parser("bench", help="benchmark OpenAI-compatible servers (see bench/)",
                   add_help=False)
    return p


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    if argv[:1] == ["bench"]:
        # Handed over before parsing: argparse's REMAINDER refuses a first argument that looks
        # like an option (`hugind bench --help`), and bench/cli.py has its own parser and help.
        return _bench(argv[1:])
    args = _parser().parse_args(argv)
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"hugind: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    if args.command == "check":
        return _check(config, args.config)
    if args.command == "models":
        return _models(config, args.config)
    if args.command == "pull":
        return _pull(config, args.config)
    return _serve(config, args)


def _models_dir(config: Config, path: str) -> Path:
    return (Path.cwd() / config.models_dir).resolve()


def _check(config: Config, path: str) -> int:
    print(f"{path}: OK")
    print(f"server: {config.server.host}:{config.server.port}, "
          f"auth {'on' if config.server.client_keys() else 'off'}"
          f" ({len(config.server.client_keys())} keys, "
          f"{len(config.server.all_admin_keys())} admin keys)")
    for m in config.models:
        kind = "embeddings" if m.embedding else "generate"
        aliases = f" (aliases: {', '.join(m.aliases)})" if m.aliases else ""
        print(f"model {m.id}{aliases}: {kind}, {describe_source(m)}, device {m.device}, "
              f"n_ctx {m.n_ctx}, parallel {m.parallel}")
    for p in config.providers:
        # Keys are counted, never shown; load_config has already read every key file.
        n_keys = len(p.all_api_keys())
        endpoints = ", ".join(p.endpoints) if p.endpoints is not None else "all non-native"
        print(f"provider {p.name}: {p.base_url}, {n_keys} key(s) "
              f"({len(p.api_key_files)} key file(s)), models [{', '.join(p.models)}], "
              f"endpoints [{endpoints}], timeout connect {p.timeout.connect_s:g}s "
              f"read {p.timeout.read_s:g}s, max_retries {p.max_retries}, "
              f"cooldown {p.cooldown_s:g}s")
    return 0


def _models(config: Config, path: str) -> int:
    models_dir = _models_dir(config, path)
    for m in config.models:
        where = expected_path(m, models_dir)
        if where is None:
            where_s = f"assembled from package {m.package} into {models_dir}"
        else:
            where_s = f"{where} ({'present' if where.exists() else 'missing'})"
        print(f"{m.id}\t{'embed' if m.embedding else 'generate'}\t{where_s}")
    return 0


def _pull(config: Config, path: str) -> int:
    """Fetch each ``hf:`` model into the store; an interrupted download resumes next time."""
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    logging.getLogger("httpx").setLevel(logging.WARNING)  # a line per HTTP request otherwise
    models_dir = _models_dir(config, path)
    failed = 0
    for m in config.models:
        if m.hf is None:
            print(f"{m.id}: {describe_source(m)}, nothing to download")
            continue
        try:
            where = resolve(m, models_dir)
        except ModelSourceError as exc:
            print(f"hugind: {m.id}: {exc}", file=sys.stderr)
            failed += 1
            continue
        print(f"{m.id}: {where} ({where.stat().st_size / 1e6:.1f} MB)")
    return 1 if failed else 0


def _serve(config: Config, args: argparse.Namespace) -> int:
    from hugind.app import create_app
    from hugind.logs import setup_logging
    from hugind.serve import serve

    if (refusal := _open_bind_refusal(config, args)) is not None:
        print(f"hugind: {refusal}", file=sys.stderr)
        return EXIT_CONFIG
    level = (args.log_level or config.server.log_level).upper()
    setup_logging(level, config.server.log_format)
    host = args.host or config.server.host
    port = args.port if args.port is not None else config.server.port
    try:
        app = create_app(config, config_path=Path(args.config))
    except ConfigError as exc:  # a key file that went away since the config was loaded
        print(f"hugind: config error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    serve(app, host=host, port=port, log_level=level.lower(),
          grace_s=config.server.shutdown_grace_s)
    return 0


def _bench(argv: list[str]) -> int:
    # The harness is not part of the installed package: it is found in the source tree the
    # command runs in (the console script's sys.path starts at its own bin/, not there).
    root = Path.cwd()
    if (root / "bench" / "cli.py").is_file() and str(root) not in sys.path:
        sys.path.insert(0, str(root))
    try:
        from bench.cli import main as bench_main
    except ImportError:
        print("hugind: the bench harness lives in bench/ of the source tree; run it from the "
              "repository root", file=sys.stderr)
        return EXIT_CONFIG
    return int(bench_main(argv))


def _open_bind_refusal(config: Config, args: argparse.Namespace) -> str | None:
    from hugind.exposure import open_bind_error

    try:
        return open_bind_error(args.host or config.server.host, config, insecure=args.insecure)
    except ConfigError as exc:
        return f"config error: {exc}"
