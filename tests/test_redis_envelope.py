"""The Redis envelope and URL checks, without a server: exact round trips and clear refusals."""

from __future__ import annotations

import math
from typing import Any

import pytest

from aikit_transports import Event

pytest.importorskip("redis")

from hypothesis import given
from hypothesis import strategies as st

from aikit_transports.contrib.redis import (
    RedisRelay,
    RedisStreamTransport,
    decode_envelope,
    encode_end_marker,
    encode_envelope,
    parse_redis_url,
    resp,
)
from aikit_transports.contrib.redis.envelope import decode_fields, pack_entry, pack_event
from aikit_transports.contrib.redis.resp import (
    Incomplete,
    Reader,
    ReplyError,
    ReplyReader,
    hiredis_reader,
    new_reader,
    pack_args,
    pack_command,
    parse_reply,
)

#: The readers RedisLink may use: hiredis' (when installed) and the pure-Python fallback.
READERS = [pytest.param(Reader, id="python")]
if resp.hiredis is not None:
    READERS.append(pytest.param(hiredis_reader, id="hiredis"))


def _round_trip(data: Any, **kw: Any) -> Any:
    flat = encode_envelope(data, **kw)
    assert all(isinstance(x, bytes) for x in flat)
    return decode_fields(flat)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4)
    ),
    max_leaves=12,
)


@given(st.text())
def test_text_round_trips_exactly(text: str) -> None:
    env = _round_trip(text)
    assert env.data == text and type(env.data) is str


@given(st.binary())
def test_bytes_round_trip_exactly(data: bytes) -> None:
    env = _round_trip(data)
    assert env.data == data and type(env.data) is bytes


@given(json_values)
def test_json_values_round_trip_exactly(value: Any) -> None:
    if isinstance(value, str):
        value = {"s": value}  # a bare str is text, not JSON (and round-trips as text)
    assert _round_trip(value).data == value


def test_lone_surrogates_and_separators_survive() -> None:
    text = "a\ud800b\u2028c\r\nd\x00"
    assert _round_trip(text).data == text


def test_nan_and_big_numbers() -> None:
    env = _round_trip({"n": float("nan"), "big": 2**80, "f": 0.1})
    assert math.isnan(env.data["n"]) and env.data["big"] == 2**80 and env.data["f"] == 0.1


def test_metadata_round_trips() -> None:
    env = _round_trip("x", type="update", upstream_id="42", retry=1500, received_at=1700000000.25)
    assert (env.type, env.upstream_id, env.retry, env.received_at, env.end) == (
        "update",
        "42",
        1500,
        1700000000.25,
        False,
    )
    plain = _round_trip("x")
    assert (plain.type, plain.upstream_id, plain.retry, plain.received_at) == (
        "message",
        None,
        None,
        None,
    )


def test_end_marker() -> None:
    env = decode_fields(encode_end_marker("99", 1.5))
    assert env.end and env.upstream_id == "99" and env.received_at == 1.5


def test_str_keys_are_accepted() -> None:
    assert decode_envelope({"v": "1", "e": "s", "d": "hi"}).data == "hi"


def test_data_that_is_not_json_is_refused() -> None:
    with pytest.raises(TypeError, match="neither str, bytes nor JSON"):
        encode_envelope(object())


