"""WebSocketTransport end to end against a real ``websockets`` server on 127.0.0.1.

Frames of each kind, close codes, reconnection after an abrupt kill, the send queue during an
outage, heartbeats through a stalling proxy, options (headers, subprotocols, origin, TLS, HTTP
proxy), and clean shutdown. The leak guard in conftest checks threads and sockets after each.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import ssl
import threading
from collections import Counter
from typing import Any, Callable, Dict, Iterator, List, Tuple

import pytest

from aikit_transports.config import BufferConfig, ReconnectPolicy
from aikit_transports.errors import (
    BufferFullError,
    ConnectError,
    HeartbeatTimeout,
    HTTPStatusError,
    MessageTooLarge,
    ProtocolError,
    ReconnectFailed,
    TransportClosedError,
    TransportError,
    UnsentMessagesError,
    WebSocketClosed,
)
from aikit_transports.events import TransportState
from aikit_transports.testing._wait import wait_for
from aikit_transports.testing.proxy import FaultProxy
from aikit_transports.testing.ws import WebSocketServer
from aikit_transports.transports import io_loop
from aikit_transports.transports.base import BaseTransport
from aikit_transports.transports.websocket import WebSocketTransport

FAST = ReconnectPolicy(initial_delay=0.02, max_delay=0.1, jitter=0, max_attempts=50)


@pytest.fixture
def server() -> Iterator[WebSocketServer]:
    with WebSocketServer() as srv:
        yield srv


@pytest.fixture
def proxy(server: WebSocketServer) -> Iterator[FaultProxy]:
    with FaultProxy("127.0.0.1", server.port) as fp:
        yield fp


class Recorder:
    """Every lifecycle callback of a transport (and its events, with ``events=True``)."""

    NAMES = ("connecting", "connected", "reconnecting", "error", "done", "closed")

    def __init__(self, transport: BaseTransport, events: bool = False) -> None:
        self.cond = threading.Condition()
        self.log: List[Tuple[str, Tuple[Any, ...]]] = []
        for name in self.NAMES + (("event",) if events else ()):
            transport.on(name, functools.partial(self._add, name))

    def _add(self, name: str, *args: Any) -> None:
        with self.cond:
            self.log.append((name, args))
            self.cond.notify_all()

    def named(self, name: str) -> List[Tuple[Any, ...]]:
        with self.cond:
            return [args for n, args in self.log if n == name]

    def errors(self) -> List[TransportError]:
        return [args[0] for args in self.named("error")]

    def data(self) -> List[Any]:
        return [args[0].data for args in self.named("event")]

    def wait(self, predicate: Callable[[], Any], timeout: float = 5.0) -> Any:
        try:
            return wait_for(self.cond, predicate, timeout)
        except TimeoutError:
            pytest.fail(f"not seen within {timeout} s; log: {[n for n, _ in self.log]}")


def ids(events: List[Any]) -> List[int]:
    return [json.loads(data)["id"] for data in events]


# -- frames ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sent", "kind", "received"),
    [
        ("héllo wörld", "message", "héllo wörld"),
        ("", "message", ""),
        (b"\x00\x01\xff", "binary", b"\x00\x01\xff"),
        (bytearray(b"array"), "binary", b"array"),
        (memoryview(b"view"), "binary", b"view"),
        ({"a": [1, 2], "b": "x"}, "message", '{"a": [1, 2], "b": "x"}'),
        ([1, "two", None], "message", '[1, "two", null]'),
        ("x" * 70000, "message", "x" * 70000),
    ],
)
def test_echo_of_each_frame_kind(
    server: WebSocketServer, sent: Any, kind: str, received: Any
) -> None:
    with WebSocketTransport(server.url("/echo")) as t:
        events = t.iter_events(timeout=5)
        t.send(sent)
        event = next(events)
    assert (event.type, event.data) == (kind, received)
    assert type(event.data) is type(received)
    assert event.transport_id == t.id
    if kind == "message" and isinstance(sent, (dict, list)):
        assert event.json() == sent


def test_metrics_count_both_ways(server: WebSocketServer) -> None:
    with WebSocketTransport(server.url("/echo")) as t:
        events = t.iter_events(timeout=5)
        for i in range(5):
            t.send(f"m{i}")
        got = [next(events).data for _ in range(5)]
        m = t.metrics
        assert got == [f"m{i}" for i in range(5)]
        assert (m.messages_sent, m.messages_received) == (5, 5)
        assert m.bytes_sent > 5 * 2 and m.bytes_received >= 5 * 4
        assert t.health().status == "healthy"


@pytest.mark.parametrize("binary", ["0", "1"])
def test_fragmented_message_is_reassembled(server: WebSocketServer, binary: str) -> None:
    with WebSocketTransport(server.url(f"/fragments?parts=ab,cd,ef&binary={binary}")) as t:
        event = next(t.iter_events(timeout=5))
    assert event.data == ("abcdef" if binary == "0" else b"abcdef")
    assert event.type == ("message" if binary == "0" else "binary")


def test_message_at_the_limit_is_delivered(server: WebSocketServer) -> None:
    with WebSocketTransport(server.url("/big?size=1000"), max_message_bytes=1000) as t:
        assert next(t.iter_events(timeout=5)).data == "x" * 1000


def test_message_over_the_limit_closes_1009_and_reconnects(server: WebSocketServer) -> None:
    t = WebSocketTransport(
        server.url("/big?size=1001&binary=1"), max_message_bytes=1000, reconnect=FAST
    )
    rec = Recorder(t)
    try:
        t.connect()
        rec.wait(lambda: rec.named("reconnecting"))
        error = rec.named("reconnecting")[0][2]
        assert isinstance(error, MessageTooLarge) and isinstance(error, ProtocolError)
        assert "max_message_bytes" in str(error) and error in rec.errors()
        server.wait_for(lambda: 1009 in server.closes)
    finally:
        t.close()


def test_invalid_utf8_closes_1007_after_delivering_what_came_before(
    server: WebSocketServer,
) -> None:
    t = WebSocketTransport(server.url("/invalid-utf8"), reconnect=FAST)
    rec = Recorder(t, events=True)
    try:
        t.connect()
        rec.wait(lambda: rec.named("reconnecting"))
        error = rec.named("reconnecting")[0][2]
        assert type(error) is ProtocolError and "UTF-8" in error.message
        assert rec.data()[0] == "before"
        server.wait_for(lambda: 1007 in server.closes)
    finally:
        t.close()


# -- close codes ----------------------------------------------------------------------------


def test_normal_close_ends_the_stream_with_done(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/stream?count=3"), reconnect=FAST)
    rec = Recorder(t)
    received = [e.data for e in t.iter_events(timeout=5)]
    assert ids(received) == [1, 2, 3]
    assert t.state is TransportState.CLOSED
    assert rec.named("done") == [()]
    assert rec.named("closed") == [("done",)]
    assert not rec.named("reconnecting") and not rec.errors()
    assert server.handshakes == 1
    server.wait_for(lambda: server.closes == [1000])


@pytest.mark.parametrize("code", [1001, 1011, 1012, 1013, 1014])
def test_retryable_close_codes_reconnect(server: WebSocketServer, code: int) -> None:
    t = WebSocketTransport(server.url(f"/close?code={code}&reason=later"), reconnect=FAST)
    rec = Recorder(t)
    try:
        t.connect()
        rec.wait(lambda: len(rec.named("reconnecting")) >= 2)
        error = rec.named("reconnecting")[0][2]
        assert isinstance(error, WebSocketClosed)
        assert (error.code, error.reason, error.retryable) == (code, "later", True)
        assert server.handshakes >= 2
    finally:
        t.close()
    assert t.state is TransportState.CLOSED


@pytest.mark.parametrize("code", [1002, 1003, 1007, 1008, 1010, 4000])
def test_other_close_codes_fail_without_reconnecting(server: WebSocketServer, code: int) -> None:
    t = WebSocketTransport(server.url(f"/close?code={code}&after=1&reason=no"), reconnect=FAST)
    rec = Recorder(t)
    events = t.iter_events(timeout=5)
    assert ids([next(events).data]) == [1]
    with pytest.raises(WebSocketClosed) as info:
        next(events)
    assert info.value.code == code and not info.value.retryable
    assert t.state is TransportState.ERROR
    assert rec.named("closed") == [("failed",)]
    assert not rec.named("reconnecting")
    assert server.handshakes == 1
    t.close()
    assert t.state.value == "closed"


def test_retry_if_can_override_the_close_code_policy(server: WebSocketServer) -> None:
    policy = ReconnectPolicy(initial_delay=0.02, jitter=0, max_attempts=1, retry_if=lambda e: True)
    t = WebSocketTransport(server.url("/close?code=1008"), reconnect=policy)
    with pytest.raises(ReconnectFailed) as info:
        list(t.iter_events(timeout=5))
    assert isinstance(info.value.__cause__, WebSocketClosed)
    assert server.handshakes == 2
    t.close()


# -- reconnection ---------------------------------------------------------------------------


def test_server_killed_abruptly_reconnects_and_the_stream_goes_on(server: WebSocketServer) -> None:
    t = WebSocketTransport(
        server.url("/stream?count=-1&interval=0.002&session=kill"), reconnect=FAST
    )
    rec = Recorder(t)
    events = t.iter_events(timeout=5)
    try:
        before = [next(events).data for _ in range(20)]
        assert server.kill_connections() == 1
        rec.wait(lambda: rec.named("reconnecting") and len(rec.named("connected")) >= 2)
        error = rec.named("reconnecting")[0][2]
        assert isinstance(error, WebSocketClosed) and error.code == 1006
        assert error in rec.errors()
        after = [next(events).data for _ in range(50)]
    finally:
        t.close()
    seen = ids(before + after)
    assert seen == sorted(set(seen))  # the session resumes: no id twice, none out of order
    assert seen[-1] > seen[19] + 40
    assert t.metrics.reconnects >= 1


def test_handshake_refused_with_4xx_fails_at_once(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/status/403"), reconnect=FAST)
    with pytest.raises(HTTPStatusError) as info:
        t.connect()
    assert info.value.status_code == 403
    assert server.handshakes == 1
    t.close()


def test_handshake_503_is_retried_until_attempts_run_out(server: WebSocketServer) -> None:
    policy = ReconnectPolicy(initial_delay=0.02, jitter=0, max_attempts=2)
    t = WebSocketTransport(server.url("/status/503"), reconnect=policy)
    with pytest.raises(ReconnectFailed) as info:
        t.connect()
    cause = info.value.__cause__
    assert isinstance(cause, HTTPStatusError) and cause.status_code == 503
    assert server.handshakes == 3
    t.close()


def test_refused_connection_is_retried(server: WebSocketServer) -> None:
    server.refuse(503)
    t = WebSocketTransport(server.url("/echo"), reconnect=FAST)
    rec = Recorder(t)
    try:
        starter = threading.Thread(target=t.connect, kwargs={"timeout": 10}, daemon=True)
        starter.start()
        rec.wait(lambda: len(rec.named("reconnecting")) >= 2)
        server.refuse(None)
        starter.join(10)
        assert t.is_connected()
    finally:
        t.close()


# -- sending --------------------------------------------------------------------------------


def _send_during_outage(
    server: WebSocketServer, proxy: FaultProxy, recover_midway: bool
) -> List[str]:
    """4 threads send 250 messages each, paced over about 2 s, while the server is unreachable."""
    t = WebSocketTransport(
        proxy.url("/collect"),
        reconnect=ReconnectPolicy(initial_delay=0.05, max_delay=0.2, jitter=0, max_attempts=None),
        heartbeat_interval=None,
    )
    rec = Recorder(t)
    t.connect()
    halfway = threading.Event()
    pace = threading.Event()  # never set: its wait() paces the senders across the outage
    failures: List[BaseException] = []

    def sender(k: int) -> None:
        try:
            for i in range(250):
                t.send(f"{k}:{i}")
                if i == 125 and k == 0:
                    halfway.set()
                pace.wait(0.008)
        except BaseException as exc:  # reported by the test thread
            failures.append(exc)

    try:
        proxy.refuse(True)
        proxy.cut()
        rec.wait(lambda: rec.named("reconnecting"))  # the transport knows it is disconnected
        threads = [threading.Thread(target=sender, args=(k,)) for k in range(4)]
        for thread in threads:
            thread.start()
        if recover_midway:
            assert halfway.wait(10)
            proxy.refuse(False)
        for thread in threads:
            thread.join(30)
        proxy.refuse(False)
        server.wait_for(lambda: len(server.received) >= 1000, timeout=15)
    finally:
        t.close()
    assert not failures
    assert not [e for e in rec.errors() if isinstance(e, UnsentMessagesError)]
    server.wait_for(lambda: len(server.closes) >= 2)
    return [str(m) for m in server.received]


def _check_exactly_once_in_order(received: List[str]) -> None:
    assert len(received) == 1000
    assert set(Counter(received).values()) == {1}
    for k in range(4):
        sequence = [int(m.split(":")[1]) for m in received if m.startswith(f"{k}:")]
        assert sequence == list(range(250))


@pytest.mark.slow
def test_sends_during_an_outage_arrive_exactly_once_and_in_order(
    server: WebSocketServer, proxy: FaultProxy
) -> None:
    _check_exactly_once_in_order(_send_during_outage(server, proxy, recover_midway=False))


@pytest.mark.slow
def test_sends_racing_the_reconnect_flush_keep_their_order(
    server: WebSocketServer, proxy: FaultProxy
) -> None:
    _check_exactly_once_in_order(_send_during_outage(server, proxy, recover_midway=True))


def test_concurrent_sends_never_interleave(server: WebSocketServer) -> None:
    big = "y" * 200_000
    with WebSocketTransport(server.url("/collect")) as t:

        def sender(k: int) -> None:
            for i in range(100):
                t.send(f"{k}:{i}:{big if i % 10 == 0 else ''}")

        threads = [threading.Thread(target=sender, args=(k,)) for k in range(6)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)
        server.wait_for(lambda: len(server.received) >= 600, timeout=15)
    for m in server.received:
        _, index, rest = str(m).split(":")
        assert rest == (big if int(index) % 10 == 0 else "")
    for k in range(6):
        assert [
            int(str(m).split(":")[1]) for m in server.received if str(m).startswith(f"{k}:")
        ] == list(range(100))


def test_sends_before_connect_are_queued_and_flushed_first(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/collect"), send_queue_size=3)
    for i in range(3):
        t.send(f"early {i}")
    with pytest.raises(BufferFullError):
        t.send("one too many")
    t.connect()
    t.send("late")
    server.wait_for(lambda: len(server.received) >= 4)
    t.close()
    assert server.received == ["early 0", "early 1", "early 2", "late"]


def test_send_rejects_other_types(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/echo"))
    for bad in (1, 2.5, {1, 2}, None, object()):
        with pytest.raises(TypeError):
            t.send(bad)
    with pytest.raises(TypeError, match="JSON"):
        t.send({"x": object()})
    t.close()


def test_send_after_close_raises(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/echo"))
    t.connect()
    t.close()
    with pytest.raises(TransportClosedError):
        t.send("late")


def _cut_off(proxy: FaultProxy) -> tuple[WebSocketTransport, Recorder]:
    """A transport on ``/collect`` whose connection the proxy has just cut, and refuses to make
    again until ``proxy.refuse(False)``: sends from here on are queued."""
    t = WebSocketTransport(proxy.url("/collect"), reconnect=FAST, heartbeat_interval=None)
    rec = Recorder(t)
    t.connect()
    proxy.refuse(True)
    proxy.cut()
    rec.wait(lambda: rec.named("reconnecting"))
    return t, rec


def test_close_waits_for_the_queue_to_flush(server: WebSocketServer, proxy: FaultProxy) -> None:
    t, rec = _cut_off(proxy)
    for i in range(3):
        t.send(f"queued {i}")
    closer = threading.Thread(target=t.close, kwargs={"timeout": 10})
    closer.start()
    proxy.refuse(False)
    closer.join(15)
    assert not closer.is_alive()
    server.wait_for(lambda: len(server.received) >= 3)
    assert server.received == ["queued 0", "queued 1", "queued 2"]
    assert not [e for e in rec.errors() if isinstance(e, UnsentMessagesError)]


def test_messages_left_in_the_queue_are_reported_on_close(proxy: FaultProxy) -> None:
    t, rec = _cut_off(proxy)
    sent = ["a", b"b", {"c": 3}]
    for item in sent:
        t.send(item)
    t.close(timeout=0.2)
    unsent = [e for e in rec.errors() if isinstance(e, UnsentMessagesError)]
    assert len(unsent) == 1 and unsent[0].unsent == sent
    assert "3 queued message(s) were not sent" in unsent[0].message
    assert rec.named("closed") == [("user",)]


def test_messages_left_in_the_queue_are_reported_when_attempts_run_out(
    server: WebSocketServer,
) -> None:
    server.refuse(503)
    policy = ReconnectPolicy(initial_delay=0.05, jitter=0, max_attempts=1)
    t = WebSocketTransport(server.url("/collect"), reconnect=policy)
    rec = Recorder(t)
    t.send("never")
    with pytest.raises(ReconnectFailed):
        t.connect()
    rec.wait(lambda: rec.named("closed"))
    errors = rec.errors()
    assert isinstance(errors[-1], UnsentMessagesError) and errors[-1].unsent == ["never"]
    assert isinstance(errors[-2], ReconnectFailed)
    t.close()


# -- closing --------------------------------------------------------------------------------


def test_close_sends_1000(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/silent"))
    rec = Recorder(t)
    t.connect()
    t.close()
    server.wait_for(lambda: server.closes == [1000])
    assert rec.named("closed") == [("user",)] and not rec.named("done")
    assert t.state is TransportState.CLOSED


def test_close_from_another_thread_wakes_a_blocked_iterator(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/silent"), heartbeat_interval=None)
    t.connect()
    outcome: List[Any] = []
    started = threading.Event()

    def consume() -> None:
        started.set()
        outcome.extend(t.iter_events())
        outcome.append("ended")

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert started.wait(5)
    t.close(timeout=2)
    consumer.join(5)
    assert outcome == ["ended"]


def test_close_returns_promptly_when_the_server_never_answers(
    server: WebSocketServer, proxy: FaultProxy
) -> None:
    t = WebSocketTransport(proxy.url("/silent"), heartbeat_interval=None)
    t.connect()
    proxy.stall()  # our close frame will get no reply; close() must not hang
    t.close(timeout=1.0)
    assert t.state is TransportState.CLOSED


def test_close_from_inside_a_callback(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/stream?count=-1&interval=0.01"))
    rec = Recorder(t)
    t.on("event", lambda event: t.close())
    with contextlib.suppress(TransportClosedError):  # the first event may close it first
        t.connect()
    rec.wait(lambda: rec.named("closed"))
    assert rec.named("closed") == [("user",)]
    t.close()


# -- heartbeats -----------------------------------------------------------------------------


def test_ping_rtt_is_measured(server: WebSocketServer, wait_until: Any) -> None:
    with WebSocketTransport(server.url("/silent"), heartbeat_interval=0.05) as t:
        wait_until(lambda: t.metrics.ping_rtt_ms is not None)
        assert 0 <= (t.metrics.ping_rtt_ms or 0) < 5000
        assert t.health().status == "healthy"


def test_a_stalled_connection_times_out_and_reconnects(proxy: FaultProxy, wait_until: Any) -> None:
    interval, deadline = 0.2, 0.3
    t = WebSocketTransport(
        proxy.url("/silent"),
        heartbeat_interval=interval,
        heartbeat_timeout=deadline,
        timeout=1.0,
        reconnect=FAST,
    )
    rec = Recorder(t)
    try:
        t.connect()
        wait_until(lambda: t.metrics.ping_rtt_ms is not None)
        proxy.stall()
        rec.wait(
            lambda: [e for e in rec.errors() if isinstance(e, HeartbeatTimeout)],
            timeout=(interval + deadline) * 10,
        )
        rec.wait(lambda: rec.named("reconnecting"), timeout=5)  # emitted right after the error
        assert isinstance(rec.named("reconnecting")[0][2], HeartbeatTimeout)
        proxy.resume()
        rec.wait(lambda: len(rec.named("connected")) >= 2, timeout=10)
    finally:
        t.close()


def test_heartbeat_never_fires_while_the_reader_is_blocked(
    server: WebSocketServer, wait_until: Any
) -> None:
    t = WebSocketTransport(
        server.url("/stream?count=-1"),
        buffer=BufferConfig(max_size=5),
        heartbeat_interval=0.05,
        heartbeat_timeout=0.05,
    )
    rec = Recorder(t)
    try:
        t.connect()
        wait_until(t._reader_blocked)
        threading.Event().wait(1.0)  # twenty heartbeat periods with the reader held back
        assert not rec.errors() and t.is_connected()
        assert t.health().status == "healthy"
        events = t.iter_events(timeout=5)
        assert ids([next(events).data for _ in range(50)]) == list(range(1, 51))
    finally:
        t.close()


def test_idle_timeout_applies_without_heartbeats(server: WebSocketServer) -> None:
    t = WebSocketTransport(
        server.url("/silent"), heartbeat_interval=None, idle_timeout=0.2, reconnect=FAST
    )
    rec = Recorder(t)
    try:
        t.connect()
        rec.wait(lambda: rec.named("reconnecting"))
        assert isinstance(rec.named("reconnecting")[0][2], HeartbeatTimeout)
    finally:
        t.close()


# -- options --------------------------------------------------------------------------------


def test_headers_subprotocols_origin_and_last_event_id(
    server: WebSocketServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    t = WebSocketTransport(
        server.url("/headers"),
        headers={"Authorization": "Bearer s3cret-token", "X-Trace": "abc"},
        subprotocols=["nope", "json"],
        origin="https://app.example",
        last_event_id="41",
        debug=True,
    )
    with t:
        info = json.loads(next(t.iter_events(timeout=5)).data)
    headers = info["headers"]
    assert headers["authorization"] == "Bearer s3cret-token"
    assert headers["x-trace"] == "abc"
    assert headers["origin"] == "https://app.example"
    assert headers["last-event-id"] == "41"
    assert headers["sec-websocket-protocol"] == "nope,json"
    assert info["subprotocol"] == "json" and t.subprotocol == "json"
    ours = [
        r.getMessage()
        for r in caplog.records
        if r.name == "websocket"
        or (
            r.name.startswith("aikit_transports")
            and not r.name.startswith("aikit_transports.testing")
        )
    ]
    assert ours and not [line for line in ours if "s3cret" in line]
    assert "s3cret" not in repr(t)


def test_no_acceptable_subprotocol_fails_without_retrying(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/echo"), subprotocols=["mqtt"], reconnect=FAST)
    with pytest.raises(ProtocolError, match="subprotocols"):
        t.connect()
    assert server.handshakes == 1
    t.close()


def test_credentials_in_the_url_are_redacted(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/echo?token=abc123&x=1"))
    assert "abc123" not in repr(t) and "***" in repr(t)
    t.close()


@pytest.fixture(scope="module")
def tls_ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def tls_server(tls_ca: Any) -> Iterator[WebSocketServer]:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    with WebSocketServer(ssl_context=context) as srv:
        yield srv


def test_tls_with_an_untrusted_certificate_fails_clearly_and_is_not_retried(
    tls_server: WebSocketServer,
) -> None:
    t = WebSocketTransport(tls_server.url("/echo"), reconnect=FAST)
    rec = Recorder(t)
    with pytest.raises(ConnectError, match="certificate") as info:
        t.connect()
    assert not info.value.retryable
    assert not rec.named("reconnecting") and tls_server.handshakes == 0
    t.close()


def test_tls_with_the_ca_bundle_or_verify_off(tls_server: WebSocketServer, tls_ca: Any) -> None:
    with tls_ca.cert_pem.tempfile() as ca_path:
        for verify in (ca_path, False):
            with WebSocketTransport(tls_server.url("/echo"), verify=verify) as t:
                events = t.iter_events(timeout=5)
                t.send("over tls")
                assert next(events).data == "over tls"


def test_http_connect_proxy(server: WebSocketServer) -> None:
    with FaultProxy("127.0.0.1", server.port, http_connect=True) as http_proxy:
        proxies = {"http": f"http://127.0.0.1:{http_proxy.port}"}
        with WebSocketTransport(server.url("/echo"), proxies=proxies) as t:
            events = t.iter_events(timeout=5)
            t.send("via proxy")
            assert next(events).data == "via proxy"
        assert http_proxy.connect_requests == [f"CONNECT 127.0.0.1:{server.port} HTTP/1.1"]


def test_bytes_arriving_one_at_a_time(proxy: FaultProxy) -> None:
    proxy.fragment(True)
    with WebSocketTransport(proxy.url("/stream?count=20&close=none")) as t:
        events = t.iter_events(timeout=5)
        assert ids([next(events).data for _ in range(20)]) == list(range(1, 21))
        t.send("é" * 50)
    # the client's frames were split too; the server got them whole
    assert proxy.accepted == 1


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"heartbeat_interval": 0}, "heartbeat_interval"),
        ({"heartbeat_interval": -1}, "heartbeat_interval"),
        ({"heartbeat_timeout": 0}, "heartbeat_timeout"),
        ({"heartbeat_timeout": None}, "heartbeat_timeout"),
        ({"send_queue_size": -1}, "send_queue_size"),
        ({"send_queue_size": 1.5}, "send_queue_size"),
        ({"max_message_bytes": 0}, "max_message_bytes"),
        ({"max_message_bytes": True}, "max_message_bytes"),
        ({"subprotocols": "chat"}, "subprotocols"),
        ({"subprotocols": ["ok", ""]}, "subprotocols"),
        ({"origin": 5}, "origin"),
        ({"headers": {"X": 1}}, "headers"),
        ({"timeout": 0}, "timeout"),
        ({"proxies": {"ws": "ftp://proxy:21"}}, "proxies"),
        ({"cert": ("a",)}, "cert"),
    ],
)
def test_bad_options_name_the_option(options: Dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        WebSocketTransport("ws://127.0.0.1:1/", **options)


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "127.0.0.1:80", ""])
def test_bad_url_scheme(url: str) -> None:
    with pytest.raises(ValueError):
        WebSocketTransport(url)


def test_stream_drops_and_the_session_resumes(server: WebSocketServer) -> None:
    t = WebSocketTransport(server.url("/stream?count=12&drop_every=5&session=demo"), reconnect=FAST)
    rec = Recorder(t)
    received = [e.data for e in t.iter_events(timeout=5)]
    assert ids(received) == list(range(1, 13))
    assert len(rec.named("reconnecting")) == 2 and rec.named("closed") == [("done",)]


@pytest.mark.parametrize("io", ["shared", "threads"])
def test_heartbeats_of_many_transports_cost_no_thread_each(
    server: WebSocketServer, wait_until: Any, io: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIKIT_TRANSPORTS_IO", io)
    before = set(threading.enumerate())
    transports = [
        WebSocketTransport(server.url("/silent"), heartbeat_interval=0.05) for _ in range(10)
    ]
    try:
        for t in transports:
            t.connect()
        wait_until(lambda: all(t.metrics.ping_rtt_ms is not None for t in transports))
        new = [th.name for th in set(threading.enumerate()) - before]
    finally:
        for t in transports:
            t.close()
    if io == "shared":  # the I/O threads' own timers: no timer thread at all
        assert new and all(name.startswith(("aikit-io-", "aikit-worker-")) for name in new)
        assert len(new) <= io_loop.IO_THREADS + io_loop.WORKERS
    else:  # a reader thread each, and one timer thread for all their heartbeats
        readers = [f"aikit-websocket-{t.id}" for t in transports]
        assert sorted(new) == sorted([*readers, "aikit-timers"])


def test_a_slow_link_delays_but_delivers(proxy: FaultProxy) -> None:
    proxy.slow(0.05)
    with WebSocketTransport(proxy.url("/echo"), timeout=5) as t:
        events = t.iter_events(timeout=5)
        t.send("slowly")
        assert next(events).data == "slowly"
    proxy.slow(0)
    assert proxy.accepted == 1 and "FaultProxy" in repr(proxy)


def test_an_idle_reader_with_heartbeats_waits_without_a_timeout(
    server: WebSocketServer, wait_until: Any, reader_threads: None
) -> None:
    # no periodic wake-ups of its own (122/s for 1,000 idle streams before): a missed pong
    # shuts the socket down, which wakes the wait; without heartbeats, idle_timeout needs them
    with WebSocketTransport(server.url("/silent"), heartbeat_interval=30.0) as t:
        assert wait_until(lambda: t._waiting_since is not None) and t._stall_limit() is None
    with WebSocketTransport(server.url("/silent"), heartbeat_interval=None, idle_timeout=5) as t:
        assert wait_until(lambda: t._waiting_since is not None) and t._stall_limit() == 5


def test_on_the_io_threads_only_a_stream_without_heartbeats_has_a_stall_deadline(
    server: WebSocketServer, wait_until: Any, shared_io: None
) -> None:
    def stall_timer(t: WebSocketTransport) -> Any:
        io = t._io
        return "unset" if io is None or t._waiting_since is None else io._stall

    with WebSocketTransport(server.url("/silent"), heartbeat_interval=30.0) as t:
        assert wait_until(lambda: stall_timer(t) != "unset") and stall_timer(t) is None
    with WebSocketTransport(server.url("/silent"), heartbeat_interval=None, idle_timeout=5) as t:
        assert wait_until(lambda: stall_timer(t) != "unset") and stall_timer(t) is not None
