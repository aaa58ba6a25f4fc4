"""NDJSONParser: framing, chunk boundaries, UTF-8, ids, malformed and over-long lines."""

from __future__ import annotations

import ast
import json
import random
from typing import Any, Iterable, List, Optional, Sequence, Tuple

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aikit_transports.errors import MessageTooLarge, ProtocolError
from aikit_transports.events import Event
from aikit_transports.parsers.ndjson import NDJSONParser

Outcome = Tuple[List[Tuple[Any, Optional[str]]], List[str]]


def run(chunks: Iterable[bytes], **options: Any) -> Outcome:
    """Feed ``chunks`` to a fresh parser; return ``[(data, id)]`` and the error messages."""
    parser = NDJSONParser(**options)
    events: List[Event] = []
    for chunk in chunks:
        events.extend(parser.feed(chunk))
    return [(e.data, e.id) for e in events], [str(err) for err in parser.errors]


def split_at(data: bytes, points: Sequence[int]) -> List[bytes]:
    cuts = [0, *sorted(points), len(data)]
    return [data[a:b] for a, b in zip(cuts, cuts[1:])]


def byte_by_byte(data: bytes) -> List[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


SAMPLE = (
    b'{"id": 1, "text": "caf\xc3\xa9 \xe2\x82\xac \xf0\x9f\x98\x80"}\r\n'
    b"\n"
    b'{"id": "b", "list": [1, 2, {"x": null}]}\r'
    b"  \t \n"
    b"not json\n"
    b'"a string"\r\r\n'
    b'{"no_id": true}\n'
    b"[1, 2, 3]\n"
)
SAMPLE_EVENTS = [
    ({"id": 1, "text": "café € 😀"}, "1"),
    ({"id": "b", "list": [1, 2, {"x": None}]}, "b"),
    ("a string", None),
    ({"no_id": True}, None),
    ([1, 2, 3], None),
]


# -- framing -----------------------------------------------------------------------------


@pytest.mark.parametrize("eol", [b"\n", b"\r\n", b"\r"])
def test_each_line_end_frames_lines(eol: bytes) -> None:
    data = eol.join([b'{"id": 1}', b'{"id": 2}', b"3"]) + eol
    assert run([data]) == ([({"id": 1}, "1"), ({"id": 2}, "2"), (3, None)], [])


def test_mixed_line_ends_and_blank_lines() -> None:
    assert run([SAMPLE]) == (
        SAMPLE_EVENTS,
        ["NDJSON line 5: invalid JSON (Expecting value at column 1): 'not json'"],
    )


def test_sample_byte_by_byte_gives_the_same_result() -> None:
    assert run(byte_by_byte(SAMPLE)) == run([SAMPLE])


def test_sample_every_two_and_three_way_split() -> None:
    expected = run([SAMPLE])
    for i in range(len(SAMPLE) + 1):
        assert run(split_at(SAMPLE, [i])) == expected, i
    rng = random.Random(7)
    for _ in range(300):
        points = [rng.randint(0, len(SAMPLE)) for _ in range(rng.randint(2, 12))]
        assert run(split_at(SAMPLE, points)) == expected, points


def test_crlf_split_across_chunks_is_one_line_end() -> None:
    parser = NDJSONParser()
    assert [e.data for e in parser.feed(b"1\r")] == [1]
    assert [e.data for e in parser.feed(b"\n2\r")] == [2]
    assert [e.data for e in parser.feed(b"\n")] == []
    assert parser.line_number == 2
    assert parser.feed(b"x\n") == []
    assert "line 3" in str(parser.errors[0])


def test_cr_cr_counts_a_blank_line() -> None:
    parser = NDJSONParser()
    parser.feed(b"1\r\rbad\n")
    assert parser.line_number == 3
    assert "NDJSON line 3" in str(parser.errors[0])


def test_event_is_delivered_as_soon_as_its_line_end_arrives() -> None:
    parser = NDJSONParser()
    assert parser.feed(b'{"id": 1') == []
    assert [e.id for e in parser.feed(b"}")] == []
    assert [e.id for e in parser.feed(b"\n")] == ["1"]
    assert [e.id for e in parser.feed(b'{"id": 2}\r')] == ["2"]  # a lone CR already ends it


def test_unicode_separators_inside_strings_do_not_split_lines() -> None:
    value = {"id": 1, "text": "a\u2028b\u2029c\x85d\x0be\x0cf\x1cg\u000bh"}
    data = json.dumps(value, ensure_ascii=False).encode() + b"\n"
    assert run([data]) == ([(value, "1")], [])
    assert run(byte_by_byte(data)) == ([(value, "1")], [])


def test_whitespace_around_a_value_is_allowed() -> None:
    assert run([b'  {"id": 1}  \r\n\t[2]\t\n']) == ([({"id": 1}, "1"), ([2], None)], [])


def test_blank_and_whitespace_only_lines_are_ignored_but_counted() -> None:
    parser = NDJSONParser()
    assert [e.data for e in parser.feed(b"\n\n \n\t\r\n1\n\n")] == [1]
    assert parser.line_number == 6
    assert parser.errors == []


def test_byte_order_mark_is_dropped_at_the_start_only() -> None:
    parser = NDJSONParser()
    assert [e.data for e in parser.feed(b"\xef\xbb")] == []
    assert [e.data for e in parser.feed(b"\xbf1\n")] == [1]
    assert parser.feed(b"\xef\xbb\xbf2\n") == []
    assert len(parser.errors) == 1
    parser.reset()
    assert [e.data for e in parser.feed(b"\xef\xbb\xbf3\n")] == [3]


# -- UTF-8 ---------------------------------------------------------------------------------


def test_multibyte_characters_split_across_chunks() -> None:
    text = '"é€😀"\n'.encode()
    for i in range(1, len(text)):
        assert run([text[:i], text[i:]]) == ([("é€😀", None)], [])


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    assert run([b'"a\xffb"\n', b'"\xc3"\n']) == ([("a\ufffdb", None), ("\ufffd", None)], [])


def test_cr_then_split_multibyte_character() -> None:
    assert run([b'"a"\r\xc3', b"\xa9\n"]) == (
        [("a", None)],
        ["NDJSON line 2: invalid JSON (Expecting value at column 1): 'é'"],
    )


# -- malformed lines ---------------------------------------------------------------------


def test_malformed_lines_are_reported_and_valid_lines_around_them_kept() -> None:
    data = b'{"id": 1}\n{"id": 2\n{"id": 3}\n[1,]\n{"id": 4}\n1 2\n{"id": 5}\n'
    events, errors = run([data])
    assert [i for _, i in events] == ["1", "3", "4", "5"]
    assert len(errors) == 3
    assert errors[0].startswith("NDJSON line 2: invalid JSON (")
    assert "'{\"id\": 2'" in errors[0]
    assert errors[1].startswith("NDJSON line 4: ")
    assert errors[2].startswith("NDJSON line 6: invalid JSON (Extra data")


def test_malformed_line_numbers_span_chunks() -> None:
    parser = NDJSONParser(transport_id="t-1")
    parser.feed(b"1\n2\n")
    parser.feed(b"3\nnope")
    parser.feed(b"\n4\n")
    assert parser.line_number == 5
    (error,) = parser.errors
    assert isinstance(error, ProtocolError)
    assert error.transport_id == "t-1"
    assert "NDJSON line 4" in error.message and "'nope'" in error.message


def test_snippet_of_a_long_malformed_line_is_short() -> None:
    line = "{" + "x" * 500
    (error,) = run([line.encode() + b"\n"])[1]
    snippet = error.split(": ", 2)[2]
    assert len(ast.literal_eval(snippet)) <= 60
    assert ast.literal_eval(snippet).startswith("{xxx")


def test_every_kind_of_bad_line_is_reported_without_raising() -> None:
    deep = b"[" * 100_000 + b"]" * 100_000
    huge_int = b"1" * 5000
    bad = [
        b"{",
        b"}",
        b"[1",
        b"nul",
        b'"abc',
        b'{"a" 1}',
        b"'single'",
        b"\x00",
        deep,
        huge_int,
        b'"tab\tinside"',
        b"\xef\xbb\xbf1",
        b"1e",
        b"{}{}",
    ]
    parser = NDJSONParser()
    events = parser.feed(b"\n".join(bad) + b"\n")
    assert events == []
    assert [e.message.split(":")[0] for e in parser.errors] == [
        f"NDJSON line {n}" for n in range(1, len(bad) + 1)
    ]
    assert "nested too deeply" in parser.errors[8].message


def test_errors_accumulate_until_taken() -> None:
    parser = NDJSONParser()
    parser.feed(b"x\n")
    taken, parser.errors = parser.errors, []
    assert len(taken) == 1
    parser.feed(b"y\n1\n")
    assert len(parser.errors) == 1 and "line 2" in parser.errors[0].message


# -- ids -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "line, expected",
    [
        (b'{"id": 7}', "7"),
        (b'{"id": "abc"}', "abc"),
        (b'{"id": 1.5}', "1.5"),
        (b'{"id": ""}', ""),
        (b'{"id": null}', None),
        (b'{"other": 1}', None),
        (b"[1, 2]", None),
        (b'"id"', None),
        (b"42", None),
        (b"null", None),
        (b'{"nested": {"id": 3}}', None),
    ],
)
def test_id_from_the_id_field(line: bytes, expected: Optional[str]) -> None:
    assert run([line + b"\n"])[0][0][1] == expected