@pytest.mark.parametrize(
    "fields, message",
    [
        ({b"foo": b"bar"}, "not an aikit envelope"),
        ({}, "not an aikit envelope"),
        ({b"v": b"9", b"d": b"x"}, "unsupported envelope version"),
        ({b"v": b"1"}, "no 'd'"),
        ({b"v": b"1", b"e": b"j", b"d": b"{nope"}, "not JSON"),
        ({b"v": b"1", b"e": b"?", b"d": b"x"}, "unknown encoding"),
        ({b"v": b"1", b"d": b"x", b"at": b"soon"}, "not a number"),
    ],
)
def test_entries_that_are_not_envelopes(fields: dict[bytes, bytes], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        decode_envelope(fields)


# --- URLs ---------------------------------------------------------------------------------


def test_url_forms() -> None:
    a = parse_redis_url("redis://:s3cret@example.com:6380/2?stream=feed&group=g")
    assert a.where == "example.com:6380"
    assert a.kwargs["db"] == 2 and a.kwargs["password"] == "s3cret"
    assert a.params == {"stream": "feed", "group": "g"}
    assert parse_redis_url("redis://localhost").where == "localhost:6379"
    assert parse_redis_url("unix:///tmp/redis.sock?db=1").where == "/tmp/redis.sock"
    assert parse_redis_url("rediss://h/0", verify=False).kwargs["ssl_cert_reqs"] == "none"


@pytest.mark.parametrize(
    "url, message",
    [
        ("redis://host:notaport/0", "malformed Redis URL"),
        ("redis://host:99999/0", "malformed Redis URL"),
        ("redis://host:/0", "empty port"),
        ("redis://host/abc", "database number"),
        ("http://host/0", "not a Redis one"),
        ("unix://", "socket path"),
        ("redis://host/0?stream=", "empty"),
        ("redis://host/0?nonsense_option=1", "unknown option"),
        ("", "non-empty"),
    ],
)
def test_malformed_urls_raise_value_error(url: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_redis_url(url)


@pytest.mark.parametrize(
    "args, kwargs, message",
    [
        (("redis://h:notaport/0", "s"), {}, "malformed"),
        (("redis://h/0",), {}, "stream is required"),
        (("redis://h/0?stream=a", "b"), {}, "given twice"),
        (("redis://h/0", "s"), {"consumer": "c"}, "consumer needs a group"),
        (("redis://h/0", "s"), {"block_ms": 0}, "block_ms"),
        (("redis://h/0", "s"), {"claim_idle": -1}, "claim_idle"),
        (("redis://h/0", "s"), {"count": 0}, "count"),
        (("redis://h/0", "s"), {"last_event_id": "yesterday"}, "last_event_id"),
        (("redis://h/0", "s"), {"group": "has space"}, "group"),
        (("http://h/0", "s"), {}, "scheme"),
    ],
)
def test_transport_checks_its_options(args: Any, kwargs: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisStreamTransport(*args, **kwargs)


def test_transport_takes_the_stream_from_the_url() -> None:
    t = RedisStreamTransport("redis://:pw@h:6379/0?stream=feed&group=g&consumer=c1")
    assert (t.stream, t.group, t.consumer) == ("feed", "g", "c1")
    assert "pw" not in repr(t) and "pw" not in t.safe_url
    t.close()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"maxlen": 0}, "maxlen"),
        ({"lease_ttl": 0}, "lease_ttl"),
        ({"batch_size": 0}, "batch_size"),
        ({"dedupe_window": -1}, "dedupe_window"),
    ],
)
def test_relay_checks_its_options(kwargs: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        RedisRelay(lambda last: None, "redis://h/0", "s", **kwargs)  # type: ignore[arg-type,return-value]


def test_relay_refuses_a_bad_url_and_a_bad_upstream() -> None:
    with pytest.raises(ValueError, match="malformed"):
        RedisRelay(lambda last: None, "redis://h:x/0", "s")  # type: ignore[arg-type,return-value]
    with pytest.raises(ValueError, match="transport must be"):
        RedisRelay(42, "redis://h/0", "s")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="given twice"):
        RedisRelay(lambda last: None, "redis://h/0?stream=a", "b")  # type: ignore[arg-type,return-value]


# --- RESP2 and the relay's packing ------------------------------------------------------


def _encode_reply(value: Any) -> bytes:
    if value is None:
        return b"$-1\r\n"
    if isinstance(value, int):
        return b":%d\r\n" % value
    if isinstance(value, bytes):
        return b"$%d\r\n%b\r\n" % (len(value), value)
    return b"*%d\r\n" % len(value) + b"".join(_encode_reply(v) for v in value)


replies = st.recursive(
    st.none() | st.integers() | st.binary(max_size=20) | st.sampled_from([b"\r\n", b"$3\r\n"]),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)
#: What Redis can send: integers are signed 64-bit (hiredis refuses others as malformed).
redis_replies = st.recursive(
    st.none()
    | st.integers(-(2**63), 2**63 - 1)
    | st.binary(max_size=20)
    | st.sampled_from([b"\r\n", b"$3\r\n"]),
    lambda children: st.lists(children, max_size=5),
    max_leaves=20,
)


