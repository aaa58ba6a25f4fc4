"""FrameParser, the sans-I/O reader of server-to-client WebSocket frames (RFC 6455 §5), with no
sockets: frames built here byte by byte, fed whole, split at every boundary and at random."""

from __future__ import annotations

import tracemalloc
import zlib
from typing import Any, List, Sequence, Tuple, Union

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from aikit_transports.events import Event
from aikit_transports.parsers.deflate import DeflateParams, Inflater
from aikit_transports.parsers.websocket import FrameError, FrameParser

Message = Union[str, bytes]


def frame(
    opcode: int, payload: bytes = b"", fin: bool = True, rsv: int = 0, mask: bool = False
) -> bytes:
    """One frame as a server would write it (unmasked unless ``mask``)."""
    head = bytes([(0x80 if fin else 0) | rsv << 4 | opcode])
    n = len(payload)
    mask_bit = 0x80 if mask else 0
    if n < 126:
        head += bytes([mask_bit | n])
    elif n < 1 << 16:
        head += bytes([mask_bit | 126]) + n.to_bytes(2, "big")
    else:
        head += bytes([mask_bit | 127]) + n.to_bytes(8, "big")
    if mask:
        key = b"\x01\x02\x03\x04"
        payload = bytes(b ^ key[i % 4] for i, b in enumerate(payload))
        head += key
    return head + payload


def message_frames(message: Message, sizes: Sequence[int] = ()) -> bytes:
    """``message`` as one frame, or fragmented into pieces of ``sizes`` (the rest in the last)."""
    opcode = 1 if isinstance(message, str) else 2
    data = message.encode() if isinstance(message, str) else message
    pieces: List[bytes] = []
    pos = 0
    for size in sizes:
        if pos + size >= len(data):
            break
        pieces.append(data[pos : pos + size])
        pos += size
    pieces.append(data[pos:])
    out = b""
    for i, piece in enumerate(pieces):
        out += frame(opcode if i == 0 else 0, piece, fin=i == len(pieces) - 1)
    return out


def messages(events: Sequence[Event]) -> List[Tuple[str, Message]]:
    return [(e.type, e.data) for e in events]


def feed_all(parser: FrameParser, chunks: Sequence[bytes]) -> List[Event]:
    out: List[Event] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk, 1.0))
    return out


def test_text_and_binary_messages_become_events() -> None:
    parser = FrameParser(transport_id="t1")
    events = parser.feed(frame(1, "héllo".encode()) + frame(2, b"\x00\xff"), 5.0)
    assert messages(events) == [("message", "héllo"), ("binary", b"\x00\xff")]
    assert all(e.transport_id == "t1" and e.received_at == 5.0 and e.id is None for e in events)


@pytest.mark.parametrize("size", [0, 1, 125, 126, 65535, 65536, 70000])
def test_every_length_encoding(size: int) -> None:
    parser = FrameParser()
    text = "a" * size
    assert messages(parser.feed(frame(1, text.encode()))) == [("message", text)]


def test_fragmented_message_is_reassembled_with_controls_in_between() -> None:
    parser = FrameParser()
    data = (
        frame(1, b"he", fin=False) + frame(9, b"p1") + frame(0, b"ll", fin=False) + frame(0, b"o")
    )
    assert messages(parser.feed(data)) == [("message", "hello")]
    assert parser.controls == [(9, b"p1")]


def test_every_split_point_gives_the_same_messages() -> None:
    stream = (
        frame(1, b"first")
        + frame(2, b"\x01" * 300, fin=False)
        + frame(10, b"pong")
        + frame(0, b"\x02" * 70000)
        + frame(1, "multi-byte \u00e9\u4e2d\U0001f600".encode())
    )
    expected = [
        ("message", "first"),
        ("binary", b"\x01" * 300 + b"\x02" * 70000),
        ("message", "multi-byte \u00e9\u4e2d\U0001f600"),
    ]
    for cut in range(0, len(stream), 97):
        parser = FrameParser()
        assert messages(feed_all(parser, [stream[:cut], stream[cut:]])) == expected
        assert parser.controls == [(10, b"pong")]


def test_one_byte_at_a_time() -> None:
    stream = frame(1, b"abc") + frame(2, b"x" * 200) + frame(1, "\u00e9".encode())
    parser = FrameParser()
    events = feed_all(parser, [stream[i : i + 1] for i in range(len(stream))])
    assert messages(events) == [("message", "abc"), ("binary", b"x" * 200), ("message", "\u00e9")]


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.one_of(st.text(max_size=300), st.binary(max_size=300)),
            st.lists(st.integers(1, 50), max_size=4),
        ),
        max_size=12,
    ),
    st.lists(st.integers(1, 400), max_size=30),
)
def test_random_messages_fragments_and_chunking(
    spec: List[Tuple[Message, List[int]]], cuts: List[int]
) -> None:
    stream = b"".join(message_frames(m, sizes) for m, sizes in spec)
    chunks = []
    pos = 0
    for size in cuts:
        chunks.append(stream[pos : pos + size])
        pos += size
    chunks.append(stream[pos:])
    parser = FrameParser()
    expected = [("message" if isinstance(m, str) else "binary", m) for m, _ in spec]
    assert messages(feed_all(parser, chunks)) == expected


