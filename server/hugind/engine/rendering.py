"""Token events whose text is made beside the step, by the outbox's publisher thread.

A sequence without stop strings never needs its text to decide what comes next (its end of
generation, ``max_tokens`` and the context are counted in tokens), so the worker hands on a
token's bytes in a :class:`Draft` and the publisher turns them into text (UTF-8 across token
boundaries, in the job's ``TextStream``) while the next ``llama_decode`` runs. A sequence with
stop strings is matched on the worker: a stop must end it before its next token is decoded.

Threading contract: a job's ``TextStream`` belongs to the worker when the request has stop
strings, and to the publisher thread otherwise (``TextStream.matching`` says which; it never
changes). Drafts of one job are rendered in the order the worker made them.
"""

from __future__ import annotations

from hugind.engine.stops import TextStream
from hugind.engine.types import FinishReason, TokenEvent, TokenLogprob, Usage


class Draft:
    """A token (or a sequence's end) whose text is still bytes."""

    __slots__ = ("finish_reason", "logprobs", "piece", "tokens", "usage")

    def __init__(self, piece: bytes | None, tokens: list[int], logprobs: list[TokenLogprob],
                 finish_reason: FinishReason | None = None, usage: Usage | None = None) -> None:
        self.piece = piece
        self.tokens = tokens
        self.logprobs = logprobs
        self.finish_reason = finish_reason
        self.usage = usage

    def render(self, text: TextStream) -> TokenEvent:
        """The event, its text taken from ``text`` (flushed on a sequence's last event)."""
        out = text.push(self.piece) if self.piece is not None else ""
        if self.finish_reason is not None:
            out += text.flush()
        return TokenEvent(out, self.tokens, self.logprobs, finish_reason=self.finish_reason,
                          usage=self.usage)