def test_custom_id_field_and_disabled_ids() -> None:
    data = b'{"id": 1, "seq": 10}\n{"seq": 11}\n'
    assert [i for _, i in run([data], id_field="seq")[0]] == ["10", "11"]
    parser = NDJSONParser(id_field=None)
    assert [e.id for e in parser.feed(data)] == [None, None]
    assert parser.last_id is None


def test_last_id_is_the_latest_id_and_survives_reset() -> None:
    assert NDJSONParser().last_id is None
    parser = NDJSONParser()
    parser.feed(b'{"id": 1}\n{"id": 2}\n{"x": 0}\n[3]\nbad\n')
    assert parser.last_id == "2"
    parser.feed(b'{"id": "9"}\n')
    assert parser.last_id == "9"
    parser.reset()
    assert parser.last_id == "9"
    parser.feed(b'{"id": 10}\n')
    assert parser.last_id == "10"


def test_last_id_from_lines_parsed_after_an_error_in_the_same_chunk() -> None:
    parser = NDJSONParser()
    parser.feed(b'{"id": 1}\nbad\n{"id": 2}\n\n{"id": 3}\n{"x": 1}\n')
    assert parser.last_id == "3"


# -- event fields --------------------------------------------------------------------------


def test_event_fields() -> None:
    parser = NDJSONParser(transport_id="tx")
    first, second = parser.feed(b'{"id": 1}\n{"id": 2}\n')
    assert isinstance(first, Event)
    assert first == Event(
        data={"id": 1},
        type="message",
        id="1",
        retry=None,
        transport_id="tx",
        received_at=first.received_at,
    )
    assert first.received_at == second.received_at  # one clock read per feed
    (third,) = parser.feed(b"3\n")
    assert third.received_at >= first.received_at


