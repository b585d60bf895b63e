"""``X-Session-Id`` on the responses of requests that continue a session, whichever field
named it, so a client can send it back as the header a balancer hashes on (nginx:
``hash $http_x_session_id consistent``; see deploy/nginx)."""

from __future__ import annotations

from typing import Any

from hugind.api.state_headers import header_from_state, note

SESSION_HEADER = "X-Session-Id"
_SCOPE_KEY = "hugind_session"


def note_session(connection: Any, name: str | None) -> None:
    """Remember the session a request continues, when it can travel as a header value
    (printable ASCII: a name in other characters is sent by the client in the body only)."""
    if name and name.isascii() and name.isprintable():
        note(connection, _SCOPE_KEY, name)


# ``before_send``: the session's name on the response, streamed or not.
add_session_header = header_from_state(_SCOPE_KEY, SESSION_HEADER, str)
