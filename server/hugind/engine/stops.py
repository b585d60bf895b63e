"""Stop strings across token boundaries, and UTF-8-safe incremental detokenization."""

from __future__ import annotations

import codecs


class _StopMatcher:
    """One stop string's KMP automaton, fed one character at a time.

    ``state`` is the length of the longest prefix of the stop that ends the text seen so far,
    so the work per character is amortized O(1) however long the stop or the text.
    """

    __slots__ = ("_fail", "state", "stop")

    def __init__(self, stop: str) -> None:
        self.stop = stop
        self.state = 0
        fail = [0] * (len(stop) + 1)
        k = 0
        for i in range(1, len(stop)):
            while k and stop[i] != stop[k]:
                k = fail[k]
            if stop[i] == stop[k]:
                k += 1
            fail[i + 1] = k
        self._fail = fail

    def feed(self, ch: str) -> bool:
        """Advance by ``ch``; True when the whole stop string now ends the text."""
        stop, k = self.stop, self.state
        while k and stop[k] != ch:
            k = self._fail[k]
        if stop[k] == ch:
            k += 1
        self.state = k
        return k == len(stop)


class TextStream:
    """Turns token byte pieces into text, holding back anything a stop string might start.

    ``push(piece)`` returns the text that is now safe to emit and whether a stop string was hit
    (the stop text and anything after it are never returned). ``flush()`` returns what is held
    back once generation ends for another reason.

    Matching is linear: each character advances one KMP automaton per stop, and the held text is
    only the tail a stop could still start in (at most the longest stop's length).
    """

    def __init__(self, stops: list[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._matchers = [_StopMatcher(s) for s in dict.fromkeys(s for s in stops if s)]
        self._held = ""  # text not yet emitted; it starts at absolute offset self._base
        self._base = 0
        self._seen = 0  # characters fed to the matchers
        self._cut = -1  # absolute offset of the earliest completed stop, if any
        self._cut_by: str | None = None  # that stop
        self.stopped = False

    @property
    def matching(self) -> bool:
        """Whether there are stop strings to match (else the text never ends a sequence)."""
        return bool(self._matchers)

    @property
    def matched(self) -> str | None:
        """The stop string the text was cut at, once ``stopped``."""
        return self._cut_by if self.stopped else None

    @property
    def held(self) -> str:
        """The text held back (never longer than the longest stop string)."""
        return self._held

    def push(self, piece: bytes) -> str:
        if self.stopped:
            return ""
        return self._release(self._decoder.decode(piece))

    def _release(self, text: str) -> str:
        if not self._matchers:
            return text
        self._held += text
        for ch in text:
            self._seen += 1
            for m in self._matchers:
                if m.feed(ch):
                    start = self._seen - len(m.stop)
                    if self._cut < 0 or start < self._cut:
                        self._cut, self._cut_by = start, m.stop
                    m.state = 0  # a later match of this stop starts later: never the cut
            if self._cut >= 0 and self._open_from() >= self._cut:
                return self._stop()
        safe = self._open_from() if self._cut < 0 else min(self._cut, self._open_from())
        return self._take(safe)

    def _open_from(self) -> int:
        """Absolute offset where the earliest stop that is still partly matched starts."""
        return self._seen - max(m.state for m in self._matchers)

    def _take(self, upto: int) -> str:
        n = upto - self._base
        out, self._held = self._held[:n], self._held[n:]
        self._base = upto
        return out

    def _stop(self) -> str:
        self.stopped = True
        out = self._take(self._cut)
        self._held = ""
        return out

    def flush(self) -> str:
        if self.stopped:
            return ""
        out = self._release(self._decoder.decode(b"", final=True))
        if self.stopped:
            return out
        if self._cut >= 0:  # a stop completed; only longer partial stops were pending
            return out + self._stop()
        out += self._held
        self._held = ""
        return out


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Reference behaviour: ``text`` cut at the first occurrence of any stop string."""
    positions = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    if not positions:
        return text, False
    return text[: min(positions)], True