def test_close_frame_sets_closed_and_ends_parsing() -> None:
    parser = FrameParser()
    events = parser.feed(
        frame(1, b"a") + frame(8, (1001).to_bytes(2, "big") + b"bye") + frame(1, b"b")
    )
    assert messages(events) == [("message", "a")]
    assert parser.closed == (1001, "bye")
    assert parser.feed(frame(1, b"after")) == []


def test_close_frame_without_code_is_1005() -> None:
    parser = FrameParser()
    parser.feed(frame(8))
    assert parser.closed == (1005, "")


def test_message_over_the_limit_fails_from_the_header_alone() -> None:
    parser = FrameParser(max_message_bytes=1000)
    ok = frame(1, b"x" * 1000)
    assert len(parser.feed(ok)) == 1
    # only the header of a 16 MiB frame: refused before any payload is buffered
    header = frame(2, b"")[:1] + bytes([127]) + (16 << 20).to_bytes(8, "big")
    with pytest.raises(FrameError) as info:
        parser.feed(frame(1, b"kept") + header)
    assert info.value.code == 1009
    assert messages(info.value.events) == [("message", "kept")]


def test_fragments_count_towards_the_limit() -> None:
    parser = FrameParser(max_message_bytes=10)
    parser.feed(frame(1, b"123456", fin=False))
    with pytest.raises(FrameError) as info:
        parser.feed(frame(0, b"78901"))
    assert info.value.code == 1009


def test_small_limit_still_applies_to_short_frames() -> None:
    parser = FrameParser(max_message_bytes=3)
    with pytest.raises(FrameError) as info:
        parser.feed(frame(1, b"four"))
    assert info.value.code == 1009


def test_invalid_utf8_is_1007_and_keeps_earlier_messages() -> None:
    parser = FrameParser()
    with pytest.raises(FrameError) as info:
        parser.feed(frame(1, b"good") + frame(1, b"bad \xff"))
    assert info.value.code == 1007
    assert messages(info.value.events) == [("message", "good")]


def test_invalid_utf8_split_across_fragments_is_caught_on_the_whole_message() -> None:
    parser = FrameParser()
    euro = "\u20ac".encode()
    # a valid character split across two fragments is fine ...
    assert messages(parser.feed(frame(1, euro[:1], fin=False) + frame(0, euro[1:]))) == [
        ("message", "\u20ac")
    ]
    # ... a truncated one is not
    with pytest.raises(FrameError) as info:
        parser.feed(frame(1, euro[:1], fin=False) + frame(0, b"x"))
    assert info.value.code == 1007


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (frame(1, b"masked", mask=True), "masked"),
        (frame(1, b"x", rsv=4), "reserved bits"),
        (frame(3, b"x"), "unknown opcode"),
        (frame(11, b"x"), "unknown opcode"),
        (frame(9, b"x", fin=False), "control frame"),
        (frame(9, b"x" * 126), "control frame"),
        (frame(0, b"x"), "continuation frame"),
        (frame(1, b"a", fin=False) + frame(2, b"b"), "inside a fragmented"),
        (frame(8, b"\x03"), "1-byte"),
    ],
)
def test_protocol_violations_are_1002(data: bytes, what: str) -> None:
    with pytest.raises(FrameError, match=what) as info:
        FrameParser().feed(data)
    assert info.value.code == 1002


def test_reset_forgets_partial_state() -> None:
    parser = FrameParser()
    parser.feed(frame(1, b"part", fin=False) + frame(1, b"xyz")[:2])
    parser.reset()
    assert messages(parser.feed(frame(1, b"fresh"))) == [("message", "fresh")]


# -- close frames (RFC 6455 §7.4, Autobahn 7.x) --------------------------------------------------


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_close_codes_no_endpoint_may_send_are_1002(code: int) -> None:
    with pytest.raises(FrameError, match=f"invalid code {code}") as info:
        FrameParser().feed(frame(8, code.to_bytes(2, "big")))
    assert info.value.code == 1002


@pytest.mark.parametrize("code", [1000, 1001, 1002, 1003, 1007, 1011, 1012, 1014, 3000, 4999])
def test_close_codes_an_endpoint_may_send_are_kept(code: int) -> None:
    parser = FrameParser()
    parser.feed(frame(8, code.to_bytes(2, "big") + "r\u00e9ason".encode()))
    assert parser.closed == (code, "r\u00e9ason")


