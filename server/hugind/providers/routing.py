"""Which provider serves a request: model rules and endpoint patterns.

Model rules come from ``ProviderConfig.models``. Each entry is one of:

- an exact id (``gpt-4o``): matches that id only; listed in ``/v1/models``;
- a glob (``gpt-4o*``, ``claude-?``): :func:`fnmatch.fnmatchcase` syntax;
- a prefix ending in ``/`` (``openai/``): matches ``openai/<name>`` and forwards ``<name>``.

Endpoint patterns come from ``ProviderConfig.endpoints`` and are matched against the request path
without its ``/v1`` prefix (``/v1/images/edits`` and ``/images/edits`` both become
``images/edits``). A pattern with glob characters uses fnmatch; a plain one matches itself and
everything under it (``audio`` matches ``audio/speech``). ``None`` means every endpoint that Hugind
does not serve natively.

Precedence for a non-native endpoint (:func:`select`): providers whose model rules match the
request's model come first; among the rest, a provider that names the endpoint explicitly wins
over one that takes it by default (``endpoints`` unset), the most specific pattern first (see
:func:`specificity`), then config order.
"""

from __future__ import annotations

from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Literal

#: Endpoints Hugind answers itself (normalized, without ``/v1``). Requests to these go to a
#: provider only by model; the endpoint patterns never claim them by default.
NATIVE_ENDPOINTS: frozenset[str] = frozenset({"chat/completions", "completions", "embeddings"})

#: First path segments of the OpenAI API, used to decide which bare paths (no ``/v1``) are API
#: calls worth forwarding; anything else on a bare path is a 404, never sent to a paid provider.
OPENAI_RESOURCES: frozenset[str] = frozenset({
    "assistants", "audio", "batches", "chat", "completions", "containers", "conversations",
    "embeddings", "evals", "files", "fine_tuning", "images", "models", "moderations",
    "realtime", "responses", "threads", "uploads", "vector_stores", "videos",
})

_GLOB_CHARS = frozenset("*?[")

RuleKind = Literal["exact", "glob", "prefix"]


def normalize_path(path: str) -> str:
    """``/v1/images/edits`` or ``/images/edits`` -> ``images/edits`` (no slashes at the ends)."""
    path = path.strip("/")
    if path == "v1" or path.startswith("v1/"):
        path = path[3:]
    return path.strip("/")


def is_native_endpoint(path: str) -> bool:
    """Whether Hugind serves ``path`` (any form, with or without ``/v1``) itself."""
    return normalize_path(path) in NATIVE_ENDPOINTS


def is_openai_path(path: str) -> bool:
    """Whether ``path``'s first segment (after an optional ``/v1``) is an OpenAI resource."""
    return normalize_path(path).split("/", 1)[0] in OPENAI_RESOURCES


@dataclass(frozen=True)
class ModelRule:
    """One entry of a provider's ``models`` list."""

    pattern: str
    kind: RuleKind

    @classmethod
    def parse(cls, pattern: str) -> ModelRule:
        """Classify a config entry as exact id, glob or prefix."""
        if _GLOB_CHARS & set(pattern):
            return cls(pattern, "glob")
        if pattern.endswith("/"):
            return cls(pattern, "prefix")
        return cls(pattern, "exact")

    def upstream_name(self, model: str) -> str | None:
        """The id to send upstream if this rule matches ``model``, else ``None``."""
        if self.kind == "exact":
            return model if model == self.pattern else None
        if self.kind == "glob":
            return model if fnmatchcase(model, self.pattern) else None
        if model.startswith(self.pattern) and len(model) > len(self.pattern):
            return model[len(self.pattern):]
        return None


@dataclass(frozen=True)
class Route:
    """The models and endpoints one provider takes.

    Args:
        models: the provider's ``models`` entries, in config order.
        endpoints: endpoint patterns, or ``None`` for every non-native endpoint.
    """

    models: tuple[ModelRule, ...]
    endpoints: tuple[str, ...] | None

    @classmethod
    def from_config(cls, models: list[str], endpoints: list[str] | None) -> Route:
        rules = tuple(ModelRule.parse(m) for m in models)
        patterns = None if endpoints is None else tuple(normalize_path(e) for e in endpoints)
        return cls(rules, patterns)

    def upstream_model(self, model: str) -> str | None:
        """The upstream id for ``model`` (the first matching rule decides), or ``None``."""
        for rule in self.models:
            name = rule.upstream_name(model)
            if name is not None:
                return name
        return None

    def takes_endpoint(self, path: str) -> bool:
        """Whether this provider takes requests to ``path`` regardless of the model."""
        return self.claim(path) is not None

    def claim(self, path: str) -> tuple[int, int] | None:
        """How strongly this provider takes ``path``: ``None`` not at all, ``(0, 0)`` by
        default (``endpoints`` unset), else the :func:`specificity` of its best pattern."""
        norm = normalize_path(path)
        if self.endpoints is None:
            return None if norm in NATIVE_ENDPOINTS else (0, 0)
        ranks = [specificity(norm, p) for p in self.endpoints if _endpoint_matches(norm, p)]
        return max(ranks, default=None)

    def exact_models(self) -> list[str]:
        """Exact model ids, for ``/v1/models`` (globs and prefixes cannot be listed)."""
        return [rule.pattern for rule in self.models if rule.kind == "exact"]


def specificity(path: str, pattern: str) -> tuple[int, int]:
    """The rank of an explicit ``pattern`` that matches ``path``; higher wins.

    An exact path (``images/generations``) beats any pattern; otherwise the pattern with more
    literal characters wins (``images/gen*`` over ``images/*`` over ``images``). Every explicit
    rank is above a default taker's ``(0, 0)``.
    """
    if pattern == path:
        return (2, len(pattern))
    return (1, sum(ch not in _GLOB_CHARS for ch in pattern))


def _endpoint_matches(path: str, pattern: str) -> bool:
    if _GLOB_CHARS & set(pattern):
        return fnmatchcase(path, pattern)
    return path == pattern or path.startswith(pattern + "/")


def select(
    routes: list[Route], path: str, model: str | None
) -> list[tuple[int, str | None]]:
    """Indexes of the providers to try, in order, with the model id each should receive.

    - Native endpoints (chat, completions, embeddings) go only to providers serving ``model``.
    - Other endpoints go to providers taking the endpoint. If the request names a model and some
      of those providers serve it, only those are tried; otherwise all of them are (the upstream
      then decides about a model no rule names). Among those, providers that name the endpoint
      explicitly shut out the ones that take it by default, and are tried most specific claim
      first, then in config order.

    Returns:
        ``(index, upstream_model)`` pairs; ``upstream_model`` is ``None`` when the request has no
        model or the provider takes the endpoint without serving the model.
    """
    if is_native_endpoint(path):
        if model is None:
            return []
        return [(i, name) for i, r in enumerate(routes)
                if (name := r.upstream_model(model)) is not None]
    claims = {i: rank for i, r in enumerate(routes) if (rank := r.claim(path)) is not None}
    if model is not None:
        serving = {i: name for i in claims if (name := routes[i].upstream_model(model)) is not None}
        if serving:
            return [(i, serving[i]) for i in _by_claim({i: claims[i] for i in serving})]
    return [(i, None) for i in _by_claim(claims)]


def _by_claim(claims: dict[int, tuple[int, int]]) -> list[int]:
    """Explicit claims (most specific first, then config order), or else the default takers."""
    explicit = [i for i, rank in claims.items() if rank > (0, 0)]
    if not explicit:
        return sorted(claims)
    return sorted(explicit, key=lambda i: (-claims[i][0], -claims[i][1], i))
