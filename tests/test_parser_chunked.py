"""ChunkedDecoder: HTTP/1.1 chunked transfer coding, byte by byte and in random splits."""

from __future__ import annotations

import random
from typing import Iterable, List

import pytest
from hypothesis import given
from hypothesis import strategies as st

from aikit_transports.errors import ProtocolError
from aikit_transports.parsers.chunked import MAX_LINE, ChunkedDecoder


def encode(pieces: Iterable[bytes], trailer: bytes = b"", newline: bytes = b"\r\n") -> bytes:
    """``pieces`` as a chunked body: one HTTP chunk each, then the last chunk and ``trailer``."""
    out = [b"%x%s%s%s" % (len(p), newline, p, newline) for p in pieces if p]
    return b"".join(out) + b"0" + newline + trailer + newline


def decode(parts: Iterable[bytes]) -> tuple[bytes, bool]:
    decoder = ChunkedDecoder()
    body = b"".join(decoder.feed(part) for part in parts)
    return body, decoder.done


def splits(data: bytes, seed: int) -> List[bytes]:
    rng = random.Random(seed)
    cuts = sorted(rng.sample(range(1, len(data)), min(len(data) - 1, rng.randint(1, 12))))
    return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]


PIECES = [b"hello ", b"world", b"x" * 70000, b"\r\n\r\n", b"0\r\n", b"last"]


@pytest.mark.parametrize("newline", [b"\r\n", b"\n"])
def test_whole_byte_by_byte_and_random_splits(newline: bytes) -> None:
    wire = encode(PIECES, newline=newline)
    expected = b"".join(PIECES)
    assert decode([wire]) == (expected, True)
    assert decode([wire[i : i + 1] for i in range(len(wire))]) == (expected, True)
    for seed in range(50):
        assert decode(splits(wire, seed)) == (expected, True)


def test_extensions_trailers_and_bytes_after_the_end_are_handled() -> None:
    wire = b"5;name=value\r\nhello\r\n0;x\r\nX-Checksum: 1\r\nX-More: 2\r\n\r\nGET / HTTP/1.1"
    assert decode([wire]) == (b"hello", True)


def test_uppercase_hex_and_leading_zeros() -> None:
    assert decode([b"000A\r\n0123456789\r\n0\r\n\r\n"]) == (b"0123456789", True)


def test_not_done_until_the_trailer_section_ends() -> None:
    decoder = ChunkedDecoder()
    assert decoder.feed(b"3\r\nabc\r\n0\r\n") == b"abc"
    assert not decoder.done
    assert decoder.feed(b"\r\n") == b""
    assert decoder.done


def test_a_read_inside_chunk_data_comes_back_uncopied() -> None:
    decoder = ChunkedDecoder()
    decoder.feed(b"100000\r\n")
    data = b"y" * 4096
    assert decoder.feed(data) is data


@pytest.mark.parametrize(
    "wire",
    [
        b"zz\r\nhello\r\n",  # not hexadecimal
        b"-5\r\nhello\r\n",  # int() would take a sign
        b"1_0\r\nhello\r\n",  # ... or an underscore
        b"\r\nhello\r\n",  # no size at all
        b"11111111111111111\r\n",  # more than 64 bits
        b"3\r\nhello\r\n",  # data longer than its size
    ],
)
def test_bad_framing_is_a_retryable_protocol_error_after_the_body_before_it(
    wire: bytes,
) -> None:
    decoder = ChunkedDecoder()
    body = decoder.feed(b"2\r\nok\r\n" + wire + b"5\r\nnever\r\n")
    assert body in (b"ok", b"okhel")  # data before the framing turned out wrong is body
    error = decoder.error
    assert isinstance(error, ProtocolError) and error.retryable
    assert "broken chunked framing" in str(error)
    assert decoder.feed(b"5\r\nnever\r\n") == b"" and not decoder.done


def test_an_endless_size_line_is_refused_without_holding_it() -> None:
    decoder = ChunkedDecoder()
    for _ in range(MAX_LINE // 1000 + 2):
        assert decoder.feed(b"1" * 1000) == b""
    assert "longer than 64 KiB" in str(decoder.error)
    assert decoder.feed(b"1" * 1000) == b"" and not decoder._line


@given(
    st.lists(st.binary(min_size=1, max_size=300), max_size=8),
    st.lists(st.integers(min_value=1, max_value=64), max_size=30),
)
def test_any_body_in_any_split_decodes_to_itself(pieces: List[bytes], sizes: List[int]) -> None:
    wire = encode(pieces)
    parts, pos = [], 0
    for size in sizes:
        parts.append(wire[pos : pos + size])
        pos += size
    parts.append(wire[pos:])
    assert decode(parts) == (b"".join(pieces), True)
