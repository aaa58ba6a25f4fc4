"""SSEParser against the WHATWG "Parsing an event stream" rules.

A corpus of streams (many after web-platform-tests ``eventsource/format-*`` ideas), each fed whole,
byte by byte and cut at random places; a hypothesis check that any cut gives the same events as
a plain line-by-line reading of the rules; the size limit; reset() across reconnections.
"""

from __future__ import annotations

import random
import time
from typing import Any, Dict, List, NamedTuple, Optional, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aikit_transports.errors import MessageTooLarge, ProtocolError
from aikit_transports.events import Event, new_event
from aikit_transports.parsers.sse import SSEParser

Row = Tuple[str, str, Optional[str], Optional[int]]  # (type, data, id, retry)


def rows(events: List[Event]) -> List[Row]:
    return [(e.type, e.data, e.id, e.retry) for e in events]


def feed_all(parser: SSEParser, chunks: List[bytes]) -> List[Event]:
    out: List[Event] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def split_at(data: bytes, cuts: List[int]) -> List[bytes]:
    bounds = [0, *sorted(set(cuts)), len(data)]
    return [data[a:b] for a, b in zip(bounds, bounds[1:]) if b > a]


def reference(stream: bytes, last_event_id: Optional[str] = None) -> List[Row]:
    """The rules read literally, one line at a time, on the whole decoded stream."""
    text = stream.decode("utf-8", "replace")
    if text.startswith("\ufeff"):
        text = text[1:]
    lines: List[str] = []
    line: List[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\r" or ch == "\n":
            lines.append("".join(line))
            line = []
            if ch == "\r" and text[i + 1 : i + 2] == "\n":
                i += 1
        else:
            line.append(ch)
        i += 1
    data_buf, type_buf = "", ""
    id_buf = last_id = last_event_id or ""
    retry: Optional[int] = None
    out: List[Row] = []
    for ln in lines:
        if ln == "":
            last_id = id_buf
            if data_buf == "":
                type_buf = ""
                continue
            if data_buf.endswith("\n"):
                data_buf = data_buf[:-1]
            out.append((type_buf or "message", data_buf, last_id or None, retry))
            data_buf, type_buf = "", ""
            continue
        if ln.startswith(":"):
            continue
        if ":" in ln:
            field, value = ln.split(":", 1)
            if value.startswith(" "):
                value = value[1:]
        else:
            field, value = ln, ""
        if field == "event":
            type_buf = value
        elif field == "data":
            data_buf += value + "\n"
        elif field == "id":
            if "\0" not in value:
                id_buf = value
        elif field == "retry" and value and all(c in "0123456789" for c in value):
            retry = int(value)
    return out


# --------------------------------------------------------------------------------------------
# The corpus: (name, stream, expected rows, constructor kwargs, expected final state)


class Case(NamedTuple):
    name: str
    stream: bytes
    expected: List[Row]
    kwargs: Optional[Dict[str, Any]] = None
    state: Optional[Tuple[Optional[str], Optional[int]]] = None  # (last_event_id, retry) at end


M = "message"

CASES: List[Case] = [
    Case("one event", b"data: hello\n\n", [(M, "hello", None, None)]),
    Case("two data lines joined by LF", b"data: a\ndata: b\n\n", [(M, "a\nb", None, None)]),
    Case("event type", b"event: add\ndata: 73857293\n\n", [("add", "73857293", None, None)]),
    Case(
        "event type reset after dispatch",
        b"event: add\ndata: 1\n\ndata: 2\n\nevent: x\n\ndata: 3\n\n",
        [("add", "1", None, None), (M, "2", None, None), (M, "3", None, None)],
    ),
    Case("empty event type is message", b"event:\ndata: x\n\n", [(M, "x", None, None)]),
    Case(
        "event value keeps inner spaces", b"event:  a b \ndata: x\n\n", [(" a b ", "x", None, None)]
    ),
    Case(
        "id persists across events",
        b"id: 1\ndata: a\n\ndata: b\n\nid: 2\ndata: c\n\n",
        [(M, "a", "1", None), (M, "b", "1", None), (M, "c", "2", None)],
        state=("2", None),
    ),
    Case(
        "empty id resets it, with or without colon",
        b"id: 1\ndata: a\n\nid\ndata: b\n\nid: 3\ndata: c\n\nid:\ndata: d\n\nid: \ndata: e\n\n",
        [
            (M, "a", "1", None),
            (M, "b", None, None),
            (M, "c", "3", None),
            (M, "d", None, None),
            (M, "e", None, None),
        ],
        state=(None, None),
    ),
    Case(
        "id with NUL is ignored",
        b"id: 1\ndata: a\n\nid: 2\x003\ndata: b\n\nid: \x00\n\ndata: c\n\n",
        [(M, "a", "1", None), (M, "b", "1", None), (M, "c", "1", None)],
    ),
    Case(
        "id-only block sets the last event id without an event",
        b"id: 5\n\n",
        [],
        state=("5", None),
    ),
    Case(
        "id-only block then data without id",
        b"id: 5\n\ndata: x\n\n",
        [(M, "x", "5", None)],
    ),
    Case("id after data in one block", b"data: a\nid: 9\n\n", [(M, "a", "9", None)]),
    Case("id without space", b"id:7\ndata:x\n\n", [(M, "x", "7", None)]),
    Case(
        "data with no colon appends an empty line",
        b"data\n\ndata\ndata\n\ndata:\n\n",
        [(M, "", None, None), (M, "\n", None, None), (M, "", None, None)],
    ),
    Case("field without space", b"data:hello\n\n", [(M, "hello", None, None)]),
    Case("only one leading space removed", b"data:  two\n\n", [(M, " two", None, None)]),
    Case("colons inside the value", b"data: a:b: c\n\n", [(M, "a:b: c", None, None)]),
    Case(
        "unknown fields ignored, names are case-sensitive",
        b"foo: bar\ndata: x\nDATA: y\nData: z\n data: w\ndata : v\n\n",
        [(M, "x", None, None)],
    ),
    Case(
        "comments ignored, comment-only block dispatches nothing",
        b": hello\ndata: a\n:another\n\n:\n\n: x\n\n",
        [(M, "a", None, None)],
    ),
    Case(
        "long comment",
        b":" + b"x" * 70000 + b"\ndata: after\n\n",
        [(M, "after", None, None)],
    ),
    Case(
        "blank lines and blocks without data dispatch nothing",
        b"\n\n\n\nevent: x\n\n\r\n\r\rretry\n\n",
        [],
    ),
    Case(
        "stream ending without a blank line",
        b"data: a\n\ndata: b\n",
        [(M, "a", None, None)],
    ),
    Case("stream ending inside a line", b"data: a\n\ndata: b", [(M, "a", None, None)]),
    Case(
        "CRLF, CR and LF mixed",
        b"data: a\r\ndata: b\rdata: c\n\r\ndata: d\r\rdata: e\n\n",
        [(M, "a\nb\nc", None, None), (M, "d", None, None), (M, "e", None, None)],
    ),
    Case(
        "CR only",
        b"event: t\rdata: 1\r\rdata: 2\r\r",
        [("t", "1", None, None), (M, "2", None, None)],
    ),
    Case(
        "CR CR is two line ends, LF CR too",
        b"data: a\r\r\ndata: b\n\r\n",
        [(M, "a", None, None), (M, "b", None, None)],
    ),
    Case(
        "mixed line endings with NUL and long comments (wpt format-newlines-mixed)",
        b"data:test\r\ndata\ndata:test\r\n\r:" + b"x" * 3000 + b"\r\ndata:\x00\r\n\n",
        [(M, "test\n\ntest", None, None), (M, "\x00", None, None)],
    ),
    Case(
        "field parsing (wpt format-field-parsing)",
        b"data:\x00\ndata:  2\rData:1\ndata\x00:2\ndata:1\r\x00data:4\nda-ta:3\rdata_5\n"
        b"data:3\rdata:\r\n data:32\ndata:4\n\n",
        [(M, "\x00\n 2\n1\n3\n\n4", None, None)],
    ),
    Case("NUL in data kept", b"data: a\x00b\n\n", [(M, "a\x00b", None, None)]),
    Case(
        "Unicode separators do not end lines",
        "data: a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei\n\n".encode(),
        [(M, "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\x1dh\x1ei", None, None)],
    ),
    Case(
        "JSON payload with U+2028",
        'data: {"text": "line\u2028sep"}\n\n'.encode(),
        [(M, '{"text": "line\u2028sep"}', None, None)],
    ),
    Case(
        "multi-byte characters",
        "event: ünï\ndata: héllo € 𝄞 日本\n\n".encode(),
        [("ünï", "héllo € 𝄞 日本", None, None)],
    ),
    Case(
        "invalid UTF-8 replaced",
        b"data: a\xffb\xc3\n\ndata: \xe2\x82\n\ndata: \xed\xa0\x80z\n\n",
        [
            (M, "a\ufffdb\ufffd", None, None),
            (M, "\ufffd", None, None),
            (M, "\ufffd\ufffd\ufffdz", None, None),
        ],
    ),
    Case("BOM stripped", b"\xef\xbb\xbfdata: a\n\n", [(M, "a", None, None)]),
    Case(
        "second BOM not stripped (wpt format-bom-2)",
        b"\xef\xbb\xbf\xef\xbb\xbfdata: 1\n\ndata: 2\n\ndata: 3\n\n",
        [(M, "2", None, None), (M, "3", None, None)],
    ),
    Case(
        "BOM after the start is data",
        b"data: a\n\n\xef\xbb\xbfdata: b\n\ndata: \xef\xbb\xbfc\n\n",
        [(M, "a", None, None), (M, "\ufeffc", None, None)],
    ),
    Case(
        "retry sets the reconnection time, carried on later events",
        b"retry: 1500\ndata: a\n\ndata: b\n\nretry: 20\n\ndata: c\n\n",
        [(M, "a", None, 1500), (M, "b", None, 1500), (M, "c", None, 20)],
        state=(None, 20),
    ),
    Case(
        "bogus retry values ignored",
        "retry: 1500\n\nretry: 15x\nretry: -1\nretry: 1.5\nretry:  200\nretry\nretry:\n"
        "retry: \u0661\u0662\nretry: 1_000\nretry: +5\nretry: 1e3\ndata: x\n\n".encode(),
        [(M, "x", None, 1500)],
        state=(None, 1500),
    ),
    Case(
        "retry with leading zeros, retry without space",
        b"retry:007\ndata: x\n\n",
        [(M, "x", None, 7)],
    ),
    Case(
        "retry inside an event applies to it",
        b"data: a\nretry: 5\n\n",
        [(M, "a", None, 5)],
    ),
    Case(
        "starting last_event_id kept until replaced",
        b"data: a\n\nid: 7\ndata: b\n\nid\ndata: c\n\n",
        [(M, "a", "42", None), (M, "b", "7", None), (M, "c", None, None)],
        kwargs={"last_event_id": "42"},
        state=(None, None),
    ),
    Case(
        "starting last_event_id kept when the stream has no id",
        b"data: a\n\n",
        [(M, "a", "42", None)],
        kwargs={"last_event_id": "42"},
        state=("42", None),
    ),
    Case(
        "the usual shapes back to back",
        b"id: 1\ndata: a\n\nevent: e\ndata: b\n\ndata: c\n\nid: \ndata: d\n\n"
        b"event: \ndata: e\n\nid: 2\nevent: f\ndata: g\n\n",
        [
            (M, "a", "1", None),
            ("e", "b", "1", None),
            (M, "c", "1", None),
            (M, "d", None, None),
            (M, "e", None, None),
            ("f", "g", "2", None),
        ],
    ),
    Case(
        "usual shapes with an extra line",
        b"id: 1\ndata: a\ndata: b\n\nevent: e\ndata: c\n: x\n\ndata: d\nid: 3\n\n",
        [(M, "a\nb", "1", None), ("e", "c", "1", None), (M, "d", "3", None)],
    ),
    Case(
        "id and event in either order before the data (sse-starlette)",
        b"id: 1\r\nevent: e\r\ndata: a\r\n\r\nevent: f\nid: 2\ndata: b\n\n"
        b"event: \nid: \ndata: c\n\n",
        [("e", "a", "1", None), ("f", "b", "2", None), (M, "c", None, None)],
    ),
    Case(
        "three head lines, repeated fields, NUL in a head id",
        b"id: 1\nevent: e\nid: 2\ndata: a\n\nevent: e\nevent: f\ndata: b\n\n"
        b"id: 3\x00\nevent: g\ndata: c\n\nevent: h\nid: \x00\ndata: d\n\n"
        b"id: 4\nretry: 9\ndata: e\n\n",
        [
            ("e", "a", "2", None),
            ("f", "b", "2", None),
            ("g", "c", "2", None),
            ("h", "d", "2", None),
            (M, "e", "4", 9),
        ],
    ),
    Case(
        "many data lines",
        b"".join(b"data: %d\n" % i for i in range(500)) + b"\n",
        [(M, "\n".join(str(i) for i in range(500)), None, None)],
    ),
    Case(
        "empty data lines at the end keep all but one LF",
        b"data: a\ndata\ndata\n\n",
        [(M, "a\n\n", None, None)],
    ),
]


def _split(stream: bytes, how: str) -> List[bytes]:
    if how == "whole":
        return [stream]
    if how == "bytes":
        return [stream[i : i + 1] for i in range(len(stream))]
    rnd = random.Random(f"{how}:{len(stream)}")
    cuts = [rnd.randint(1, max(1, len(stream) - 1)) for _ in range(rnd.randint(1, 12))]
    return split_at(stream, cuts)


SPLIT_NAMES = ["whole", "bytes", "random0", "random1", "random2", "random3"]


@pytest.mark.parametrize("split", SPLIT_NAMES)
@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_corpus(case: Case, split: str) -> None:
    parser = SSEParser(**(case.kwargs or {}))
    events = feed_all(parser, _split(case.stream, split))
    assert rows(events) == case.expected
    assert parser.errors == []
    if case.state is not None:
        assert (parser.last_event_id, parser.retry) == case.state


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_reference_agrees_with_corpus(case: Case) -> None:
    # Keeps the reading of the rules used by the property tests honest.
    assert reference(case.stream, (case.kwargs or {}).get("last_event_id")) == case.expected


def test_corpus_is_large_enough() -> None:
    assert len(CASES) >= 30


# --------------------------------------------------------------------------------------------
# Chunk boundaries and prompt delivery


def test_cr_at_chunk_end_then_lf_is_one_line_end() -> None:
    parser = SSEParser()
    assert parser.feed(b"data: a\r") == []
    # The LF completes the CRLF: it is not a blank line, so nothing is dispatched yet.
    assert parser.feed(b"\n") == []
    assert rows(parser.feed(b"\r")) == [(M, "a", None, None)]  # the CR alone is the blank line
    # This LF is again the rest of a CRLF, not a second blank line.
    assert rows(parser.feed(b"\ndata: b\r\n\r\n")) == [(M, "b", None, None)]


def test_blank_line_ending_in_cr_dispatches_at_once() -> None:
    parser = SSEParser()
    assert rows(parser.feed(b"data: a\r\r")) == [(M, "a", None, None)]


def test_event_comes_out_with_the_byte_that_completes_it() -> None:
    parser = SSEParser()
    stream = b"id: 1\ndata: x\n\n"
    for byte in stream[:-1]:
        assert parser.feed(bytes([byte])) == []
    assert rows(parser.feed(stream[-1:])) == [(M, "x", "1", None)]


def test_multibyte_character_split_in_every_place() -> None:
    stream = "data: 𝄞€é\n\n".encode()
    for cut in range(1, len(stream)):
        parser = SSEParser()
        events = feed_all(parser, [stream[:cut], stream[cut:]])
        assert rows(events) == [(M, "𝄞€é", None, None)], cut


def test_every_two_way_split_of_a_mixed_stream() -> None:
    stream = (
        b"\xef\xbb\xbfid: 1\r\nevent: a\r\ndata: x\r\n\r\n: c\rdata: \xc3\xa9\r\rdata\n"
        b"retry: 30\nid: 2\x00\ndata: z\n\n"
    )
    expected = reference(stream)
    for cut in range(1, len(stream)):
        parser = SSEParser()
        assert rows(feed_all(parser, [stream[:cut], stream[cut:]])) == expected, cut


def test_empty_feed() -> None:
    parser = SSEParser()
    assert parser.feed(b"") == []
    assert rows(parser.feed(b"data: a\n\n")) == [(M, "a", None, None)]


def test_bytearray_and_memoryview_input() -> None:
    parser = SSEParser()
    assert parser.feed(bytearray(b"data: \xe2\x82")) == []  # type: ignore[arg-type]
    assert rows(parser.feed(memoryview(b"\xac\n\n"))) == [(M, "€", None, None)]  # type: ignore[arg-type]


# --------------------------------------------------------------------------------------------
# Event objects and state


def test_events_are_events_with_transport_id_and_one_timestamp_per_feed() -> None:
    parser = SSEParser(transport_id="t-1")
    before = time.monotonic()
    events = parser.feed(b"data: a\n\nid: 2\ndata: b\n\nevent: e\ndata: c\n\n: x\ndata: d\n\n")
    after = time.monotonic()
    assert len(events) == 4
    assert all(type(e) is Event for e in events)
    assert {e.transport_id for e in events} == {"t-1"}
    assert len({e.received_at for e in events}) == 1
    assert before <= events[0].received_at <= after
    stamp = events[0].received_at
    assert events[1] == new_event("b", "message", "2", None, "t-1", stamp)
    assert events[2] == new_event("c", "e", "2", None, "t-1", stamp)


def test_last_event_id_follows_dispatch_not_the_id_line() -> None:
    parser = SSEParser()
    parser.feed(b"id: 1\ndata: a\n\nid: 2\n")
    assert parser.last_event_id == "1"  # id 2 is in the buffer, not dispatched yet
    parser.feed(b"\n")
    assert parser.last_event_id == "2"
    parser.feed(b"id\n\n")
    assert parser.last_event_id is None


def test_retry_is_set_when_its_line_is_read() -> None:
    parser = SSEParser()
    parser.feed(b"retry: 2500\n")
    assert parser.retry == 2500


def test_huge_retry_value_is_clamped_not_an_error() -> None:
    parser = SSEParser()
    events = parser.feed(
        b"retry: " + b"9" * 10000 + b"\ndata: x\n\nretry: 0000000000000000000000012\n"
    )
    assert parser.errors == []
    assert events[0].retry == (1 << 63) - 1
    assert parser.retry == 12


def test_constructor_rejects_a_non_positive_limit() -> None:
    with pytest.raises(ValueError, match="max_event_bytes"):
        SSEParser(max_event_bytes=0)


# --------------------------------------------------------------------------------------------
# reset(): a new response of the same stream


def test_reset_keeps_last_event_id_and_retry_and_drops_the_partial_event() -> None:
    parser = SSEParser()
    events = parser.feed(b"id: 1\nretry: 7\ndata: a\n\nid: 2\nevent: e\ndata: partial\ndata: mo")
    assert rows(events) == [(M, "a", "1", 7)]
    parser.reset()
    assert (parser.last_event_id, parser.retry) == ("1", 7)
    # The id buffer starts again from the last event ID: events without id: keep it.
    assert rows(parser.feed(b"re\n\ndata: b\n\n")) == [(M, "b", "1", 7)]


def test_reset_expects_a_bom_again_and_drops_undecoded_bytes() -> None:
    parser = SSEParser()
    assert rows(parser.feed(b"\xef\xbb\xbfdata: a\n\n\xef\xbb")) == [(M, "a", None, None)]
    parser.reset()
    # The two bytes held from the old response are gone: this lone byte is invalid, so the
    # field name starts with U+FFFD and the line is ignored.
    assert parser.feed(b"\xbfdata: x\n\n") == []
    parser.reset()
    assert rows(parser.feed(b"\xef\xbb\xbfdata: b\n\n")) == [(M, "b", None, None)]


def test_reset_forgets_a_trailing_cr() -> None:
    parser = SSEParser()
    parser.feed(b"data: a\r")
    parser.reset()
    # In the new response this LF is a line end of its own (a blank line), not half a CRLF.
    assert rows(parser.feed(b"data: b\n\n")) == [(M, "b", None, None)]


def test_reset_with_starting_id() -> None:
    parser = SSEParser(last_event_id="s")
    parser.feed(b"id: t\ndata: half")
    parser.reset()
    assert rows(parser.feed(b"data: c\n\n")) == [(M, "c", "s", None)]


# --------------------------------------------------------------------------------------------
# Size limit


def _too_large(parser: SSEParser) -> MessageTooLarge:
    assert len(parser.errors) == 1
    error = parser.errors[0]
    assert isinstance(error, MessageTooLarge)
    assert isinstance(error, ProtocolError)
    assert "max_event_bytes=" in str(error)
    return error


def test_over_long_event_in_one_chunk() -> None:
    parser = SSEParser(max_event_bytes=100, transport_id="t")
    stream = b"data: a\n\ndata: " + b"x" * 200 + b"\n\ndata: c\n\n"
    assert rows(parser.feed(stream)) == [(M, "a", None, None)]
    error = _too_large(parser)
    assert "100" in str(error) and error.transport_id == "t"
    assert error.retryable
    # Everything after is ignored until reset().
    assert parser.feed(b"data: d\n\n") == []
    parser.reset()
    assert parser.errors == []
    assert rows(parser.feed(b"data: e\n\n")) == [(M, "e", None, None)]


def test_over_long_event_made_of_many_lines_across_chunks() -> None:
    parser = SSEParser(max_event_bytes=1000)
    assert rows(parser.feed(b"id: 1\ndata: first\n\n")) == [(M, "first", "1", None)]
    fed = 0
    for _ in range(200):
        assert parser.feed(b"data: 0123456789\n") == []
        fed += 17
        if parser.errors:
            break
    _too_large(parser)
    assert fed <= 1000 + 17
    assert parser.last_event_id == "1"


def test_over_long_event_is_refused_however_it_is_cut() -> None:
    stream = b"data: ok\n\n" + b"data: 0123456789\n" * 10 + b"\ndata: after\n\n"
    for chunks in (
        [stream],
        [stream[i : i + 1] for i in range(len(stream))],
        [stream[i : i + 7] for i in range(0, len(stream), 7)],
    ):
        parser = SSEParser(max_event_bytes=150)  # the second event has 170 characters
        assert rows(feed_all(parser, chunks)) == [(M, "ok", None, None)]
        _too_large(parser)


def test_event_at_the_limit_is_accepted() -> None:
    body = b"data: " + b"x" * 93 + b"\n"  # 100 characters with its line end
    for chunks in ([body + b"\n"], [body, b"\n"], [body[:50], body[50:], b"\n"]):
        parser = SSEParser(max_event_bytes=100)
        assert rows(feed_all(parser, chunks)) == [(M, "x" * 93, None, None)]
        assert parser.errors == []
    parser = SSEParser(max_event_bytes=99)
    assert feed_all(parser, [body + b"\n"]) == []
    _too_large(parser)


def test_blank_lines_before_an_event_are_not_part_of_it() -> None:
    stream = b"data: a\n\n\n\n\nid: 1\ndata: " + b"x" * 28 + b"\n\n"  # 6 + 35 characters
    for cut in range(len(stream) + 1):
        parser = SSEParser(max_event_bytes=41)
        events = feed_all(parser, split_at(stream, [cut]))
        assert rows(events) == [(M, "a", None, None), (M, "x" * 28, "1", None)], cut
        assert parser.errors == []


def test_endless_line_hits_the_limit_without_holding_more() -> None:
    limit = 4096
    parser = SSEParser(max_event_bytes=limit)
    chunk = b"data: " + b"y" * 1018  # 1 KiB, no line end ever
    fed = 0
    while not parser.errors:
        assert parser.feed(chunk) == []
        fed += len(chunk)
        assert len(parser._pending) <= limit
        assert fed <= limit + len(chunk)
    _too_large(parser)
    assert parser._pending == "" and parser._parts == []


def test_endless_line_in_small_pieces_is_linear() -> None:
    # 8 MiB in 512-byte reads (requests' iter_lines default): must not copy the line each time.
    parser = SSEParser()
    piece = b"z" * 512
    for _ in range((8 << 20) // 512 + 2):
        parser.feed(piece)
        if parser.errors:
            break
    _too_large(parser)


def test_big_event_in_small_reads() -> None:
    # 2 MB of data lines in 512-byte reads: each read is applied once, not rescanned.
    lines = [b"data: %018d\n" % i for i in range(80_000)]
    stream = b"id: big\n" + b"".join(lines) + b"\ndata: next\n\n"
    parser = SSEParser()
    events = feed_all(parser, [stream[i : i + 512] for i in range(0, len(stream), 512)])
    assert [e.data.count("\n") for e in events] == [79_999, 0]
    assert events[0].data.endswith(f"{79_999:018d}") and events[0].id == "big"
    assert rows(events[1:]) == [(M, "next", "big", None)]


def test_comment_lines_count_towards_the_event() -> None:
    parser = SSEParser(max_event_bytes=50)
    assert parser.feed(b": " + b"c" * 60 + b"\n\n") == []
    _too_large(parser)


def test_many_small_events_never_hit_the_limit() -> None:
    parser = SSEParser(max_event_bytes=64)
    stream = b"id: 12345\ndata: 0123456789012345678901234567890123456789\n\n" * 2000
    events = feed_all(parser, [stream[i : i + 4096] for i in range(0, len(stream), 4096)])
    assert len(events) == 2000 and parser.errors == []


# --------------------------------------------------------------------------------------------
# Properties


_line = st.one_of(
    st.sampled_from(
        [
            "",
            "data",
            "data:",
            "data: x",
            "data:  y",
            "data: \u2028z\x85",
            "data: é€𝄞",
            "data:\x00",
            "id",
            "id: 1",
            "id: 2",
            "id: \x00",
            "id:",
            "event: e",
            "event:",
            "event",
            "retry: 100",
            "retry: x",
            "retry",
            ": comment",
            ":",
            "foo: bar",
            "\ufeffdata: bom",
        ]
    ),
    st.tuples(
        st.sampled_from(["data", "id", "event", "retry", "", "x"]),
        st.sampled_from([":", ": ", ":  ", ""]),
        st.text(
            alphabet=st.characters(max_codepoint=0xD7FF).filter(lambda c: c not in "\r\n"),
            max_size=8,
        ),
    ).map("".join),
)
_eol = st.sampled_from(["\n", "\r", "\r\n"])


_value = st.text(alphabet=st.sampled_from("ab:  \u00e9\u20ac\u2028\ufeff0123"), max_size=6)
# Whole blocks in the shapes servers usually write (the parser takes those a faster way).
_block = st.tuples(
    st.sampled_from(
        [
            "data: {}",
            "id: {}\ndata: {}",
            "event: {}\ndata: {}",
            "id: {}\nevent: {}\ndata: {}",
            "event: {}\nid: {}\ndata: {}",
            "id: {}\nid: {}\ndata: {}",
            "data: {}\ndata: {}",
            ": {}",
            "id: \x00{}\ndata: {}",
            "event: {}\nid: {}\x00\ndata: {}",
        ]
    ),
    st.lists(_value, min_size=3, max_size=3),
).map(lambda t: t[0].format(*t[1]) + "\n")


@st.composite
def streams(draw: st.DrawFn) -> bytes:
    items = draw(st.lists(st.tuples(st.one_of(_line, _block), _eol), max_size=30))
    # A block's inner line ends follow the line end drawn for it.
    text = "".join(line.replace("\n", eol) + eol for line, eol in items)
    if draw(st.booleans()):
        text = "\ufeff" + text
    tail = draw(st.sampled_from(["", "data: unfinished", "\r"]))
    return (text + tail).encode("utf-8")


@settings(max_examples=300, deadline=None)
@given(stream=streams(), data=st.data())
def test_any_split_gives_the_events_of_the_rules(stream: bytes, data: st.DataObject) -> None:
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12))
    expected = reference(stream, "start")
    parser = SSEParser(last_event_id="start")
    assert rows(feed_all(parser, split_at(stream, cuts))) == expected
    assert rows(feed_all(SSEParser(last_event_id="start"), [stream])) == expected
    assert parser.errors == []


