"""Fuzzing the two text parsers, alone and behind a real socket.

What tests/test_parser_sse.py and tests/test_parser_ndjson.py check on well-formed streams is
checked here on noise: valid pieces, random bytes, broken UTF-8, stray CR/LF/BOM and NULs, mixed
and cut anywhere (whole, at random points, one byte at a time). For ``SSEParser`` and
``NDJSONParser`` alike:

* ``feed()`` never raises, and every recorded error is a ``ProtocolError``;
* after every ``feed()``, what is held for the event or line in progress stays within the
  configured limit;
* every split gives the same events, errors and resumption state as the whole stream;
* after a refused (too long) event, ``reset()`` makes the parser good as new.

A cross-parser property: one stream of JSON values written as NDJSON and as SSE gives the same
values and ids from both parsers. Then the transports themselves: random bytes served over
HTTP reach ``SSETransport`` and ``HTTPStreamTransport`` as exactly the events the parsers make,
with only ``ProtocolError``\\ s reported and the reader never crashing.

Run sizes: ``AIKIT_FUZZ_EXAMPLES`` (default 300) examples per parser property (a quarter of
that for the recovery one), a tenth (at least 20) per transport property; for a long run:
``AIKIT_FUZZ_EXAMPLES=20000 pytest tests/test_fuzz.py``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Iterator
from typing import Any, Dict, List, Optional, Tuple

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_parser_sse import reference, rows, split_at
from test_parser_sse import streams as sse_streams

from aikit_transports import (
    Event,
    HTTPStreamTransport,
    ReconnectFailed,
    ReconnectPolicy,
    SSETransport,
    TransportError,
)
from aikit_transports.errors import MessageTooLarge, ProtocolError
from aikit_transports.parsers.ndjson import NDJSONParser
from aikit_transports.parsers.sse import SSEParser
from aikit_transports.testing import RecordedRequest, StreamServer, StreamWriter

EXAMPLES = int(os.environ.get("AIKIT_FUZZ_EXAMPLES", "300"))
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
WIRE_FUZZ = settings(
    max_examples=max(20, EXAMPLES // 10),
    deadline=None,
    # one server serves every example (each gets its own body and URL)
    suppress_health_check=[
        HealthCheck.too_slow,
        HealthCheck.data_too_large,
        HealthCheck.function_scoped_fixture,
    ],
)

# Bytes that break things: line ends alone and in pairs, BOMs, NUL, invalid and truncated UTF-8,
# field names without values, colons.
_NASTY = st.sampled_from(
    [
        b"\r",
        b"\n",
        b"\r\n",
        b"\n\r",
        b"\xef\xbb\xbf",
        b"\x00",
        b"\xff",
        b"\xe2\x82",
        b"\xf0\x9f\x98",
        b"\xed\xa0\x80",
        b":",
        b"data",
        b"data:",
        b"id:",
        b"retry:",
        b"event:",
        b"{",
        b'"',
        b"\\",
        b"\xe2\x80\xa8",
        b"\xc2\x85",
    ]
)


@st.composite
def noisy_sse(draw: st.DrawFn) -> bytes:
    """Valid SSE, random bytes and nasty bytes, interleaved."""
    parts = draw(
        st.lists(st.one_of(sse_streams(), st.binary(max_size=24), _NASTY), min_size=1, max_size=8)
    )
    return b"".join(parts)


_json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**12), max_value=10**12)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=4), children, max_size=3)
    ),
    max_leaves=8,
)


@st.composite
def noisy_ndjson(draw: st.DrawFn) -> bytes:
    """JSON lines (some with ids), blank and malformed lines, random and nasty bytes."""
    eol = st.sampled_from([b"\n", b"\r\n", b"\r"])
    line = st.one_of(
        _json_values.map(lambda v: json.dumps(v, ensure_ascii=False).encode()),
        st.tuples(st.integers(0, 10**6), _json_values).map(
            lambda t: json.dumps({"id": t[0], "v": t[1]}).encode()
        ),
        st.sampled_from([b"", b"   ", b"{", b"[1,", b"nul", b'{"a": 1}}']),
        st.binary(max_size=16),
        _NASTY,
    )
    parts = draw(st.lists(st.tuples(line, eol), min_size=1, max_size=12))
    data = b"".join(a + b for a, b in parts)
    if draw(st.booleans()):
        data = data[: draw(st.integers(0, len(data)))]  # cut anywhere: no final line end
    return data


def _splits(data: bytes, cuts: List[int]) -> List[List[bytes]]:
    """The same bytes whole, cut at ``cuts``, and one byte at a time."""
    return [[data], split_at(data, cuts), [data[i : i + 1] for i in range(len(data))]]


# -- SSEParser ----------------------------------------------------------------------------------

SSEOutcome = Tuple[List[Any], List[str], Optional[str], Optional[int]]


def _run_sse(chunks: List[bytes], limit: int) -> SSEOutcome:
    parser = SSEParser(max_event_bytes=limit, last_event_id="start")
    events: List[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))  # must not raise, whatever the bytes
        # Held for the event in progress: the unapplied text, its data lines and its type.
        held = len(parser._pending) + sum(len(p) + 1 for p in parser._parts) + len(parser._type)
        assert held <= limit, f"holds {held} characters for one event, limit {limit}"
        assert len(parser._id) <= max(limit, len("start")) and len(parser._tail) <= 3
    assert all(isinstance(e, ProtocolError) for e in parser.errors)
    assert len(parser.errors) <= 1  # the first refusal stops the parser until reset()
    return (
        rows(events),
        [type(e).__name__ for e in parser.errors],
        parser.last_event_id,
        (parser.retry),
    )


@FUZZ
@given(stream=noisy_sse(), data=st.data())
def test_sse_parser_on_noise(stream: bytes, data: st.DataObject) -> None:
    limit = data.draw(st.sampled_from([1, 8, 64, 1 << 20]), label="max_event_bytes")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=16), label="cuts")
    outcomes = [_run_sse(chunks, limit) for chunks in _splits(stream, cuts)]
    assert outcomes[0] == outcomes[1] == outcomes[2]  # the same, however it is cut
    events, errors, _, _ = outcomes[0]
    if not errors:
        assert events == reference(stream, "start")  # and by the rules


@settings(FUZZ, max_examples=max(50, EXAMPLES // 4))
@given(stream=noisy_sse(), tail=sse_streams())
def test_sse_parser_recovers_after_refusing_an_event(stream: bytes, tail: bytes) -> None:
    parser = SSEParser(max_event_bytes=4)
    parser.feed(b"data: " + b"x" * 10 + stream)  # refused: too long
    assert isinstance(parser.errors[0], MessageTooLarge)
    assert parser.feed(stream) == []  # ignored until reset()
    parser.reset()  # a new connection
    got = rows(parser.feed(tail))
    fresh = SSEParser(max_event_bytes=4, last_event_id=parser.last_event_id)
    fresh.retry = parser.retry
    assert got == rows(fresh.feed(tail))


# -- NDJSONParser -------------------------------------------------------------------------------

NDOutcome = Tuple[List[Tuple[Any, Optional[str]]], List[str], Optional[str]]


def _run_ndjson(chunks: List[bytes], limit: int) -> NDOutcome:
    parser = NDJSONParser(max_line_bytes=limit)
    events: List[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))  # must not raise, whatever the bytes
        assert parser._partial_bytes <= limit
        held = sum(len(p) for p in parser._parts)  # characters: each took at least a byte
        assert held <= limit, f"holds {held} characters of a line, limit {limit}"
    events.extend(parser.flush())
    assert all(isinstance(e, ProtocolError) for e in parser.errors)
    values = [(json.dumps(e.data, sort_keys=True), e.id) for e in events]
    return values, [e.message for e in parser.errors], parser.last_id


@FUZZ
@given(stream=noisy_ndjson(), data=st.data())
def test_ndjson_parser_on_noise(stream: bytes, data: st.DataObject) -> None:
    limit = data.draw(st.sampled_from([1, 8, 64, 1 << 20]), label="max_line_bytes")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=16), label="cuts")
    outcomes = [_run_ndjson(chunks, limit) for chunks in _splits(stream, cuts)]
    assert outcomes[0] == outcomes[1] == outcomes[2]


@FUZZ
@given(stream=st.binary(max_size=300), data=st.data())
def test_ndjson_parser_on_random_bytes(stream: bytes, data: st.DataObject) -> None:
    limit = data.draw(st.integers(1, 80), label="max_line_bytes")
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=16), label="cuts")
    outcomes = [_run_ndjson(chunks, limit) for chunks in _splits(stream, cuts)]
    assert outcomes[0] == outcomes[1] == outcomes[2]


# -- one stream, two encodings ------------------------------------------------------------------


@FUZZ
@given(
    values=st.lists(st.tuples(st.none() | st.integers(0, 10**9), _json_values), max_size=15),
    crlf=st.booleans(),
    data=st.data(),
)
def test_ndjson_and_sse_encodings_of_one_stream_give_the_same_events(
    values: List[Tuple[Optional[int], Any]], crlf: bool, data: st.DataObject
) -> None:
    eol = "\r\n" if crlf else "\n"
    ndjson = "".join(
        json.dumps({"id": i, "v": v} if i is not None else {"v": v}) + eol for i, v in values
    ).encode()
    sse = "".join(
        (f"id: {i}{eol}" if i is not None else "")
        + f"data: {json.dumps({'id': i, 'v': v} if i is not None else {'v': v})}{eol}{eol}"
        for i, v in values
    ).encode()
    nd_cuts = data.draw(st.lists(st.integers(0, len(ndjson)), max_size=10), label="ndjson cuts")
    sse_cuts = data.draw(st.lists(st.integers(0, len(sse)), max_size=10), label="sse cuts")
    nd_parser, sse_parser = NDJSONParser(), SSEParser()
    nd_events = [e for c in split_at(ndjson, nd_cuts) for e in nd_parser.feed(c)]
    sse_events = [e for c in split_at(sse, sse_cuts) for e in sse_parser.feed(c)]
    assert [e.data for e in nd_events] == [json.loads(e.data) for e in sse_events]
    # SSE's id is the last one in force (it carries over events without id:), NDJSON's is the
    # line's own; the resumption points agree.
    assert nd_parser.last_id == sse_parser.last_event_id
    assert [e.id for e in nd_events if e.id is not None] == [
        str(i) for i, _ in values if i is not None
    ]
    assert nd_parser.errors == [] and sse_parser.errors == []


# -- through the transports ---------------------------------------------------------------------


class _Bodies:
    """A route serving the body registered under ``?key=``, written in random pieces."""

    def __init__(self) -> None:
        self.bodies: Dict[str, Tuple[bytes, List[int], str]] = {}
        self.lock = threading.Lock()
        self.count = 0

    def add(self, body: bytes, cuts: List[int], content_type: str) -> str:
        with self.lock:
            self.count += 1
            key = str(self.count)
            self.bodies[key] = (body, cuts, content_type)
        return key

    def __call__(self, request: RecordedRequest, writer: StreamWriter) -> None:
        body, cuts, content_type = self.bodies.pop(request.query["key"])
        writer.send_status(200, {"Content-Type": content_type})
        for piece in split_at(body, cuts):
            writer.write(piece)


@pytest.fixture
def body_server() -> Iterator[Tuple[StreamServer, _Bodies]]:
    bodies = _Bodies()
    with StreamServer() as server:
        server.route("/fuzz", bodies)
        yield server, bodies


def _stream_through(t: Any) -> Tuple[List[Event], List[TransportError], Optional[BaseException]]:
    errors: List[TransportError] = []
    t.on("error", errors.append)
    events: List[Event] = []
    failure: Optional[BaseException] = None
    try:
        for event in t.iter_events(timeout=20):
            events.append(event)
    except TransportError as exc:
        failure = exc
    finally:
        t.close()
    assert not [e for e in errors if "internal error" in e.message]  # the reader never crashed
    return events, errors, failure


@WIRE_FUZZ
@given(stream=noisy_sse(), data=st.data())
def test_sse_transport_on_noise(
    body_server: Tuple[StreamServer, _Bodies], stream: bytes, data: st.DataObject
) -> None:
    server, bodies = body_server
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    limit = data.draw(st.sampled_from([16, 1 << 20]), label="max_event_bytes")
    key = bodies.add(stream, cuts, "text/event-stream")
    t = SSETransport(
        server.url(f"/fuzz?key={key}"),
        max_event_bytes=limit,
        done_sentinel=None,
        reconnect_on_eof=False,
        reconnect=ReconnectPolicy(max_attempts=0),
    )
    events, errors, failure = _stream_through(t)
    parser = SSEParser(max_event_bytes=limit)
    expected = parser.feed(stream)
    assert rows(events) == rows(expected)
    if parser.errors:  # refused: the connection is dropped; no attempts left
        assert failure is not None and isinstance(failure.__cause__, MessageTooLarge)
    else:
        assert failure is None and errors == []


@WIRE_FUZZ
@given(stream=noisy_ndjson(), data=st.data())
def test_http_stream_transport_on_noise(
    body_server: Tuple[StreamServer, _Bodies], stream: bytes, data: st.DataObject
) -> None:
    server, bodies = body_server
    cuts = data.draw(st.lists(st.integers(0, len(stream)), max_size=8), label="cuts")
    limit = data.draw(st.sampled_from([16, 1 << 20]), label="max_line_bytes")
    key = bodies.add(stream, cuts, "application/x-ndjson")
    t = HTTPStreamTransport(
        server.url(f"/fuzz?key={key}"),
        max_line_bytes=limit,
        reconnect_on_eof=False,
        reconnect=ReconnectPolicy(max_attempts=0),
    )
    events, errors, failure = _stream_through(t)
    parser = NDJSONParser(max_line_bytes=limit)
    expected = parser.feed(stream)
    too_long = any(isinstance(e, MessageTooLarge) for e in parser.errors)
    if not too_long:
        expected += parser.flush()  # a clean end: the last line counts without its newline
    assert [json.dumps(e.data, sort_keys=True) for e in events] == [
        json.dumps(e.data, sort_keys=True) for e in expected
    ]
    if too_long:  # the connection is dropped; with no attempts left, that ends it
        assert isinstance(failure, ReconnectFailed)
        assert isinstance(failure.__cause__, MessageTooLarge)
        assert errors[-1] is failure
        errors = errors[:-1]
    else:
        assert failure is None
    assert all(isinstance(e, ProtocolError) for e in errors)  # malformed lines: reported
    assert [e.message for e in errors] == [e.message for e in parser.errors][: len(errors)]
    assert len(errors) == len(parser.errors) - too_long


def test_a_refused_event_sets_no_retry_however_it_is_cut() -> None:
    # Found by test_sse_parser_on_noise: fed whole, "retry: 100" was applied before the event
    # was found too long; fed byte by byte, it was not.
    for chunks in ([b"retry: 100\n"], [bytes([b]) for b in b"retry: 100\n"]):
        parser = SSEParser(max_event_bytes=4)
        for chunk in chunks:
            parser.feed(chunk)
        assert parser.retry is None and isinstance(parser.errors[0], MessageTooLarge)
    parser = SSEParser(max_event_bytes=12)  # a retry line within the limit still counts
    parser.feed(b"retry: 100\ndata: long enough to be refused\n\n")
    assert parser.retry == 100 and parser.errors