def test_feed_accepts_bytes_like_objects() -> None:
    parser = NDJSONParser()
    assert [e.data for e in parser.feed(bytearray(b"1\n"))] == [1]
    assert [e.data for e in parser.feed(memoryview(b"2\n"))] == [2]
    assert parser.feed(b"") == []


# -- reset and flush -------------------------------------------------------------------------


def test_reset_drops_partial_line_decoder_state_and_line_numbers() -> None:
    parser = NDJSONParser()
    parser.feed(b'1\n{"id": 5, "a": "\xc3')
    assert parser.line_number == 1
    parser.reset()
    assert parser.line_number == 0
    assert [e.data for e in parser.feed(b'"x"\n')] == ["x"]
    assert parser.errors == []
    assert parser.line_number == 1


def test_reset_forgets_a_pending_cr() -> None:
    parser = NDJSONParser()
    parser.feed(b"1\r")
    parser.reset()
    parser.feed(b"\nbad\n")
    assert "NDJSON line 2" in parser.errors[0].message


def test_flush_parses_a_last_line_without_line_end() -> None:
    parser = NDJSONParser()
    assert parser.feed(b'1\n{"id": 2}') != []
    assert [e.id for e in parser.flush()] == ["2"]
    assert parser.flush() == []
    parser.reset()
    parser.feed(b'{"id": 3, "cut')
    assert parser.flush() == []
    assert "NDJSON line 1" in parser.errors[0].message
    parser.reset()
    parser.feed(b'"\xc3')
    assert [e.data for e in parser.flush()] == [] and len(parser.errors) == 2
    parser.reset()
    parser.feed(b"   ")
    assert parser.flush() == [] and len(parser.errors) == 2


# -- size limit ----------------------------------------------------------------------------


def test_line_of_exactly_the_limit_passes() -> None:
    line = b'"' + b"x" * 8 + b'"'  # 10 bytes
    assert run([line + b"\r\n", line + b"\n"], max_line_bytes=10) == (
        [("x" * 8, None), ("x" * 8, None)],
        [],
    )


def test_line_over_the_limit_stops_the_parser_until_reset() -> None:
    parser = NDJSONParser(max_line_bytes=10, transport_id="t")
    events = parser.feed(b'1\n{"id": 2}\n"0123456789"\n3\n')
    assert [e.data for e in events] == [1, {"id": 2}]
    (error,) = parser.errors
    assert isinstance(error, MessageTooLarge)
    assert error.retryable and error.transport_id == "t"
    assert "line 3" in error.message and "10 bytes" in error.message
    assert parser.feed(b"4\n") == []
    assert parser.flush() == []
    parser.reset()
    assert [e.data for e in parser.feed(b"5\n")] == [5]
    assert len(parser.errors) == 1


def test_limit_counts_bytes_not_characters() -> None:
    line = ('"' + "é" * 4 + '"').encode()  # 6 characters, 10 bytes
    assert run([line + b"\n"], max_line_bytes=10)[1] == []
    assert "longer than the limit" in run([line + b"\n"], max_line_bytes=9)[1][0]