@settings(max_examples=200, deadline=None)
@given(stream=streams(), data=st.data())
def test_the_limit_does_not_depend_on_the_cuts(stream: bytes, data: st.DataObject) -> None:
    limit = data.draw(st.integers(min_value=1, max_value=80))
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=12))
    results = []
    for chunks in (
        [stream],
        split_at(stream, cuts),
        [stream[i : i + 1] for i in range(len(stream))],
    ):
        parser = SSEParser(max_event_bytes=limit)
        results.append((rows(feed_all(parser, chunks)), len(parser.errors)))
    assert results[0] == results[1] == results[2]


@settings(max_examples=300, deadline=None)
@given(stream=st.binary(max_size=400), data=st.data())
def test_arbitrary_bytes_never_raise_and_hold_at_most_the_limit(
    stream: bytes, data: st.DataObject
) -> None:
    cuts = data.draw(st.lists(st.integers(min_value=0, max_value=len(stream)), max_size=20))
    limit = data.draw(st.integers(min_value=1, max_value=64))
    parser = SSEParser(max_event_bytes=limit)
    events: List[Event] = []
    for chunk in split_at(stream, cuts):
        events.extend(parser.feed(chunk))
        held = len(parser._pending) + sum(len(p) + 1 for p in parser._parts)
        assert held <= limit
    # Whatever the cut, the same stream is refused or not (the limit does not depend on reads),
    # and, without a limit in the way, gives the events of the rules.
    whole = SSEParser(max_event_bytes=limit)
    whole_events = whole.feed(stream)
    assert bool(whole.errors) == bool(parser.errors)
    assert rows(events) == rows(whole_events)
    if not whole.errors:
        assert rows(whole_events) == reference(stream)
