"""A fake llama.cpp context and sampler for unit tests of the scheduler and the worker: each
sequence's KV is the list of tokens decoded into it, and the logits of a row favour the token
after the row's own (``(t + 1) % n_vocab``), so greedy output counts up from the last prompt
token. Faults are injected by setting ``fail_decode`` / ``raise_on_decode`` / ``fail_token``."""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from typing import Any

import numpy as np


class FakeVocab:
    def __init__(self, n_vocab: int = 64, eog: int = 0) -> None:
        self.n_vocab = n_vocab
        self.eog = eog

    def piece(self, token: int, *, special: bool = False) -> bytes:
        return f"<{token}>".encode()

    def is_eog(self, token: int) -> bool:
        return token == self.eog

    def is_valid(self, token: int) -> bool:
        return 0 <= token < self.n_vocab


@dataclass
class FakeParams:
    batch_invariant: bool = False


@dataclass
class FakeContext:
    n_seq: int = 4
    n_vocab: int = 64
    n_ctx_seq: int = 256
    n_batch: int = 512
    n_ubatch: int = 512
    n_threads: int = 1
    min_chunk: int = 16
    can_rewind: bool = True
    params: FakeParams = field(default_factory=FakeParams)
    fail_decode: int = 0  # llama_decode's status for the next decode that has fail_seq in it
    fail_seq: int | None = None
    raise_on_decode: BaseException | None = None  # a fault nobody owns: the worker loop dies
    decode_delay_s: float = 0.0
    closed: bool = False
    decodes: int = 0

    def __post_init__(self) -> None:
        self.vocab = FakeVocab(self.n_vocab)
        self.kv: dict[int, list[int]] = {s: [] for s in range(self.n_seq)}
        self._rows: dict[int, int] = {}  # batch index -> its token, where logits were asked
        self.thread: threading.Thread | None = None

    def _owner(self) -> None:
        me = threading.current_thread()
        if self.thread is None:
            self.thread = me
        assert self.thread is me, "the context was used from two threads"

    def decode(self, tokens: list[int], pos: list[int], seqs: list[int],
               logits: list[bool]) -> int:
        self._owner()
        if self.raise_on_decode is not None:
            exc, self.raise_on_decode = self.raise_on_decode, None
            raise exc
        if self.fail_decode and (self.fail_seq is None or self.fail_seq in seqs):
            rc, self.fail_decode = self.fail_decode, 0
            return rc
        if self.decode_delay_s:
            import time

            time.sleep(self.decode_delay_s)
        self.decodes += 1
        self._rows = {}
        for i, (t, p, s, want) in enumerate(zip(tokens, pos, seqs, logits, strict=True)):
            assert p == len(self.kv[s]), f"seq {s}: position {p}, holds {len(self.kv[s])}"
            self.kv[s].append(t)
            if want:
                self._rows[i] = t
        return 0

    def logits(self, idx: int) -> np.ndarray:
        if idx not in self._rows:
            raise IndexError(f"no logits for batch row {idx}")
        out = np.zeros(self.n_vocab, dtype=np.float32)
        out[(self._rows[idx] + 1) % self.n_vocab] = 10.0
        return out

    def seq_rm(self, seq: int, p0: int, p1: int = -1) -> bool:
        self.kv[seq] = self.kv[seq][:p0] if p0 >= 0 else []
        return True

    def seq_clear(self, seq: int) -> None:
        self.kv[seq] = []

    def state_get(self, seq: int) -> bytes:
        return json.dumps(self.kv[seq]).encode()

    def state_size(self, seq: int) -> int:
        return len(self.state_get(seq))

    def state_set(self, seq: int, data: bytes) -> bool:
        self.kv[seq] = list(json.loads(data))
        return True

    def close(self) -> None:
        self.closed = True


class FakeSampler:
    """Greedy over the fake logits; ``deferred`` ones draw beside the step after ``delay_s``;
    ``fail_after`` tokens, ``sample`` raises."""

    def __init__(self, *, deferred: bool = False, delay_s: float = 0.0,
                 fail_after: int | None = None, ready: bool = False) -> None:
        self._deferred = deferred
        self.ready = ready  # ``prepared``: a deferred sampler drawn inline
        self.delay_s = delay_s
        self.fail_after = fail_after
        self.drawn = 0
        self.calls: list[str] = []  # "prepare" and "draw", in order
        self.closed = False

    @property
    def costly(self) -> bool:
        return False

    @property
    def deferred(self) -> bool:
        return self._deferred

    def sample(self, ctx: FakeContext, idx: int) -> int:
        return self.sample_row(ctx.logits(idx))

    def sample_row(self, logits: np.ndarray) -> int:
        if self.delay_s:
            import time

            time.sleep(self.delay_s)
        if self.fail_after is not None and self.drawn >= self.fail_after:
            raise RuntimeError("sampler fault")
        self.drawn += 1
        self.calls.append("draw")
        return int(np.argmax(logits))

    @property
    def prepared(self) -> bool:
        return self.ready

    def prepare(self, pool: Any) -> None:
        self.calls.append("prepare")

    def close(self) -> None:
        self.closed = True
