"""The one typed config schema, validated at load.

``load_config(path)`` reads YAML, expands ``${ENV}`` references, and converts the result into
frozen msgspec Structs. Every failure is a :class:`ConfigError` whose message names the YAML key
path (``models[1].n_ctx: expected int >= 256, got "big"``). Unknown keys are errors.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any, Literal

import msgspec
import yaml
from msgspec import Meta, Struct

DEFAULT_CONFIG = "config/default.yaml"

Device = Literal["auto", "cpu", "cuda", "metal"]
CacheType = Literal["f32", "f16", "bf16", "q8_0", "q4_0", "q4_1", "iq4_nl", "q5_0", "q5_1"]
Pooling = Literal["none", "mean", "cls", "last", "rank"]
PositiveInt = Annotated[int, Meta(ge=1)]
NonNegInt = Annotated[int, Meta(ge=0)]
PositiveFloat = Annotated[float, Meta(gt=0)]


class ConfigError(Exception):
    """A config problem; ``str()`` is one line naming the key path."""

    def __init__(self, key_path: str, message: str, *, source: str | None = None) -> None:
        self.key_path = key_path
        self.message = message
        self.source = source
        where = f"{source}: " if source else ""
        key = f"{key_path}: " if key_path else ""
        super().__init__(f"{where}{key}{message}")


class Base(Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    pass


class RateLimitConfig(Base):
    """Per-API-key limits (``server.rate_limits``, or one key's ``rate_limits`` override).

    Each key (and, without keys, the one anonymous tenant) has its own windows. In a key's
    override a field left unset takes the ``server.rate_limits`` value; unset everywhere means
    no limit (``max_wait_s``: 0, answer 429 at once).
    """

    requests_per_minute: PositiveInt | None = None
    # Prompt + completion tokens, counted once an answer is done; a request is refused while
    # its key's window is spent (one request may overshoot it, as at OpenAI).
    tokens_per_minute: PositiveInt | None = None
    # Over a limit: wait for the window up to this long instead of answering 429 at once.
    max_wait_s: Annotated[float, Meta(ge=0, le=600)] | None = None
    # Sequences one key may have queued or running at once (a request's n choices count n).
    max_concurrent: PositiveInt | None = None


class ApiKeyConfig(Base):
    """An ``api_keys`` entry written as a mapping, to give one key its own limits."""

    key: str
    rate_limits: RateLimitConfig | None = None


#: A browser origin as ``server.cors_origins`` takes it: no path, query or spaces.
_ORIGIN_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://(?:\[[0-9A-Fa-f:.]+\]|[^/?#\s:\[\]]+)"
                        r"(?::(?:[0-9]{1,5}|\*))?/?")
#: Origins a browser page may call from by default (as Ollama): local pages only.
DEFAULT_CORS_ORIGINS = ["http://localhost:*", "http://127.0.0.1:*"]


class ServerConfig(Base):
    host: str = "127.0.0.1"
    port: Annotated[int, Meta(ge=0, le=65535)] = 8080
    # Client keys; empty (and no files): no auth, and `hugind serve` binds loopback only
    # unless --insecure. SIGHUP re-reads keys, admin keys, limits and providers.
    api_keys: list[str | ApiKeyConfig] = []
    api_key_files: list[str] = []  # one key per line; Docker secrets, Kubernetes Secrets
    # Keys for /admin/*, /metrics and /v1/sessions/stats; never valid as client keys (nor the
    # reverse). With neither client nor admin keys (a loopback dev box) admin is open to all;
    # with client keys but no admin keys, admin endpoints answer 403 until these are set.
    admin_keys: list[str] = []
    admin_key_files: list[str] = []
    # Browser origins besides the local defaults (http://localhost:* and http://127.0.0.1:*,
    # any port or none), as Ollama's OLLAMA_ORIGINS: exact origins, `scheme://host:*` for any
    # port, or ["*"] for all.
    cors_origins: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_CORS_ORIGINS))
    max_body_bytes: Annotated[int, Meta(ge=1024)] = 10 * 1024 * 1024
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    log_format: Literal["auto", "text", "json"] = "auto"  # auto: text on a terminal
    log_prompts: bool = False
    metrics_public: bool = False
    metrics: bool = True  # false: no /metrics and no series kept (the bench's baseline)
    rate_limits: RateLimitConfig = RateLimitConfig()
    request_timeout_s: Annotated[float, Meta(ge=0)] = 0.0  # 0: no cap
    shutdown_grace_s: Annotated[float, Meta(ge=0, le=3600)] = 30.0
    load_timeout_s: Annotated[float, Meta(gt=0)] = 600.0
    max_loaded_models: PositiveInt | None = None
    # Encrypts provider keys added through the admin API (Fernet, stored under state_dir);
    # typically ${HUGIND_SECRET_KEY}. Unset: adding keys is refused.
    secret_key: str | None = None
    # Where runtime provider keys and the activity log are kept (default: sessions.dir).
    state_dir: str | None = None

    def __post_init__(self) -> None:
        if self.secret_key is not None and len(self.secret_key.strip()) < 16:
            raise ValueError("secret_key: must hold at least 16 characters (is its environment "
                             "variable set?)")
        for i, entry in enumerate(self.api_keys):
            key = entry if isinstance(entry, str) else entry.key
            where = f"api_keys[{i}]" if isinstance(entry, str) else f"api_keys[{i}].key"
            if not key.strip():
                raise ValueError(f"{where}: is empty (is its environment variable set?)")
        for i, key in enumerate(self.admin_keys):
            if not key.strip():
                raise ValueError(f"admin_keys[{i}]: is empty (is its environment variable set?)")
        for i, origin in enumerate(self.cors_origins):
            if origin != "*" and not _ORIGIN_RE.fullmatch(origin):
                raise ValueError(f"cors_origins[{i}]: '{origin[:80]}' is not an origin "
                                 "(scheme://host, scheme://host:port, scheme://host:* or *)")

    def client_keys(self) -> list[tuple[str, RateLimitConfig | None]]:
        """Every client key (``api_keys`` then ``api_key_files``) with its own limits, if any.

        Raises:
            ConfigError: a key file cannot be read or holds no key.
        """
        keys = [(e, None) if isinstance(e, str) else (e.key, e.rate_limits)
                for e in self.api_keys]
        for i, name in enumerate(self.api_key_files):
            keys += [(k, None) for k in read_key_file(name, f"server.api_key_files[{i}]")]
        return keys

    def all_admin_keys(self) -> list[str]:
        keys = list(self.admin_keys)
        for i, name in enumerate(self.admin_key_files):
            keys += read_key_file(name, f"server.admin_key_files[{i}]")
        return keys


class HFSource(Base):
    repo: str
    file: str
    revision: str = "main"


class ModelConfig(Base):
    id: Annotated[str, Meta(min_length=1)]
    aliases: list[str] = []
    path: str | None = None
    hf: HFSource | None = None
    package: str | None = None
    device: Device = "auto"
    n_gpu_layers: int | None = None
    main_gpu: NonNegInt = 0
    tensor_split: list[float] | None = None
    n_ctx: Annotated[int, Meta(ge=256)] = 4096
    n_batch: Annotated[int, Meta(ge=32)] = 512  # >= 2 prefill quanta (engine/worker.py)
    n_ubatch: Annotated[int, Meta(ge=1)] | None = None
    threads: PositiveInt | None = None
    threads_batch: PositiveInt | None = None
    flash_attn: bool | None = None
    cache_type_k: CacheType = "f16"
    cache_type_v: CacheType = "f16"
    chat_template: str | None = None
    embedding: bool = False
    pooling: Pooling | None = None
    parallel: Annotated[int, Meta(ge=1, le=256)] = 4
    max_queue: NonNegInt = 64
    queue_timeout_s: Annotated[float, Meta(ge=0)] = 600.0  # 0: wait as long as it takes
    # An idle model takes the requests that arrive within this long of each other before it
    # reads any prompt, so a burst's streams start on one step (engine/worker.py). 0: off.
    burst_wait_ms: Annotated[float, Meta(ge=0, le=100)] = 3.0
    swa_full: bool = True
    batch_invariant: bool = False
    seed: int | None = None
    max_tokens: PositiveInt | None = None
    preload: bool = True  # false: loaded by the first request that names it
    ttl_s: NonNegInt = 0  # unloaded after this long idle; 0: never

    def __post_init__(self) -> None:
        sources = [s for s in ("path", "hf", "package") if getattr(self, s) is not None]
        if len(sources) != 1:
            raise ValueError(
                "needs exactly one source: `path`, `hf` or `package`"
                + (f" (got {', '.join(sources)})" if sources else "")
            )
        if self.batch_invariant and self.flash_attn:
            raise ValueError("batch_invariant needs flash_attn off: with flash attention a lone "
                             "decode row over 512+ cached tokens takes another kernel")
        if self.parallel > self.n_batch - 16:
            raise ValueError(f"parallel ({self.parallel}) must leave 16 tokens of n_batch "
                             f"({self.n_batch}) for prompts: at most {self.n_batch - 16}")
        if self.device == "cpu" and self.n_gpu_layers:
            raise ValueError("n_gpu_layers must be 0 or unset when device is cpu")

    @property
    def names(self) -> list[str]:
        return [self.id, *self.aliases]


class SessionsConfig(Base):
    enabled: bool = True
    dir: str = "sessions"
    ram_budget_mb: NonNegInt = 1024
    disk_budget_mb: NonNegInt = 8192
    ttl_s: PositiveInt = 7 * 24 * 3600
    # Write-behind: each finished turn reaches disk within this many seconds, so a crash
    # loses at most that much. 0: sessions reach disk only when they leave RAM or at shutdown.
    flush_s: Annotated[float, Meta(ge=0, le=3600)] = 2.0
    # PUT /v1/sessions/{name} (an export file) may be this large; other bodies keep
    # server.max_body_bytes. A file larger than disk_budget_mb is refused too (it never fits).
    max_import_mb: PositiveInt = 1024
    # Stored /v1/responses objects (``<dir>/responses/``): at most this many, oldest dropped
    # first, each kept this long (None: ``ttl_s``, as long as the conversation's KV).
    responses_max: PositiveInt = 10000
    responses_ttl_s: PositiveInt | None = None
    # Several replicas share ``dir`` (a ReadWriteMany volume): each turn is saved there with a
    # version, any replica continues any conversation from the newest one, and budgets and
    # TTL hold for the directory as a whole. Needs write-behind (flush_s above 0).
    shared: bool = False
    # This replica's name in the versions it writes (default: host name and process id).
    replica_id: str | None = None

    def __post_init__(self) -> None:
        if self.shared and self.flush_s <= 0:
            raise ValueError("shared: needs flush_s above 0 (each turn must reach the shared "
                             "directory for the other replicas to see it)")

    @property
    def response_ttl_s(self) -> int:
        return self.responses_ttl_s if self.responses_ttl_s is not None else self.ttl_s


class TimeoutConfig(Base):
    connect_s: PositiveFloat = 10.0
    read_s: PositiveFloat = 600.0


_NATIVE_ENDPOINTS = frozenset({"chat/completions", "completions", "embeddings"})
_HEADER_RE = re.compile(r"[a-z0-9][a-z0-9-]*")
#: Hugind's own credentials (and headers every request has) cannot carry a provider key.
_RESERVED_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "cookie", "host"})


class ProviderConfig(Base):
    name: Annotated[str, Meta(min_length=1)]
    base_url: Annotated[str, Meta(pattern=r"^https?://")]
    api_keys: list[str] = []
    api_key_files: list[str] = []
    headers: dict[str, str] = {}
    models: list[str] = []
    endpoints: list[str] | None = None
    timeout: TimeoutConfig = TimeoutConfig()
    max_retries: NonNegInt = 2
    cooldown_s: Annotated[float, Meta(ge=0)] = 60.0
    backoff_s: Annotated[float, Meta(ge=0, le=60)] = 0.25
    backoff_max_s: Annotated[float, Meta(ge=0, le=600)] = 2.0
    retry_reads: bool = False
    breaker_failures: PositiveInt | None = None
    breaker_open_s: Annotated[float, Meta(ge=0)] = 10.0
    # A request header (e.g. X-OpenAI-API-Key) whose value, when a request carries it, is
    # tried first as this provider's key for that request only; never forwarded or kept.
    client_key_header: str | None = None

    def __post_init__(self) -> None:
        if self.client_key_header is not None:
            header = self.client_key_header.lower()
            if not _HEADER_RE.fullmatch(header) or header in _RESERVED_HEADERS:
                raise ValueError(f"client_key_header: '{self.client_key_header[:80]}' must be "
                                 "a header name other than Authorization, X-Api-Key, Api-Key, "
                                 "Cookie and Host")
        rest = self.base_url.split("://", 1)[1]
        if "?" in rest or "#" in rest or re.search(r"(^|/)\.\.?(/|$)", rest):
            raise ValueError("base_url: must not hold a query, a fragment or '.'/'..' segments")
        if self.backoff_max_s < self.backoff_s:
            raise ValueError(f"backoff_max_s: {self.backoff_max_s:g} is below backoff_s "
                             f"({self.backoff_s:g})")
        for i, key in enumerate(self.api_keys):
            if not key.strip():
                raise ValueError(f"api_keys[{i}]: is empty (is its environment variable set?)")
        for i, pattern in enumerate(self.models):
            if not pattern.strip("/ "):
                raise ValueError(f"models[{i}]: is empty")
        for i, endpoint in enumerate(self.endpoints or []):
            path = endpoint.strip("/")
            path = path[3:] if path.startswith("v1/") else path
            if path in _NATIVE_ENDPOINTS:
                raise ValueError(f"endpoints[{i}]: '{endpoint}' is served natively; route its "
                                 "models to this provider with `models` (e.g. '*')")

    def all_api_keys(self) -> list[str]:
        """Keys from ``api_keys`` then from each file in ``api_key_files``, in order.

        Raises:
            ConfigError: a key file cannot be read or holds no key (``api_key_files[i]``).
        """
        keys = list(self.api_keys)
        for i, name in enumerate(self.api_key_files):
            keys.extend(read_key_file(name, f"api_key_files[{i}]"))
        return keys


def read_key_file(name: str, key_path: str) -> list[str]:
    """The keys in a key file: one per line; blank lines and ``#`` comments are skipped.

    Raises:
        ConfigError: the file cannot be read, or holds no key. The message names the file and
            ``key_path``, never a line of the file.
    """
    path = Path(name).expanduser()
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(key_path, f"cannot read key file {str(path)!r}: "
                          f"{exc.strerror or type(exc).__name__}") from None
    except UnicodeDecodeError:
        raise ConfigError(key_path, f"key file {str(path)!r} is not UTF-8 text") from None
    keys = [s for line in text.splitlines() if (s := line.strip()) and not s.startswith("#")]
    if not keys:
        raise ConfigError(key_path, f"key file {str(path)!r} holds no key")
    return keys


class Config(Base):
    server: ServerConfig = ServerConfig()
    models: list[ModelConfig] = []
    sessions: SessionsConfig = SessionsConfig()
    providers: list[ProviderConfig] = []
    models_dir: str = "models"

    def __post_init__(self) -> None:
        seen: dict[str, int] = {}
        for i, model in enumerate(self.models):
            for name in model.names:
                if name in seen:
                    raise ValueError(
                        f"models[{i}]: name '{name}' is already used by models[{seen[name]}]"
                    )
                seen[name] = i
        names = [p.name for p in self.providers]
        for i, name in enumerate(names):
            if name in names[:i]:
                raise ValueError(f"providers[{i}].name: '{name}' is used twice")

    def find_model(self, name: str) -> ModelConfig | None:
        for model in self.models:
            if name in model.names:
                return model
        return None


_ENV_RE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def _expand_env(node: Any, path: str) -> Any:
    if isinstance(node, str):
        def sub(match: re.Match[str]) -> str:
            name, default = match.group(1), match.group(2)
            value = os.environ.get(name)
            if value is None:
                if default is None:
                    raise ConfigError(path, f"environment variable {name} is not set")
                return default
            return value

        return _ENV_RE.sub(sub, node)
    if isinstance(node, dict):
        return {k: _expand_env(v, _join(path, str(k))) for k, v in node.items()}
    if isinstance(node, list):
        return [_expand_env(v, f"{path}[{i}]") for i, v in enumerate(node)]
    return node


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


_AT_RE = re.compile(r" - at `\$(.*)`$")
#: A ``__post_init__`` message that starts with the key it is about (``endpoints[0]: ...``).
_KEY_PREFIX_RE = re.compile(r"^([A-Za-z_]\w*(?:\[\d+\])*(?:\.[A-Za-z_]\w*(?:\[\d+\])*)*): (.+)$",
                            re.DOTALL)
#: Keys whose values are credentials: a wrong value is never echoed back in a message.
_SECRET_KEY_RE = re.compile(
    r"(?:^|\.)(?:api_keys|admin_keys|headers|key|secret_key)(?:\[|\.|$)")


def _value_at(data: Any, key_path: str) -> Any:
    node = data
    for part in re.findall(r"\.([^.\[]+)|\[(\d+)\]", key_path):
        key, index = part
        try:
            node = node[int(index)] if index else node[key]
        except (KeyError, IndexError, TypeError):
            return None
    return node


def _validation_error(exc: msgspec.ValidationError, data: Any) -> ConfigError:
    text = str(exc)
    match = _AT_RE.search(text)
    raw_path = match.group(1) if match else ""
    message = text[: match.start()] if match else text
    missing = re.match(r"Object missing required field `([^`]+)`", message)
    unknown = re.match(r"Object contains unknown field `([^`]+)`", message)
    key_path = raw_path.lstrip(".")
    if missing:
        key_path = _join(key_path, missing.group(1))
        message = "is required"
    elif unknown:
        key_path = _join(key_path, unknown.group(1))
        message = "unknown key"
    else:
        message = message[0].lower() + message[1:] if message else message
        message = message.replace("`", "")
        value = _value_at(data, raw_path)
        if _SECRET_KEY_RE.search(key_path):
            pass  # msgspec names only the type; the value may be a key
        elif value is not None and not isinstance(value, (dict, list)):
            message = re.sub(r", got \w+$", "", message) + f", got {value!r}"
        prefixed = _KEY_PREFIX_RE.match(message)
        if prefixed:
            key_path, message = _join(key_path, prefixed.group(1)), prefixed.group(2)
    return ConfigError(key_path, message)


def parse_config(data: Any, *, source: str | None = None) -> Config:
    """Validate an already-parsed mapping (tests build configs this way)."""
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError("", f"the top level must be a mapping, got {type(data).__name__}",
                          source=source)
    try:
        data = _expand_env(data, "")
        return msgspec.convert(data, Config, strict=True)
    except ConfigError as exc:
        exc.source = source
        raise ConfigError(exc.key_path, exc.message, source=source) from None
    except msgspec.ValidationError as exc:
        err = _validation_error(exc, data)
        raise ConfigError(err.key_path, err.message, source=source) from None


def load_config(path: str | Path) -> Config:
    """Read, expand and validate a YAML config file."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError("", f"cannot read config file: {exc.strerror}", source=str(p)) from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError("", f"invalid YAML{where}: {problem}", source=str(p)) from None
    config = parse_config(data, source=str(p))
    base = p.resolve().parent
    config = _resolve_paths(config, base)
    _check_key_files(config, source=str(p))
    return config


def _check_key_files(config: Config, *, source: str) -> None:
    """Every ``api_key_files`` entry must be readable and hold at least one key."""
    try:
        config.server.client_keys()
        config.server.all_admin_keys()
    except ConfigError as exc:
        raise ConfigError(exc.key_path, exc.message, source=source) from None
    for i, provider in enumerate(config.providers):
        for j, name in enumerate(provider.api_key_files):
            try:
                read_key_file(name, f"providers[{i}].api_key_files[{j}]")
            except ConfigError as exc:
                raise ConfigError(exc.key_path, exc.message, source=source) from None


def _resolve(name: str, base: Path) -> str:
    """A relative path is relative to the config file's directory, else to the working one."""
    if Path(name).expanduser().is_absolute():
        return name
    candidate = (base / name).resolve()
    if not candidate.exists() and Path(name).exists():
        candidate = Path(name).resolve()
    return str(candidate)


def _resolve_paths(config: Config, base: Path) -> Config:
    """Relative model paths and key files are relative to the config file's directory (or,
    when nothing is there, to the working directory)."""
    models = []
    for model in config.models:
        if model.path is not None:
            model = msgspec.structs.replace(model, path=_resolve(model.path, base))
        models.append(model)
    providers = [
        msgspec.structs.replace(p, api_key_files=[_resolve(f, base) for f in p.api_key_files])
        if p.api_key_files else p
        for p in config.providers
    ]
    server = msgspec.structs.replace(
        config.server,
        api_key_files=[_resolve(f, base) for f in config.server.api_key_files],
        admin_key_files=[_resolve(f, base) for f in config.server.admin_key_files])
    return msgspec.structs.replace(config, server=server, models=models, providers=providers)
