from __future__ import annotations

import itertools

from hypothesis import given
from hypothesis import strategies as st

from hugind.engine.stops import TextStream, cut_at_stop

TEXT = st.text(alphabet="ab<>é😀\n", max_size=40)


def run(pieces: list[bytes], stops: list[str]) -> tuple[str, bool]:
    stream = TextStream(stops)
    out = []
    for p in pieces:
        out.append(stream.push(p))
        if stream.stopped:
            return "".join(out), True
    out.append(stream.flush())
    return "".join(out), False


@given(text=TEXT, stops=st.lists(st.text(alphabet="ab<>é", min_size=1, max_size=4), max_size=3),
       cuts=st.lists(st.integers(0, 200), max_size=20))
def test_any_chunking_cuts_at_first_stop(text: str, stops: list[str], cuts: list[int]) -> None:
    data = text.encode()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    pieces = [data[a:b] for a, b in itertools.pairwise(points)]
    got, stopped = run(pieces, stops)
    want, want_stopped = cut_at_stop(text, stops)
    assert got == want
    assert stopped == want_stopped


@given(text=st.text(max_size=30))
def test_utf8_split_at_every_byte(text: str) -> None:
    pieces = [bytes([b]) for b in text.encode()]
    assert run(pieces, [])[0] == text


def test_stop_spanning_tokens_never_leaks() -> None:
    stream = TextStream(["<end>"])
    emitted = [stream.push(p) for p in [b"Hi <e", b"n", b"d> more"]]
    assert "".join(emitted) == "Hi "
    assert stream.stopped
    assert all("<" not in e for e in emitted)