def test_close_reason_that_is_not_utf8_is_1007() -> None:
    with pytest.raises(FrameError, match="reason is not UTF-8") as info:
        FrameParser().feed(
            frame(8, (1000).to_bytes(2, "big") + b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80")
        )
    assert info.value.code == 1007


# -- bounded messages ----------------------------------------------------------------------------


def test_empty_continuation_frames_count_and_end_with_1009_in_flat_memory() -> None:
    limit = 1 << 20
    parser = FrameParser(max_message_bytes=limit)
    parser.feed(frame(1, b"a", fin=False))
    batch = frame(0, b"", fin=False) * 32768  # 64 KiB of empty continuation frames
    tracemalloc.start()
    try:
        with pytest.raises(FrameError) as info:
            for _ in range(64):  # 4 MiB on the wire: more fragments than the limit allows
                parser.feed(batch)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    assert peak < 256 * 1024  # the 64 KiB chunk and the parser's own state, not 2 MiB


def test_fragments_are_assembled_in_one_buffer() -> None:
    parser = FrameParser(max_message_bytes=1 << 20)
    data = b"".join(
        frame(2 if i == 0 else 0, bytes([i % 256]) * 1000, fin=False) for i in range(500)
    )
    tracemalloc.start()
    try:
        events = parser.feed(data + frame(0, b"end"))
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert len(events[0].data) == 500_003
    assert peak < 4 * 500_003  # the wire chunk, the buffer and the message: no per-piece objects


# -- permessage-deflate (RFC 7692) ---------------------------------------------------------------


def deflate_parser(limit: int = 16 << 20, **params: Any) -> FrameParser:
    parser = FrameParser(max_message_bytes=limit)
    parser.reset(Inflater(DeflateParams(**params)))
    return parser


def compressed(data: bytes, z: Any = None) -> bytes:
    z = z or zlib.compressobj(6, zlib.DEFLATED, -15)
    out = z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH)
    assert out.endswith(b"\x00\x00\xff\xff")
    return out[:-4]


def test_compressed_messages_are_inflated_with_context_takeover() -> None:
    parser = deflate_parser()
    z = zlib.compressobj(6, zlib.DEFLATED, -15)
    text = "the same words again and again " * 20
    first, second = compressed(text.encode(), z), compressed(text.encode(), z)
    assert len(second) < len(first)  # the second refers back to the first
    events = parser.feed(frame(1, first, rsv=4) + frame(2, second, rsv=4) + frame(1, b"plain"))
    assert messages(events) == [("message", text), ("binary", text.encode()), ("message", "plain")]


def test_server_no_context_takeover_inflates_each_message_alone() -> None:
    parser = deflate_parser(server_no_context_takeover=True)
    payload = compressed(b"hello hello hello")
    events = parser.feed(frame(1, payload, rsv=4) + frame(1, payload, rsv=4))
    assert messages(events) == [("message", "hello hello hello")] * 2


def test_a_fragmented_compressed_message_sets_rsv1_on_its_first_frame_only() -> None:
    payload = compressed(("fragmented " * 100).encode())
    parts = [payload[:5], payload[5:20], payload[20:]]
    data = frame(1, parts[0], fin=False, rsv=4) + frame(0, parts[1], fin=False)
    data += frame(9, b"ping") + frame(0, parts[2])
    parser = deflate_parser()
    assert messages(parser.feed(data)) == [("message", "fragmented " * 100)]
    assert parser.controls == [(9, b"ping")]


@pytest.mark.parametrize(
    ("data", "what"),
    [
        (frame(1, b"a", fin=False, rsv=4) + frame(0, b"b", rsv=4), "RSV1"),
        (frame(9, b"x", rsv=4), "RSV1"),
        (frame(1, b"x", rsv=2), "reserved bits"),
    ],
)
def test_rsv_bits_misused_under_deflate_are_1002(data: bytes, what: str) -> None:
    with pytest.raises(FrameError, match=what) as info:
        deflate_parser().feed(data)
    assert info.value.code == 1002


def test_rsv1_without_deflate_negotiated_is_1002() -> None:
    with pytest.raises(FrameError, match="reserved bits") as info:
        FrameParser().feed(frame(1, compressed(b"x"), rsv=4))
    assert info.value.code == 1002


def test_data_that_does_not_inflate_is_1007() -> None:
    with pytest.raises(FrameError, match="does not inflate") as info:
        deflate_parser().feed(frame(1, b"\xff\xff\xff\xff", rsv=4))
    assert info.value.code == 1007


def test_a_deflate_bomb_stops_at_the_limit_in_bounded_memory() -> None:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    bomb = b"".join(z.compress(zeros) for _ in range(256)) + z.flush(zlib.Z_SYNC_FLUSH)[:-4]
    data = frame(2, bomb, rsv=4)  # about 256 KB on the wire, 256 MiB inflated
    limit = 1 << 20
    parser = deflate_parser(limit)
    tracemalloc.start()
    try:
        with pytest.raises(FrameError, match="inflated") as info:
            for pos in range(0, len(data), 65536):
                parser.feed(data[pos : pos + 65536])
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert info.value.code == 1009
    assert peak < 3 * limit  # the limit, one inflate step and the frame: not 256 MiB
