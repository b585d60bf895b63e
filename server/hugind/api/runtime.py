"""What every handler needs from the app: the engine, the provider forwarder, helpers."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import msgspec
from litestar import MediaType, Request, Response

from hugind.api.protocol import MAX_DEPTH, nesting_depth
from hugind.engine.interface import Engine
from hugind.errors import ModelNotFoundError

Forwarder = Callable[[Request, str], Awaitable[Any]]
_encode = msgspec.json.Encoder().encode


class _ModelOnly(msgspec.Struct, forbid_unknown_fields=False):
    model: Any = None


_decode_model = msgspec.json.Decoder(_ModelOnly).decode


@dataclass
class Runtime:
    engine: Engine
    forwarder: Forwarder | None = None
    remote_models: Callable[[], list[tuple[str, str]]] | None = None
    fingerprint: str = "hugind"
    draining: bool = False  # shutting down: readiness and new requests answer 503
    in_flight: int = 0  # HTTP requests being answered, probes aside (api/draining.py)

    @staticmethod
    def of(request: Request) -> Runtime:
        return request.app.state.runtime  # type: ignore[no-any-return]

    def is_local(self, model: str) -> bool:
        return self.engine.resolve_model(model) is not None

    async def local(self, model: str) -> bool:
        """Whether ``model`` is served here; if so, it is loaded (or failed) on return."""
        if not self.is_local(model):
            return False
        await self.engine.ensure_loaded(model)
        return True

    def remote_model(self, body: bytes) -> str | None:
        """The body's ``model`` when it names no local model and providers are configured.

        Checked before the body is validated against Hugind's own schema, so a provider sees
        exactly what the client sent, fields Hugind does not know or bound included.
        """
        if self.forwarder is None or nesting_depth(body) > MAX_DEPTH:
            return None  # too deep to decode here: the local decoder answers 400
        try:
            model = _decode_model(body).model
        except (msgspec.DecodeError, ValueError):  # not JSON, or not UTF-8: validated later
            return None
        if isinstance(model, str) and model and not self.is_local(model):
            return model
        return None

    async def forward(self, request: Request, model: str) -> Any:
        if self.forwarder is None:
            raise ModelNotFoundError(model)
        return await self.forwarder(request, model)


def json_response(payload: Any, status: int = 200,
                  headers: dict[str, str] | None = None) -> Response[bytes]:
    return Response(content=_encode(payload), status_code=status, media_type=MediaType.JSON,
                    headers=headers)