@given(replies)
def test_replies_parse_and_every_prefix_is_incomplete(value: Any) -> None:
    wire = _encode_reply(value)
    assert parse_reply(wire + b"+NEXT\r\n") == (value, len(wire))
    for cut in range(len(wire)):
        with pytest.raises(Incomplete):
            parse_reply(wire[:cut])


def test_simple_strings_errors_and_null_arrays() -> None:
    assert parse_reply(b"+OK\r\n") == (b"OK", 5)
    assert parse_reply(b"*-1\r\n") == (None, 5)
    error, _ = parse_reply(b"-BUSYGROUP Consumer Group name already exists\r\n")
    assert isinstance(error, ReplyError) and error.code == "BUSYGROUP"
    with pytest.raises(ValueError):
        parse_reply(b"?what\r\n")


@pytest.mark.parametrize("make", READERS)
@given(value=st.lists(redis_replies, min_size=1, max_size=3), cuts=st.lists(st.integers(0, 400)))
def test_readers_give_what_parse_reply_gives_whatever_the_reads(
    make: Any, value: list[Any], cuts: list[int]
) -> None:
    wire = b"".join(map(_encode_reply, value))
    reader: ReplyReader = make()
    got = []
    start = 0
    for cut in sorted({c for c in cuts if c < len(wire)} | {len(wire)}):
        reader.feed(wire[start:cut])
        start = cut
        reply = reader.gets()
        while reply is not False:
            got.append(reply)
            reply = reader.gets()
    assert got == value


@pytest.mark.parametrize("make", READERS)
def test_readers_give_simple_strings_errors_and_nulls_as_parse_reply_does(make: Any) -> None:
    reader: ReplyReader = make()
    assert reader.gets() is False
    reader.feed(b"+OK\r\n*-1\r\n$-1\r\n:-7\r\n*2\r\n-NOGROUP no such key\r\n$1\r\nx\r\n")
    assert [reader.gets() for _ in range(4)] == [b"OK", None, None, -7]
    error, item = reader.gets()
    assert isinstance(error, ReplyError) and error.code == "NOGROUP"
    assert error.message == "NOGROUP no such key" and item == b"x"
    reader.feed(b"-weird \xff\r\n")
    error = reader.gets()
    assert isinstance(error, ReplyError) and error.code == "ERR"
    assert error.message == "weird \ufffd" and reader.gets() is False
    reader.feed(b"+OK\r\n+O")
    assert reader.gets() == b"OK" and reader.has_data()
    assert reader.gets() is False and reader.has_data()
    reader.feed(b"K\r\n")
    assert reader.gets() == b"OK" and not reader.has_data()
    reader.feed(b"?what\r\n")
    with pytest.raises(ValueError):
        reader.gets()


def test_new_reader_is_hiredis_when_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    if resp.hiredis is not None:
        assert isinstance(new_reader(), resp.hiredis.Reader)
    monkeypatch.setattr(resp, "hiredis", None)
    assert isinstance(new_reader(), Reader)
    with pytest.raises(ImportError, match="aikit-transports"):
        hiredis_reader()


def test_commands_are_packed_as_bulk_strings() -> None:
    assert pack_command(["XADD", b"s", 7, 1.5]) == (
        b"*4\r\n$4\r\nXADD\r\n$1\r\ns\r\n$1\r\n7\r\n$3\r\n1.5\r\n"
    )
    tail, count = pack_args([b"x"])
    assert pack_command(["A"], tail, count) == b"*2\r\n$1\r\nA\r\n$1\r\nx\r\n"


@pytest.mark.parametrize(
    "event",
    [
        Event("text", id="7", received_at=5.0),
        Event(b"\x00bytes\r\n", type="binary", received_at=5.0),
        Event({"json": [1, 2]}, id="x", retry=1500, received_at=5.0),
        Event("typed", type="update", id=None, received_at=5.0),
    ],
)
def test_the_relays_packing_is_the_envelope(event: Event) -> None:
    expected = pack_entry(encode_envelope(event.data, event.type, event.id, event.retry, 99.5))
    assert pack_event(event, 99.5) == expected
