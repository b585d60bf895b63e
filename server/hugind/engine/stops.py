"""Stop strings across token boundaries, and UTF-8-safe incremental detokenization."""

from __future__ import annotations

import codecs


class TextStream:
    """Turns token byte pieces into text, holding back anything a stop string might start.

    ``push(piece)`` returns the text that is now safe to emit and whether a stop string was hit
    (the stop text and anything after it are never returned). ``flush()`` returns what is held
    back once generation ends for another reason.
    """

    def __init__(self, stops: list[str]) -> None:
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._stops = [s for s in stops if s]
        self._held = ""
        self.stopped = False

    def push(self, piece: bytes) -> str:
        if self.stopped:
            return ""
        self._held += self._decoder.decode(piece)
        return self._release()

    def _release(self) -> str:
        text = self._held
        if not self._stops:
            self._held = ""
            return text
        cut = min((i for i in (text.find(s) for s in self._stops) if i >= 0), default=-1)
        keep = _partial_stop_len(text, self._stops)
        if cut >= 0 and len(text) - keep >= cut:
            self.stopped = True
            self._held = ""
            return text[:cut]
        # Either no stop yet, or a longer stop that starts earlier may still complete.
        self._held = text[len(text) - keep:] if keep else ""
        return text[: len(text) - keep]

    def flush(self) -> str:
        if self.stopped:
            return ""
        tail, self.stopped = cut_at_stop(self._held + self._decoder.decode(b"", final=True),
                                         self._stops)
        self._held = ""
        return tail


def _partial_stop_len(text: str, stops: list[str]) -> int:
    """Length of the longest suffix of ``text`` that is a proper prefix of some stop string."""
    best = 0
    for stop in stops:
        for n in range(min(len(stop) - 1, len(text)), best, -1):
            if text.endswith(stop[:n]):
                best = n
                break
    return best


def cut_at_stop(text: str, stops: list[str]) -> tuple[str, bool]:
    """Reference behaviour: ``text`` cut at the first occurrence of any stop string."""
    positions = [i for i in (text.find(s) for s in stops if s) if i >= 0]
    if not positions:
        return text, False
    return text[: min(positions)], True
