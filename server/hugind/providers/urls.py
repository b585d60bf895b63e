"""Upstream URLs that never leave a provider's ``base_url``.

A provider's key goes to every URL built here, so a forwarded path must not climb out of the
base URL's path. :func:`check_path` refuses a ``.`` or ``..`` segment however it is written:
raw, percent-encoded (``%2e%2E``), encoded twice or more (``%252e``), behind a backslash or an
encoded slash (``%5c``, ``%2f``: some servers split on them), with Tomcat-style parameters
(``..;x``) or in look-alike dots that NFKC folds to ``.``. :func:`upstream_url` then appends the
path, re-encoded, to the base path and checks the result again: same scheme, host and port, a
path under the base path, and no dot segment in what the upstream will receive.
"""

from __future__ import annotations

import re
import unicodedata
from urllib.parse import unquote

import httpx

from hugind.errors import InvalidRequestError

#: How many rounds of percent-decoding a path may need; beyond that it is refused outright.
MAX_DECODE_ROUNDS = 4
_SEPARATORS = re.compile(r"[/\\]")
# RFC 3986 pchar plus "/" and "%": everything else in a path is percent-encoded before sending.
_PATH_UNSAFE = re.compile(rb"[^A-Za-z0-9\-._~!$&'()*+,;=:@/%]|%(?![0-9A-Fa-f]{2})")
# Query characters (RFC 3986 ``query``); "#" and controls are encoded, never a fragment.
_QUERY_UNSAFE = re.compile(rb"[^A-Za-z0-9\-._~!$&'()*+,;=:@/?%]|%(?![0-9A-Fa-f]{2})")


def _encode(text: str, unsafe: re.Pattern[bytes]) -> bytes:
    raw = text.encode("utf-8", "surrogateescape")
    return unsafe.sub(lambda m: b"".join(b"%%%02X" % b for b in m.group()), raw)


def _fully_decoded(path: str) -> str | None:
    """``path`` percent-decoded until it stops changing, or ``None`` after too many rounds."""
    for _ in range(MAX_DECODE_ROUNDS + 1):
        decoded = unquote(path, errors="surrogateescape")
        if decoded == path:
            return path
        path = decoded
    return None


def path_problem(path: str) -> str | None:
    """Why ``path`` may not be forwarded, or ``None`` when it may.

    Refused: a ``.``/``..`` segment in any spelling (see the module docstring), a path still
    changing after :data:`MAX_DECODE_ROUNDS` rounds of decoding, and one that is not UTF-8
    once decoded (overlong forms such as ``%c0%ae`` read as ``.`` by some servers).
    """
    decoded = _fully_decoded(path)
    if decoded is None:
        return f"it is percent-encoded more than {MAX_DECODE_ROUNDS} times"
    try:
        text = decoded.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError:
        return "it is not UTF-8 once percent-decoded"
    for segment in _SEPARATORS.split(unicodedata.normalize("NFKC", text)):
        bare = segment.split(";", 1)[0].strip()
        if bare in (".", ".."):
            return f"it holds a {bare!r} segment"
    return None


def check_path(path: str) -> None:
    """Refuse a forwarded path that could resolve outside the provider's base URL.

    Args:
        path: the path as received, percent-encoding intact.

    Raises:
        InvalidRequestError: see :func:`path_problem` (400, ``code="invalid_path"``).
    """
    problem = path_problem(path)
    if problem is not None:
        raise InvalidRequestError(
            f"This path cannot be forwarded: {problem} (path segments '.' and '..' are refused "
            "raw or percent-encoded)", code="invalid_path",
        )


def upstream_url(base_url: httpx.URL, path: str, query: str) -> httpx.URL:
    """``base_url`` plus ``path`` (without any ``/v1``) and ``query``, never outside ``base_url``.

    Args:
        base_url: the provider's base URL (its path includes ``/v1``).
        path: the endpoint path relative to the base, percent-encoding intact.
        query: the raw query string, without ``?``.

    Raises:
        InvalidRequestError: :func:`check_path` refuses the path, or the URL built from it would
            not be under ``base_url`` (never seen for a path that check passes: defence in depth).
    """
    check_path(path)
    base_path = base_url.raw_path.split(b"?", 1)[0].rstrip(b"/")
    raw = base_path + b"/" + _encode(path.lstrip("/"), _PATH_UNSAFE)
    if query:
        raw += b"?" + _encode(query, _QUERY_UNSAFE)
    url = base_url.copy_with(raw_path=raw)
    sent = url.raw_path.split(b"?", 1)[0]
    if (
        (url.scheme, url.host, url.port) != (base_url.scheme, base_url.host, base_url.port)
        or not sent.startswith(base_path + b"/")
        or path_problem(sent.decode("ascii")) is not None
    ):
        raise InvalidRequestError("The forwarded path does not stay under the provider's "
                                  "base URL", code="invalid_path")
    return url
