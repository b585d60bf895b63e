"""Forwarded URLs never leave the provider's base URL, whatever the path holds."""

from __future__ import annotations

import asyncio
import posixpath
import unicodedata
from urllib.parse import unquote

import httpx
import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from tests.unit.providers.mock_upstream import (
    KEY_A,
    Upstream,
    make_router,
    ok,
    provider,
    providers,
)

from hugind.errors import InvalidRequestError
from hugind.providers import ProviderRouter
from hugind.providers.routing import normalize_path
from hugind.providers.urls import check_path, path_problem, upstream_url

BASES = ["http://up.test/v1", "https://up.test:8443/openai/v1", "http://10.0.0.2:8080/a/b/v1/"]


def resolved(raw_path: bytes) -> str:
    """What a lenient upstream could make of ``raw_path``: decoded over and over, backslashes
    read as slashes, dot segments resolved."""
    text = raw_path.decode("ascii")
    for _ in range(8):
        text = unquote(text)
    return posixpath.normpath(text.replace("\\", "/"))


@pytest.mark.parametrize("path", [
    "/v1/../x", "/v1/./x", "/v1/files/..", "/..", "../v1/x", "/v1/%2e%2e/x", "/v1/%2E%2e/x",
    "/v1/.%2E/x", "/v1/%2e/x", "/v1/%252e%252e/x", "/v1/%25252E%25252E/x",
    "/v1/files/..%2fsecret", "/v1/files%2F..%2Fx", "/v1/files\\..\\x", "/v1/files%5c..%5cx",
    "/v1/files%255c..%255cx", "/v1/..;/x", "/v1/%2e%2e;a=b/x", "/v1/\uff0e\uff0e/x",
    "/v1/%EF%BC%8E%EF%BC%8E/x", "/v1/%2525252525252e", "/v1/%c0%ae%c0%ae/x", "/v1/\u2025/x",
])
def test_dot_segments_in_any_spelling_are_a_400(path: str) -> None:
    with pytest.raises(InvalidRequestError) as info:
        check_path(path)
    error = info.value.to_dict()["error"]
    assert (info.value.status, error["type"], error["code"]) == (
        400, "invalid_request_error", "invalid_path")


@pytest.mark.parametrize(("path", "sent"), [
    ("files/file-abc123", "/v1/files/file-abc123"),
    ("files/a..b/.hidden/...", "/v1/files/a..b/.hidden/..."),
    ("files/a%2Fb%3Fc%23d", "/v1/files/a%2Fb%3Fc%23d"),  # stays one segment, no query
    ("files/with space/\u00e9", "/v1/files/with%20space/%C3%A9"),
    ("files/50%", "/v1/files/50%25"),
])
def test_other_paths_are_forwarded_as_sent(path: str, sent: str) -> None:
    url = upstream_url(httpx.URL("http://up.test/v1"), path, "")
    assert url.raw_path == sent.encode()
    assert url.query == b""


def test_the_query_cannot_become_a_fragment_or_change_the_path() -> None:
    url = upstream_url(httpx.URL("http://up.test/v1"), "files", "a=1&b=/../x#frag")
    assert url.raw_path == b"/v1/files?a=1&b=/../x%23frag"
    assert url.fragment == ""


def test_the_router_refuses_before_sending_anything() -> None:
    upstream = Upstream({KEY_A: [ok()]})
    router = make_router(providers(provider("p", [KEY_A], models=["*"])), upstream)

    async def scenario() -> None:
        for path in ("/v1/../v1/files", "/v1/files/%2e%2e/%2e%2e/admin", "/images/..%5c..%5cx"):
            with pytest.raises(InvalidRequestError):
                await router.forward("GET", path, "", [], b"", None)
        await router.aclose()

    asyncio.run(scenario())
    assert upstream.seen == []


def test_an_encoded_slash_is_routed_decoded_and_forwarded_encoded() -> None:
    upstream = Upstream({KEY_A: [ok()]})
    router = ProviderRouter(providers(provider("p", [KEY_A], endpoints=["files"])),
                            transport=httpx.MockTransport(upstream))

    async def scenario() -> None:
        response = await router.forward("GET", "/v1/files%2Ffile-1", "", [], b"", None)
        assert response.status == 200
        await router.aclose()

    asyncio.run(scenario())
    assert upstream.seen[0].url.raw_path == b"/v1/files%2Ffile-1"


PIECES = st.sampled_from([
    ".", "..", "%2e", "%2E", "%252e", "%25", "%2f", "%2F", "%5c", "%5C", "%255c", "/", "\\",
    ";", "v1", "files", "a", "%", "2", "5", "e", "\uff0e", "%EF%BC%8E", "?", "#", " ", "\u00e9",
    "%00", "@", ":",
])
PATHS = st.lists(PIECES, max_size=24).map("".join) | st.text(max_size=40)


@settings(max_examples=600, deadline=None)
@given(base=st.sampled_from(BASES), path=PATHS)
@example(base=BASES[0], path="/v1/%2e%2e/%2e%2e/admin")
@example(base=BASES[1], path="..%5c..%5cx")
@example(base=BASES[2], path="%252e%252e/%252e%252e")
def test_no_forwarded_url_leaves_base_url(base: str, path: str) -> None:
    base_url = httpx.URL(base.rstrip("/"))
    try:
        url = upstream_url(base_url, normalize_path(path), "q=1")
    except InvalidRequestError:
        assert path_problem(path) is not None  # refused only for a stated reason
        return
    prefix = str(base_url).rstrip("/") + "/"
    assert str(url).startswith(prefix)
    assert (url.scheme, url.host, url.port) == (base_url.scheme, base_url.host, base_url.port)
    sent = url.raw_path.split(b"?", 1)[0]
    base_path = base_url.raw_path.decode().rstrip("/")
    assert resolved(sent).startswith(base_path + "/") or resolved(sent) == base_path
    assert url.query == b"q=1"


def _plain(path: str) -> bool:
    return not any(c in unicodedata.normalize("NFKC", path) for c in ".%\\")


@settings(max_examples=300, deadline=None)
@given(path=st.text(max_size=40).filter(_plain))
def test_paths_without_dots_percent_or_backslash_are_never_refused(path: str) -> None:
    url = upstream_url(httpx.URL("http://up.test/v1"), path, "")
    assert url.raw_path.startswith(b"/v1/")
