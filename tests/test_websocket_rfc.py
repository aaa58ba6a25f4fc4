"""WebSocketTransport against servers that send exact bytes: the rules of RFC 6455 and RFC 7692
that the Autobahn Testsuite checks (every ping answered, controls answered between fragments,
close codes and reasons), a bounded opening handshake, bounded messages, permessage-deflate,
and server text shown safely. Each server here is a :class:`RawWebSocketServer` script."""

from __future__ import annotations

import base64
import contextlib
import hashlib
import logging
import os
import threading
import zlib
from typing import Any, Callable, Iterator, List, Optional

import pytest

from aikit_transports.config import ReconnectPolicy
from aikit_transports.errors import (
    HTTPStatusError,
    MessageTooLarge,
    ProtocolError,
    ReconnectFailed,
    TransportError,
    WebSocketClosed,
)
from aikit_transports.testing.proxy import FaultProxy
from aikit_transports.testing.ws import (
    RawWebSocketPeer,
    RawWebSocketServer,
    WebSocketServer,
    server_frame,
)
from aikit_transports.transports.websocket import WebSocketTransport
from aikit_transports.transports.ws_connect import MAX_HEAD_LINES

NO_RETRY = ReconnectPolicy(max_attempts=0)
GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
FAST = ReconnectPolicy(initial_delay=0.02, max_delay=0.1, jitter=0, max_attempts=5)
TEXT, BINARY, CLOSE, PING, PONG = 0x1, 0x2, 0x8, 0x9, 0xA


def close(code: int, reason: bytes = b"") -> bytes:
    return server_frame(CLOSE, code.to_bytes(2, "big") + reason)


def deflate(data: bytes, z: Any = None, bits: int = 15) -> bytes:
    z = z or zlib.compressobj(6, zlib.DEFLATED, -bits)
    return (z.compress(data) + z.flush(zlib.Z_SYNC_FLUSH))[:-4]


def inflate(payload: bytes, bits: int = 15) -> bytes:
    return zlib.decompressobj(wbits=-bits).decompress(payload + b"\x00\x00\xff\xff")


class Errors:
    """The ``error`` events of a transport, waited for."""

    def __init__(self, t: WebSocketTransport) -> None:
        self.list: List[TransportError] = []
        self.cond = threading.Condition()
        #: set once the transport is closed (``closed`` event)
        self.closed = threading.Event()
        t.on("error", self._add)
        t.on("closed", lambda reason: self.closed.set())

    def _add(self, error: TransportError) -> None:
        with self.cond:
            self.list.append(error)
            self.cond.notify_all()

    def wait(self, kind: type = TransportError, timeout: float = 10.0) -> TransportError:
        with self.cond:
            found = self.cond.wait_for(
                lambda: [e for e in self.list if isinstance(e, kind)], timeout
            )
            assert found, f"no {kind.__name__} within {timeout} s: {self.list}"
            return found[0]


@pytest.fixture
def raw() -> Iterator[Callable[[Callable[[RawWebSocketPeer], None]], RawWebSocketServer]]:
    servers: List[RawWebSocketServer] = []

    def start(script: Callable[[RawWebSocketPeer], None]) -> RawWebSocketServer:
        server = RawWebSocketServer(script).start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def transport(url: str, **options: Any) -> WebSocketTransport:
    options.setdefault("reconnect", NO_RETRY)
    options.setdefault("heartbeat_interval", None)
    return WebSocketTransport(url, **options)


def run(server: RawWebSocketServer, **options: Any) -> List[BaseException]:
    """Connect, let the script play the first connection, close; the errors seen (with the
    causes of ``ReconnectFailed``)."""
    t = transport(server.url(), **options)
    errors = Errors(t)
    try:
        with contextlib.suppress(TransportError):  # it may fail before connect() returns
            t.connect()
        server.wait_for(lambda: server.finished >= 1)
        assert errors.closed.wait(10)  # the transport ended by itself
    finally:
        t.close()
    return [
        e.__cause__ if isinstance(e, ReconnectFailed) and e.__cause__ else e for e in errors.list
    ]


def closing(peer: RawWebSocketPeer) -> None:
    """End a script: a normal close, and the client's answer."""
    peer.send(close(1000))
    peer.read_until_close()


# -- control frames (Autobahn 2.10, 5.6, 5.19) ----------------------------------------------------


