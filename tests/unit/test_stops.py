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
    out.append(stream.flush())  # may complete a stop a longer one kept pending
    return "".join(out), stream.stopped


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


def chunked(text: str, cuts: list[int]) -> list[bytes]:
    data = text.encode()
    points = sorted({c % (len(data) + 1) for c in cuts} | {0, len(data)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


# Few letters and self-overlapping stops ("aab", "abab"): the KMP fallbacks get exercised.
OVERLAPPING = st.text(alphabet="ab", min_size=1, max_size=6)


@given(text=st.text(alphabet="abc", max_size=80), stops=st.lists(OVERLAPPING, max_size=16),
       cuts=st.lists(st.integers(0, 200), max_size=30))
def test_overlapping_stops_equal_naive_reference(text: str, stops: list[str],
                                                 cuts: list[int]) -> None:
    assert run(chunked(text, cuts), stops) == cut_at_stop(text, stops)


@given(text=st.text(alphabet="ab", max_size=60), stops=st.lists(OVERLAPPING, min_size=1,
                                                                 max_size=4))
def test_held_text_is_shorter_than_the_longest_stop(text: str, stops: list[str]) -> None:
    """Memory and rescans are bounded by the stops, not by how long generation runs."""
    stream = TextStream(stops)
    longest = max(len(s) for s in stops)
    for piece in chunked(text, list(range(len(text) + 1))):
        stream.push(piece)
        assert len(stream.held) < longest
        if stream.stopped:
            break


def test_completed_stop_waits_for_an_earlier_longer_one() -> None:
    """"bc" is complete, but "abcd" started earlier and may still complete: hold both."""
    stream = TextStream(["abcd", "bc"])
    assert stream.push(b"xabc") == "x"
    assert not stream.stopped
    assert stream.push(b"d tail") == ""
    assert stream.stopped
    stream = TextStream(["abcd", "bc"])
    assert stream.push(b"xabc") + stream.push(b"e") == "xa"
    assert stream.stopped


def test_flush_cuts_at_a_completed_stop() -> None:
    stream = TextStream(["abcd", "bc"])
    assert stream.push(b"abc") == ""
    assert stream.flush() == "a"
    assert stream.stopped


def test_pathological_stop_is_matched_without_rescans() -> None:
    """A stop that almost matches at every position: 'aaa...ab' against 'aaaa...'."""
    stop = "a" * 255 + "b"
    stream = TextStream([stop, "a" * 200 + "c"])
    out = [stream.push(b"a") for _ in range(50_000)]
    assert len(stream.held) == 255
    assert "".join(out) + stream.flush() == "a" * 50_000
    stream = TextStream([stop])
    assert stream.push(b"a" * 300 + b"b" + b"rest") == "a" * 45
    assert stream.stopped


@given(text=TEXT, stops=st.lists(st.text(alphabet="ab<>é", min_size=1, max_size=4), max_size=3))
def test_matched_names_the_stop_at_the_cut(text: str, stops: list[str]) -> None:
    stream = TextStream(stops)
    got = "".join(stream.push(ch.encode()) for ch in text) + stream.flush()
    if not stream.stopped:
        assert stream.matched is None
        return
    assert stream.matched in stops
    assert text[len(got):].startswith(stream.matched)  # Anthropic's stop_sequence
    assert all(text.find(s) < 0 or text.find(s) >= len(got) for s in stops)