def test_endless_line_is_caught_as_soon_as_it_passes_the_limit() -> None:
    parser = NDJSONParser(max_line_bytes=4096)
    assert [e.data for e in parser.feed(b"1\n[")] == [1]
    for _ in range(3):
        assert parser.feed(b"0," * 512) == []  # 1 + 3 * 1024 bytes: under the limit
    assert parser.errors == []
    parser.feed(b"0," * 512)  # 4097 bytes: over
    assert len(parser.errors) == 1 and "line 2" in parser.errors[0].message
    for _ in range(100):
        assert parser.feed(b"0," * 4096) == []
    assert len(parser.errors) == 1


def test_over_long_line_split_anywhere_gives_the_same_outcome() -> None:
    data = b'{"id": 1}\r\n"abcdefgh"\r\n"abcdefghijk"\r\n{"id": 2}\n'
    expected = run([data], max_line_bytes=10)
    assert expected[0] == [({"id": 1}, "1"), ("abcdefgh", None)]
    assert "line 3" in expected[1][0]
    for i in range(len(data) + 1):
        for j in range(i, len(data) + 1, 3):
            assert run(split_at(data, [i, j]), max_line_bytes=10) == expected, (i, j)


def test_many_short_lines_in_a_chunk_bigger_than_the_limit() -> None:
    data = b"".join(b"%d\n" % i for i in range(1000))
    events, errors = run([data[:7], data[7:]], max_line_bytes=8)
    assert errors == [] and [d for d, _ in events] == list(range(1000))


def test_invalid_max_line_bytes() -> None:
    with pytest.raises(ValueError, match="max_line_bytes"):
        NDJSONParser(max_line_bytes=0)


# -- properties ----------------------------------------------------------------------------

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**20), max_value=10**20)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=5), children, max_size=4)
    ),
    max_leaves=12,
)
ids = st.none() | st.integers(min_value=0, max_value=10**6) | st.text(max_size=8)
lines = st.one_of(
    st.tuples(st.just("value"), json_values, ids),
    st.tuples(st.just("blank"), st.sampled_from(["", " ", "\t", " \t "]), st.none()),
    st.tuples(st.just("bad"), st.sampled_from(["{", "[1,", "x", "1 2", '"open', "{}}"]), st.none()),
)
line_ends = st.sampled_from([b"\n", b"\r\n", b"\r"])


def build(entries: List[Tuple[str, Any, Any]], ends: List[bytes]) -> Tuple[bytes, Outcome]:
    """Serialise the entries and predict what the parser must produce."""
    out = b""
    events: List[Tuple[Any, Optional[str]]] = []
    errors: List[str] = []
    previous_end = b""
    for number, ((kind, value, ident), end) in enumerate(zip(entries, ends), 1):
        if kind == "blank" and not value and previous_end == b"\r":
            value = " "  # an empty line right after a CR would merge into a CRLF
        previous_end = end
        if kind == "value":
            if ident is not None:
                value = {"id": ident, "v": value}
            out += json.dumps(value, ensure_ascii=False).encode() + end
            found = value.get("id") if isinstance(value, dict) else None
            events.append((value, None if found is None else str(found)))
        else:
            out += value.encode() + end
            if kind == "bad":
                errors.append(f"NDJSON line {number}:")
    return out, (events, errors)


@settings(max_examples=150, deadline=None)
@given(
    entries=st.lists(lines, max_size=12),
    ends=st.lists(line_ends, min_size=12, max_size=12),
    points=st.lists(st.integers(min_value=0, max_value=10_000), max_size=10),
)
def test_any_split_gives_the_same_events(
    entries: List[Tuple[str, Any, Any]], ends: List[bytes], points: List[int]
) -> None:
    data, (expected_events, expected_errors) = build(entries, ends)
    events, errors = run(split_at(data, [p % (len(data) + 1) for p in points]))
    assert events == expected_events
    assert [e.split(" ", 3)[:3] for e in errors] == [e.split(" ")[:3] for e in expected_errors]
    assert run([data]) == (events, errors)


@settings(max_examples=100, deadline=None)
@given(
    data=st.binary(max_size=300),
    points=st.lists(st.integers(0, 300), max_size=8),
    limit=st.integers(min_value=1, max_value=64),
)
def test_feed_never_raises_and_is_split_invariant(
    data: bytes, points: List[int], limit: int
) -> None:
    whole = run([data], max_line_bytes=limit)
    assert run(split_at(data, [p % (len(data) + 1) for p in points]), max_line_bytes=limit) == whole


def test_lines_that_only_form_json_together_are_each_reported() -> None:
    # Joined with commas these two bad lines would read as two valid arrays; each line is
    # judged on its own.
    events, errors = run([b"[[1]\n[2]],[3]\n"])
    assert events == [] and len(errors) == 2