def test_every_ping_gets_its_own_pong_in_order(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        peer.send(b"".join(server_frame(PING, b"ping %d" % i) for i in range(10)))
        for _ in range(10):
            peer.read_frame()
        closing(peer)

    server = raw(script)
    assert run(server) == []
    frames = server.peers[0].frames
    assert [(f.opcode, f.payload) for f in frames[:10]] == [
        (PONG, b"ping %d" % i) for i in range(10)
    ]


def test_a_ping_between_fragments_is_answered_before_the_message_ends(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        peer.send(server_frame(TEXT, b"frag", fin=False) + server_frame(PING, b"now"))
        pong = peer.read_frame()  # the message is not complete yet: the pong must come first
        assert pong is not None and (pong.opcode, pong.payload) == (PONG, b"now")
        peer.send(server_frame(0, b"ment"))
        peer.read_frame()  # the echo
        closing(peer)

    server = raw(script)
    t = transport(server.url())
    t.on("event", lambda event: t.send(event.data))
    with t:
        server.wait_for(lambda: server.finished)
    frames = server.peers[0].frames
    assert [(f.opcode, f.payload) for f in frames[:2]] == [(PONG, b"now"), (TEXT, b"fragment")]


def test_the_pong_goes_out_before_the_echo_of_a_message_read_with_it(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        peer.send(
            server_frame(TEXT, b"a", fin=False) + server_frame(PING, b"p") + server_frame(0, b"b")
        )
        peer.read_frame()
        peer.read_frame()
        closing(peer)

    server = raw(script)
    t = transport(server.url())
    t.on("event", lambda event: t.send(event.data))
    with t:
        server.wait_for(lambda: server.finished)
    frames = server.peers[0].frames
    assert [(f.opcode, f.payload) for f in frames[:2]] == [(PONG, b"p"), (TEXT, b"ab")]


def test_frames_sent_with_the_handshake_answer_are_read(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.accept(extra=server_frame(TEXT, b"at once") + close(1000))
        peer.read_until_close()

    server = raw(script)
    with transport(server.url()) as t:
        assert [e.data for e in t.iter_events(timeout=5)] == ["at once"]


# -- close frames (Autobahn 7.x) ------------------------------------------------------------------


@pytest.mark.parametrize(
    "code", [0, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535]
)
def test_an_invalid_close_code_fails_the_connection_with_1002(raw: Any, code: int) -> None:
    answers: List[Optional[int]] = []

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        peer.send(close(code))
        reply = peer.read_until_close()
        answers.append(reply.close_code if reply else None)

    errors = run(raw(script))
    assert answers == [1002]
    assert any(isinstance(e, ProtocolError) and f"invalid code {code}" in str(e) for e in errors)
    assert not any(isinstance(e, WebSocketClosed) for e in errors)  # 1006 is not "lost"


@pytest.mark.parametrize("code", [3000, 4999])
def test_an_application_close_code_is_echoed_and_fails_the_transport(raw: Any, code: int) -> None:
    answers: List[Optional[int]] = []

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        peer.send(close(code, b"bye"))
        reply = peer.read_until_close()
        answers.append(reply.close_code if reply else None)

    errors = run(raw(script))
    assert answers == [code]
    closed = [e for e in errors if isinstance(e, WebSocketClosed)]
    assert closed and closed[0].code == code and closed[0].reason == "bye"


def test_a_close_reason_that_is_not_utf8_fails_with_1007(raw: Any) -> None:
    answers: List[Optional[int]] = []

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        peer.send(close(1000, b"\xce\xba\xe1\xbd\xb9\xed\xa0\x80"))
        reply = peer.read_until_close()
        answers.append(reply.close_code if reply else None)

    errors = run(raw(script))
    assert answers == [1007]
    assert any(isinstance(e, ProtocolError) and "not UTF-8" in str(e) for e in errors)


def test_an_empty_close_frame_is_a_normal_end_answered_without_a_code(raw: Any) -> None:
    replies: List[bytes] = []

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        peer.send(server_frame(CLOSE))
        reply = peer.read_until_close()
        replies.append(reply.payload if reply else b"missing")

    server = raw(script)
    t = transport(server.url())
    done = threading.Event()
    t.on("done", done.set)
    with t:
        assert done.wait(10)
    server.wait_for(lambda: server.finished)
    assert replies == [b""]


def test_a_close_reason_is_kept_as_data_but_shown_escaped_and_cut(
    raw: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="aikit_transports")
    reason = "forged\r\nINFO all good\x1b[2J" + "\x07" * 98  # 123 bytes, the most there is

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        peer.send(close(4000, reason.encode()))
        peer.read_until_close()

    errors = run(raw(script))
    closed = [e for e in errors if isinstance(e, WebSocketClosed)]
    assert closed and closed[0].reason == reason
    shown = closed[0].message.split(": ", 1)[1]
    assert len(shown) == 200 and shown.endswith("...")  # 98 BELs escaped are 392 characters
    assert "\\r\\n" in shown and "\r" not in shown and "\n" not in shown and "\x1b" not in shown
    for record in caplog.records:
        assert "\r" not in record.getMessage() and "\x1b" not in record.getMessage()


# -- the opening handshake ------------------------------------------------------------------------


def test_a_header_line_that_never_ends_is_cut_at_64_kib(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.send(b"HTTP/1.1 101 Switching Protocols\r\nX-Endless: ")
        while peer.send(b"a" * 4096):
            pass

    t = transport(raw(script).url(), timeout=30)
    with pytest.raises(ProtocolError, match="head is over 64 KiB"):
        t.connect()
    t.close()


def test_too_many_header_lines_are_refused(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.send(b"HTTP/1.1 101 Switching Protocols\r\n" + b"X-Many: 1\r\n" * 500)
        peer.read_frame()  # until the client leaves

    t = transport(raw(script).url(), timeout=30)
    with pytest.raises(ProtocolError, match=f"over {MAX_HEAD_LINES} header lines"):
        t.connect()
    t.close()


@pytest.mark.parametrize("lines", [MAX_HEAD_LINES, MAX_HEAD_LINES + 1])
@pytest.mark.parametrize("whole", [True, False])
def test_the_header_line_cap_is_exact(raw: Any, lines: int, whole: bool) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        key = peer.headers["sec-websocket-key"].encode()
        accept = base64.b64encode(hashlib.sha1(key + GUID).digest())
        head = [b"HTTP/1.1 101 Switching Protocols", b"Upgrade: websocket", b"Connection: Upgrade"]
        head += [b"Sec-WebSocket-Accept: " + accept]
        head += [b"X-Filler: %d" % i for i in range(lines - 3)]
        data = b"\r\n".join(head) + b"\r\n\r\n"
        if whole:
            peer.send(data)
        else:  # one line per write: the cap is checked on partial heads too
            for line in data.splitlines(keepends=True):
                peer.send(line)
        closing(peer)

    t = transport(raw(script).url())
    try:
        if lines > MAX_HEAD_LINES:
            with pytest.raises(ProtocolError, match="header lines"):
                t.connect()
        else:
            t.connect()
    finally:
        t.close()


@pytest.mark.parametrize("where", ["status line", "headers"])
def test_a_trickled_handshake_ends_at_the_timeout(raw: Any, where: str) -> None:
    stop = threading.Event()

    def script(peer: RawWebSocketPeer) -> None:
        if where == "headers":
            peer.send(b"HTTP/1.1 101 Switching Protocols\r\n")
        # one byte every 50 ms, forever: each read succeeds, only a deadline ends it
        while not stop.wait(0.05) and peer.send(b"x"):
            pass

    t = transport(raw(script).url(), timeout=0.5)
    try:
        with pytest.raises(ReconnectFailed, match=r"did not finish within timeout=0\.5"):
            t.connect()
    finally:
        stop.set()
        t.close()


def test_a_200_answer_says_the_server_did_not_switch_protocols(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.send(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")

    server = raw(script)
    t = transport(server.url(), reconnect=FAST)
    with pytest.raises(ProtocolError, match=r"did not switch protocols \(HTTP 200 OK\)") as info:
        t.connect()
    t.close()
    assert not info.value.retryable and len(server.peers) == 1


def test_a_403_fails_at_once_with_its_status_headers_and_body(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.send(b"HTTP/1.1 403 Forbidden\r\nX-Why: token\r\nContent-Length: 9\r\n\r\nno access")

    server = raw(script)
    t = transport(server.url(), reconnect=FAST)
    with pytest.raises(HTTPStatusError, match="HTTP 403 Forbidden") as info:
        t.connect()
    t.close()
    error = info.value
    assert error.status_code == 403 and error.body == "no access"
    assert error.headers["x-why"] == "token"
    assert len(server.peers) == 1


def test_a_status_reason_is_shown_escaped(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.send(b"HTTP/1.1 404 Not\x1b[31m Found\r\nContent-Length: 0\r\n\r\n")

    t = transport(raw(script).url())
    with pytest.raises(HTTPStatusError) as info:
        t.connect()
    t.close()
    assert "\x1b" not in str(info.value) and "\\x1b" in str(info.value)


@pytest.mark.parametrize(
    ("options", "expected"),
    [
        ({}, "http://127.0.0.1:{port}"),
        ({"headers": {"origin": "https://from.headers"}}, "https://from.headers"),
        ({"origin": "https://app.example", "headers": {"Origin": "x"}}, "https://app.example"),
    ],
)
def test_the_origin_header(raw: Any, options: Any, expected: str) -> None:
    requests: List[bytes] = []

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        requests.append(peer.head)
        closing(peer)

    server = raw(script)
    with transport(server.url(), **options):
        server.wait_for(lambda: server.finished)
    origins = [line for line in requests[0].split(b"\r\n") if line.lower().startswith(b"origin:")]
    assert origins == [b"Origin: " + expected.format(port=server.port).encode()]


def test_a_redirect_to_another_origin_keeps_only_the_safe_and_named_headers(raw: Any) -> None:
    def target_script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        closing(peer)

    target = raw(target_script)

    def redirect_script(peer: RawWebSocketPeer) -> None:
        peer.send(
            b"HTTP/1.1 307 Elsewhere\r\nLocation: " + target.url("/there").encode() + b"\r\n\r\n"
        )

    first = raw(redirect_script)
    headers = {"Authorization": "Bearer secret", "X-Keep": "1", "X-Drop": "2"}
    with transport(first.url("/here"), headers=headers, redirect_headers=["X-Keep"]):
        target.wait_for(lambda: target.finished)
    assert first.peers[0].headers["authorization"] == "Bearer secret"
    arrived = target.peers[0].headers
    assert arrived["x-keep"] == "1" and "authorization" not in arrived and "x-drop" not in arrived
    assert target.peers[0].head.startswith(b"GET /there HTTP/1.1")


def test_a_redirect_to_another_scheme_is_refused(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.send(b"HTTP/1.1 302 Found\r\nLocation: ftp://127.0.0.1/x\r\n\r\n")

    t = transport(raw(script).url(), reconnect=FAST)
    with pytest.raises(ProtocolError, match="not supported"):
        t.connect()
    t.close()


def test_a_wrong_accept_key_is_refused(raw: Any) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.send(
            b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            b"Sec-WebSocket-Accept: bm90IHRoZSBrZXk=\r\n\r\n"
        )

    t = transport(raw(script).url())
    with pytest.raises(ProtocolError, match="Sec-WebSocket-Accept"):
        t.connect()
    t.close()


# -- bounded messages ------------------------------------------------------------------------------


def test_a_flood_of_empty_continuation_frames_fails_with_1009(raw: Any) -> None:
    answers: List[Optional[int]] = []
    batch = server_frame(0, b"", fin=False) * 4096

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()
        peer.send(server_frame(TEXT, b"a", fin=False))
        while peer.send(batch):  # until the client fails the connection
            pass
        reply = peer.read_until_close()
        answers.append(reply.close_code if reply else None)

    errors = run(raw(script), max_message_bytes=64 * 1024)
    assert any(isinstance(e, MessageTooLarge) for e in errors)
    assert answers == [1009]


# -- permessage-deflate ----------------------------------------------------------------------------


def test_compression_is_negotiated_with_websockets_by_default() -> None:
    text = '{"role": "assistant", "content": "hello hello hello"}' * 200
    with WebSocketServer(compression="deflate") as server:
        with transport(server.url("/echo")) as t:
            events = t.iter_events(timeout=5)
            t.send(text)
            t.send(text.encode())
            assert [next(events).data, next(events).data] == [text, text.encode()]
            metrics = t.metrics
        offered = server.requests[0]["headers"]["sec-websocket-extensions"]
    assert offered == "permessage-deflate; client_max_window_bits"
    assert metrics.bytes_sent < len(text) // 4 and metrics.bytes_received < len(text) // 4


def test_compression_none_offers_nothing() -> None:
    text = "z" * 10_000
    with WebSocketServer(compression="deflate") as server:
        with transport(server.url("/echo"), compression=None) as t:
            events = t.iter_events(timeout=5)
            t.send(text)
            assert next(events).data == text
            assert t.metrics.bytes_received > len(text)
        assert "sec-websocket-extensions" not in server.requests[0]["headers"]


def test_queued_sends_are_compressed_on_each_new_connection() -> None:
    messages = [f"queued {n} " * 50 for n in range(6)]
    with (
        WebSocketServer(compression="deflate") as server,
        FaultProxy("127.0.0.1", server.port) as proxy,
    ):
        t = transport(proxy.url("/collect"), reconnect=FAST)
        reconnecting = threading.Event()
        t.on("reconnecting", lambda *args: reconnecting.set())
        try:
            t.send(messages[0])  # before connect: flushed on the first connection
            t.connect()
            server.wait_for(lambda: len(server.received) == 1)
            proxy.refuse(True)
            proxy.cut()
            assert reconnecting.wait(10)
            for message in messages[1:]:  # queued: no connection can take them
                t.send(message)
            proxy.refuse(False)
            server.wait_for(lambda: len(server.received) == 6, timeout=10)
            sent = t.metrics.bytes_sent
        finally:
            t.close()
    assert server.received == messages
    assert sent < sum(map(len, messages)) // 4  # each connection compressed them


def test_no_context_takeover_and_window_bits_are_honoured(raw: Any) -> None:
    block = os.urandom(700)
    message = block + block  # repeats 700 bytes back: only reachable with a window over 512
    received: List[Any] = []

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; "
            "client_max_window_bits=9"
        )
        for _ in range(2):  # each compressed alone, as server_no_context_takeover promises
            peer.send(server_frame(BINARY, deflate(message), rsv1=True))
        for _ in range(2):
            frame = peer.read_frame()
            assert frame is not None and frame.rsv1
            received.append(inflate(frame.payload, bits=9))  # fresh context, 9-bit window
        closing(peer)

    server = raw(script)
    t = transport(server.url())
    t.on("event", lambda event: t.send(event.data))
    with t:
        server.wait_for(lambda: server.finished)
    assert received == [message, message]


def test_a_fragmented_compressed_message_is_inflated(raw: Any) -> None:
    text = ("fragmented and compressed " * 100).encode()
    payload = deflate(text)

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept("permessage-deflate")
        peer.send(
            server_frame(TEXT, payload[:10], fin=False, rsv1=True)
            + server_frame(0, payload[10:40], fin=False)
            + server_frame(PING, b"between")
            + server_frame(0, payload[40:])
        )
        pongs.append(peer.read_frame())
        closing(peer)

    pongs: List[Any] = []
    with transport(raw(script).url()) as t:
        assert [e.data for e in t.iter_events(timeout=5)] == [text.decode()]
    pong = pongs[0]  # control frames are never compressed
    assert pong is not None and (pong.opcode, pong.rsv1, pong.payload) == (PONG, False, b"between")


def test_a_deflate_bomb_fails_with_1009(raw: Any) -> None:
    z = zlib.compressobj(9, zlib.DEFLATED, -15)
    zeros = bytes(1 << 20)
    bomb = b"".join(z.compress(zeros) for _ in range(64)) + z.flush(zlib.Z_SYNC_FLUSH)[:-4]
    answers: List[Optional[int]] = []

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept("permessage-deflate")
        peer.send(server_frame(BINARY, bomb, rsv1=True))  # 64 KB that inflate to 64 MiB
        reply = peer.read_until_close()
        answers.append(reply.close_code if reply else None)

    errors = run(raw(script), max_message_bytes=1 << 20)
    assert answers == [1009]
    assert any(isinstance(e, MessageTooLarge) and "inflated" in str(e) for e in errors)


@pytest.mark.parametrize(
    ("answer", "options"),
    [
        ("permessage-deflate", {"compression": None}),
        ("permessage-deflate; server_max_window_bits=7", {}),
        ("permessage-deflate; mystery", {}),
        ("permessage-deflate; server_no_context_takeover=1", {}),
        ("x-webkit-deflate-frame", {}),
        ("permessage-deflate, permessage-deflate", {}),
    ],
)
def test_an_extension_answer_the_client_cannot_accept_fails(
    raw: Any, answer: str, options: Any
) -> None:
    def script(peer: RawWebSocketPeer) -> None:
        peer.accept(answer)
        peer.read_frame()

    t = transport(raw(script).url(), **options)
    with pytest.raises(ProtocolError, match="WebSocket handshake failed"):
        t.connect()
    t.close()


def test_rsv1_on_a_frame_without_deflate_fails_with_1002(raw: Any) -> None:
    answers: List[Optional[int]] = []

    def script(peer: RawWebSocketPeer) -> None:
        peer.accept()  # no extension
        peer.send(server_frame(TEXT, deflate(b"x"), rsv1=True))
        reply = peer.read_until_close()
        answers.append(reply.close_code if reply else None)

    errors = run(raw(script))
    assert answers == [1002]
    assert any(isinstance(e, ProtocolError) for e in errors)
