"""What each native handler takes and answers, by handler name, for ``/openapi.json``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from hugind.api import protocol as req
from hugind.api import response_types as res
from hugind.api.provider_keys import AddKeyRequest, UpdateKeyRequest
from hugind.api.responses_protocol import ResponseCreateRequest


@dataclass(frozen=True)
class Operation:
    request: type | None = None  # the JSON body's Struct
    response: Any = res.AnyObject  # a Struct, or any type msgspec can describe
    stream: type | None = None  # the Struct of each SSE ``data:`` event, when it can stream
    media_type: str = "application/json"
    tag: str | None = None  # default: the path's first segment after /v1
    answer: str | None = None

    def describe_answer(self) -> str:
        if self.answer:
            return self.answer
        if self.stream is not None:
            return ("the answer; with `stream: true` a text/event-stream of `data:` events, "
                    "each one chunk, ending with `data: [DONE]`")
        return "the answer"

    def types(self) -> list[type]:
        """The Structs this operation names (for the components section)."""
        kinds = (self.request, self.response, self.stream)
        return [k for k in kinds if isinstance(k, type) and issubclass(k, msgspec.Struct)]


_TEXT = "text/plain; version=0.0.4; charset=utf-8"

OPERATIONS: dict[str, Operation] = {
    "chat_completions": Operation(req.ChatCompletionRequest, res.ChatCompletion,
                                  res.ChatCompletionChunk),
    "completions": Operation(req.CompletionRequest, res.Completion, res.Completion),
    "embeddings": Operation(req.EmbeddingRequest, res.CreateEmbeddingResponse),
    "list_models": Operation(response=res.ModelList),
    "get_model": Operation(response=res.Model),
    "tokenize": Operation(req.TokenizeRequest, res.TokenizeResponse, tag="tokenizer"),
    "detokenize": Operation(req.DetokenizeRequest, res.DetokenizeResponse, tag="tokenizer"),
    "render_chat": Operation(req.ChatCompletionRequest, res.ChatRender, tag="tokenizer"),
    "list_sessions": Operation(response=res.SessionList),
    "get_session": Operation(response=res.Session),
    "delete_session": Operation(response=res.SessionDeleted),
    "session_stats": Operation(answer="engine counters per model", tag="admin"),
    "health": Operation(response=res.Health, answer="ready (503 while loading, with the same "
                                                    "body)"),
    "health_live": Operation(response=res.Probe, answer="the process serves HTTP"),
    "health_ready": Operation(response=res.Probe, answer="every preloaded model is ready (503 "
                                                         "with Retry-After otherwise)"),
    "metrics": Operation(response=str, media_type=_TEXT, tag="admin",
                         answer="Prometheus text format"),
    "admin_models": Operation(response=res.AdminModelList),
    "admin_load": Operation(response=res.AdminModel, answer="the model, once loaded"),
    "admin_unload": Operation(response=res.AdminModel, answer="the model, once unloaded"),
    "admin_system": Operation(answer="uptime, CPU, memory, disk of the models and sessions "
                                     "folders, GPU memory"),
    "admin_providers": Operation(answer="providers, key states by fingerprint, failover "
                                        "activity", tag="admin"),
    "admin_keys_list": Operation(answer="the provider's keys by id and fingerprint",
                                 tag="admin"),
    "admin_keys_add": Operation(AddKeyRequest, answer="the added key (never the key itself)",
                                tag="admin"),
    "admin_keys_update": Operation(UpdateKeyRequest, answer="the key", tag="admin"),
    "admin_keys_delete": Operation(answer="the deleted key's id", tag="admin"),
    "admin_keys_delete_runtime": Operation(answer="how many runtime keys were deleted",
                                           tag="admin"),
    "admin_activity": Operation(answer="key and failover actions, oldest first", tag="admin"),
    "openapi_json": Operation(answer="this OpenAPI 3.1 document", tag="meta"),
    "create_response": Operation(ResponseCreateRequest, answer=(
        "the response; with `stream: true` a text/event-stream of typed events (`event:` "
        "and `data:`), ending with response.completed or response.incomplete")),
    "count_input_tokens": Operation(ResponseCreateRequest, answer="the input's token count"),
}
