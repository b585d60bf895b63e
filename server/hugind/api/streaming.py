"""Server-sent events: ``data: {json}\\n\\n`` frames, ``[DONE]``, and mid-stream errors."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import Any

import msgspec
from litestar.response import Stream

from hugind.api.request_id import with_request_id
from hugind.errors import InternalError, OpenAIError

log = logging.getLogger(__name__)

DONE = b"data: [DONE]\n\n"
_encode = msgspec.json.Encoder().encode


def frame(payload: Any) -> bytes:
    return b"data: " + _encode(payload) + b"\n\n"


async def sse_frames(chunks: AsyncIterator[dict[str, Any]]) -> AsyncIterator[bytes]:
    """Frame each chunk; after the first byte an error can only be reported in-band."""
    try:
        async for chunk in chunks:
            yield frame(chunk)
    except OpenAIError as exc:
        yield frame(with_request_id(exc.to_dict()))
    except Exception:
        log.exception("error while streaming")
        yield frame(with_request_id(
            InternalError("The server had an error while streaming.").to_dict()))
    yield DONE


def sse_response(chunks: AsyncIterator[dict[str, Any]]) -> Stream:
    return Stream(
        sse_frames(chunks),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
