"""permessage-deflate (RFC 7692) sans-I/O: the server's answer, the inflater and the deflater."""

from __future__ import annotations

import os
import zlib
from typing import List

import pytest

from aikit_transports.parsers.deflate import (
    OFFER,
    DeflateParams,
    Deflater,
    ExtensionError,
    Inflater,
    accept,
)


def test_the_offer() -> None:
    assert OFFER == "permessage-deflate; client_max_window_bits"


@pytest.mark.parametrize(
    ("values", "params"),
    [
        ([], None),
        (["permessage-deflate"], DeflateParams()),
        (
            ["permessage-deflate; server_no_context_takeover; client_no_context_takeover"],
            DeflateParams(server_no_context_takeover=True, client_no_context_takeover=True),
        ),
        (
            ['Permessage-Deflate; server_max_window_bits=10; client_max_window_bits="9"'],
            DeflateParams(server_max_window_bits=10, client_max_window_bits=9),
        ),
    ],
)
def test_answers_the_client_accepts(values: List[str], params: DeflateParams) -> None:
    assert accept(values, offered=True) == params


@pytest.mark.parametrize(
    ("values", "what"),
    [
        (["permessage-deflate; client_max_window_bits=16"], "8 to 15"),
        (["permessage-deflate; server_max_window_bits"], "8 to 15"),
        (["permessage-deflate; client_max_window_bits=7"], "8 to 15"),
        (["permessage-deflate; server_no_context_takeover=yes"], "takes no value"),
        (["permessage-deflate; server_no_context_takeover; server_no_context_takeover"], "twice"),
        (["permessage-deflate; foo=1"], "unknown"),
        (["permessage-deflate", "permessage-deflate"], "more than one"),
        (["x-webkit-deflate-frame"], "not offered"),
        (["; client_max_window_bits"], "without a name"),
    ],
)
def test_answers_the_client_refuses(values: List[str], what: str) -> None:
    with pytest.raises(ExtensionError, match=what):
        accept(values, offered=True)


def test_an_extension_when_none_was_offered_is_refused() -> None:
    with pytest.raises(ExtensionError, match="not offered"):
        accept(["permessage-deflate"], offered=False)


def test_deflater_and_inflater_round_trip_with_context_takeover() -> None:
    deflater, inflater = Deflater(DeflateParams()), Inflater(DeflateParams())
    message = b"a JSON event with words that repeat, words that repeat " * 20
    sizes = []
    for _ in range(3):
        payload = deflater.deflate(message)
        sizes.append(len(payload))
        out = bytearray()
        assert inflater.inflate(payload, out, 1 << 20, last=True)
        assert bytes(out) == message
    assert sizes[1] < sizes[0]  # later messages refer back to earlier ones


def test_client_no_context_takeover_compresses_each_message_alone() -> None:
    params = DeflateParams(client_no_context_takeover=True, client_max_window_bits=9)
    deflater = Deflater(params)
    block = os.urandom(700)
    for _ in range(2):
        payload = deflater.deflate(block + block)
        # each decodes alone, with a 9-bit window
        z = zlib.decompressobj(wbits=-9)
        assert z.decompress(payload + b"\x00\x00\xff\xff") == block + block


def test_an_8_bit_window_turns_our_compression_off() -> None:
    assert not Deflater(DeflateParams(client_max_window_bits=8)).enabled
    assert Deflater(DeflateParams(client_max_window_bits=9)).enabled


def test_a_message_ending_with_a_final_block_resets_the_inflater() -> None:
    inflater = Inflater(DeflateParams())
    for text in (b"first", b"second"):
        z = zlib.compressobj(6, zlib.DEFLATED, -15)
        payload = z.compress(text) + z.flush(zlib.Z_FINISH)  # BFINAL: the stream ends here
        out = bytearray()
        assert inflater.inflate(payload, out, 100, last=True)
        assert bytes(out) == text


def test_inflating_stops_at_the_limit() -> None:
    inflater = Inflater(DeflateParams())
    payload = Deflater(DeflateParams()).deflate(bytes(10 << 20))
    out = bytearray()
    assert not inflater.inflate(payload, out, 1 << 20, last=True)
    assert len(out) <= (1 << 20) + 64 * 1024
