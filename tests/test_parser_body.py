"""The sans-I/O response body decoder (parsers/body.py): framing and content coding, fed in
any splits; bounded output for highly compressed bodies; cuts told apart from complete ends.
And end to end: a gzip "bomb" of an SSE body read on every runner in bounded reads."""

from __future__ import annotations

import gzip
import zlib
from typing import Any, List

import pytest

from aikit_transports import ConnectError, ProtocolError, SSETransport
from aikit_transports.parsers.body import MAX_INFLATE, BodyDecoder
from aikit_transports.testing import StreamServer


def chunked(body: bytes, size: int = 7) -> bytes:
    parts = [
        b"%x\r\n%s\r\n" % (len(body[i : i + size]), body[i : i + size])
        for i in range(0, len(body), size)
    ]
    return b"".join(parts) + b"0\r\n\r\n"


def feed_all(decoder: BodyDecoder, wire: bytes, step: int) -> bytes:
    out: List[bytes] = []
    for i in range(0, len(wire), step):
        out.append(decoder.feed(wire[i : i + step]))
        while decoder.pending:
            out.append(decoder.feed(b""))
    return b"".join(out)


BODY = b"".join(b"id: %d\ndata: %s\n\n" % (i, b"x" * (i % 50)) for i in range(300))


@pytest.mark.parametrize("step", [1, 3, 64, 4096, 1 << 20])
@pytest.mark.parametrize("encoding", ["", "gzip", "deflate", "raw-deflate"])
@pytest.mark.parametrize("framing", ["chunked", "length", "close"])
def test_any_split_of_any_framing_and_coding_gives_the_body(
    step: int, encoding: str, framing: str
) -> None:
    if encoding == "gzip":
        coded = gzip.compress(BODY)
    elif encoding == "deflate":
        coded = zlib.compress(BODY)
    elif encoding == "raw-deflate":
        comp = zlib.compressobj(wbits=-15)
        coded = comp.compress(BODY) + comp.flush()
    else:
        coded = BODY
    wire = {"chunked": chunked(coded), "length": coded + b"trailing junk", "close": coded}[framing]
    decoder = BodyDecoder(
        chunked=framing == "chunked",
        length=len(coded) if framing == "length" else None,
        encoding="deflate" if encoding == "raw-deflate" else encoding,
    )
    assert feed_all(decoder, wire, step) == BODY
    if framing != "close":
        assert decoder.done
    decoder.end()  # complete: no error


def test_a_compression_bomb_comes_out_in_bounded_pieces() -> None:
    coded = gzip.compress(b"\0" * (50 << 20))  # 50 MiB of zeros in about 50 KiB
    decoder = BodyDecoder(chunked=False, length=len(coded), encoding="gzip")
    total = 0
    piece = decoder.feed(coded)
    while True:
        assert len(piece) <= MAX_INFLATE
        total += len(piece)
        if not decoder.pending:
            break
        piece = decoder.feed(b"")
    assert total == 50 << 20 and decoder.done


def test_a_body_cut_short_is_a_lost_connection() -> None:
    decoder = BodyDecoder(chunked=True, length=None)
    assert decoder.feed(b"5\r\nhel") == b"hel"
    with pytest.raises(ConnectError, match="middle of the response"):
        decoder.end()
    decoder = BodyDecoder(chunked=False, length=10)
    assert decoder.feed(b"12345") == b"12345"
    with pytest.raises(ConnectError, match="5 bytes short of its Content-Length"):
        decoder.end()


def test_bad_framing_and_bad_coding_are_protocol_errors_after_the_good_bytes() -> None:
    decoder = BodyDecoder(chunked=True, length=None)
    assert decoder.feed(b"3\r\nabc\r\nzz\r\n") == b"abc"
    with pytest.raises(ProtocolError):
        decoder.feed(b"more")
    with pytest.raises(ProtocolError, match="gzip body could not be decoded"):
        BodyDecoder(chunked=False, length=None, encoding="gzip").feed(b"not gzip at all")


@pytest.mark.parametrize("io", ["shared", "threads"])
def test_a_gzip_bomb_of_events_is_read_in_bounded_batches(
    stream_server: StreamServer, io: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIKIT_TRANSPORTS_IO", io)
    events = b"".join(b"id: %d\ndata: %s\n\n" % (i, b"z" * 4000) for i in range(4000))
    coded = gzip.compress(events)  # 16 MB of events in well under 1 MB

    def route(request: Any, writer: Any) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream", "Content-Encoding": "gzip"})
        writer.write(coded)

    stream_server.route("/bomb", route)
    batches: List[int] = []
    t = SSETransport(stream_server.url("/bomb"), reconnect_on_eof=False)
    original = t._publish

    def publish(batch: Any) -> None:
        batches.append(len(batch))
        original(batch)

    t._publish = publish  # type: ignore[method-assign]
    got = sum(1 for _ in t.iter_events(timeout=20))
    t.close()
    assert got == 4000
    assert max(batches) <= MAX_INFLATE // 4000 + 1  # no batch holds the whole body
