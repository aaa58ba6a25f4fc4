"""RedisStreamTransport and RedisRelay against a real ``redis-server``, in this process.

The multi-process cases (several relays, SIGKILL takeover, consumer groups across processes)
are in ``test_redis_scaling.py``.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Optional

import pytest
from redis_fixtures import RedisServer

from aikit_transports import (
    BufferConfig,
    ConnectError,
    Event,
    HTTPStreamTransport,
    ProtocolError,
    ReconnectFailed,
    ReconnectPolicy,
    SSETransport,
    TransportError,
    TransportManager,
    TransportState,
    TransportType,
    WebSocketTransport,
    connect,
)
from aikit_transports.cli import main as cli_main
from aikit_transports.testing import RecordedRequest, StreamServer, StreamWriter
from aikit_transports.transports import resolve_transport, wire_for_scheme

pytest.importorskip("redis")

from aikit_transports.contrib.redis import (  # needs redis-py: after the skip above
    RedisRelay,
    RedisReplyError,
    RedisStreamTransport,
    encode_end_marker,
    encode_envelope,
)

pytestmark = pytest.mark.redis

FAST = ReconnectPolicy(max_attempts=None, initial_delay=0.05, max_delay=0.5)


def xadd(client: Any, stream: str, data: Any, **kw: Any) -> str:
    """Append one envelope as a relay would; returns the entry id."""
    flat = encode_envelope(data, **kw)
    return str(client.xadd(stream, dict(zip(flat[::2], flat[1::2]))).decode())


def xadd_end(client: Any, stream: str) -> str:
    flat = encode_end_marker()
    return str(client.xadd(stream, dict(zip(flat[::2], flat[1::2]))).decode())


def reader(server: RedisServer, stream: str = "s", **kw: Any) -> RedisStreamTransport:
    kw.setdefault("block_ms", 200)
    kw.setdefault("reconnect", FAST)
    return RedisStreamTransport(server.url, stream, **kw)


def collect(t: RedisStreamTransport, timeout: float = 20.0) -> list[Event]:
    return list(t.iter_events(timeout=timeout))


# --- reading ---------------------------------------------------------------------------------


def test_reader_gets_every_entry_with_entry_ids(
    redis_server: RedisServer, redis_client: Any
) -> None:
    ids = [xadd(redis_client, "s", f"event {i}", upstream_id=str(i)) for i in range(1, 51)]
    xadd_end(redis_client, "s")
    t = reader(redis_server, last_event_id="0")
    done = threading.Event()
    closed: list[str] = []
    t.on("done", done.set)
    t.on("closed", closed.append)
    events = collect(t)
    assert [e.data for e in events] == [f"event {i}" for i in range(1, 51)]
    assert [e.id for e in events] == ids
    assert {e.type for e in events} == {"message"} and {e.transport_id for e in events} == {t.id}
    assert done.is_set() and closed == ["done"] and t.state is TransportState.CLOSED
    assert t.type is TransportType.REDIS_STREAM
    t.close()


def test_a_reader_that_restarts_with_its_last_id_misses_nothing(
    redis_server: RedisServer, redis_client: Any
) -> None:
    for i in range(1, 11):
        xadd(redis_client, "s", f"event {i}")
    first = reader(redis_server, last_event_id="0")
    taken = []
    for event in first.iter_events(timeout=10):
        taken.append(event)
        if len(taken) == 4:
            break
    first.close()
    xadd_end(redis_client, "s")
    again = reader(redis_server, last_event_id=taken[-1].id)
    assert again.last_event_id == taken[-1].id
    assert [e.data for e in collect(again)] == [f"event {i}" for i in range(5, 11)]
    again.close()


def test_dollar_starts_with_the_entries_added_from_now_on(
    redis_server: RedisServer, redis_client: Any
) -> None:
    xadd(redis_client, "s", "old")
    t = reader(redis_server)  # last_event_id "$"
    t.connect()
    xadd(redis_client, "s", "new")
    xadd_end(redis_client, "s")
    assert [e.data for e in collect(t)] == ["new"]
    t.close()


def test_listener_pause_and_resume(
    redis_server: RedisServer, redis_client: Any, wait_until: Any
) -> None:
    t = reader(redis_server, last_event_id="0")
    got: list[str] = []
    t.on("event", lambda e: got.append(e.data))
    t.connect()
    xadd(redis_client, "s", "a")
    wait_until(lambda: got == ["a"])
    t.pause()
    for x in ("b", "c", "d"):
        xadd(redis_client, "s", x)
    wait_until(lambda: t.metrics.messages_received == 4)
    assert got == ["a"]
    t.resume()
    wait_until(lambda: got == ["a", "b", "c", "d"])
    t.close()


def test_drop_oldest_keeps_the_newest(
    redis_server: RedisServer, redis_client: Any, wait_until: Any
) -> None:
    for i in range(50):
        xadd(redis_client, "s", str(i))
    xadd_end(redis_client, "s")
    t = reader(
        redis_server, last_event_id="0", buffer=BufferConfig(max_size=5, strategy="drop-oldest")
    )
    it = t.iter_events(timeout=10)
    wait_until(lambda: t.state is TransportState.CLOSED)
    assert [e.data for e in it] == [str(i) for i in range(45, 50)]
    assert t.metrics.messages_dropped == 45
    t.close()


def test_close_returns_promptly_while_blocked_in_xread(
    redis_server: RedisServer, wait_until: Any
) -> None:
    t = reader(redis_server, block_ms=60_000)
    t.connect()
    wait_until(lambda: t.health().status == "healthy")
    started = time.monotonic()
    t.close(timeout=1.0)
    assert time.monotonic() - started < 2.0  # close() promises timeout + 1 s
    assert t.state is TransportState.CLOSED


def test_metrics_and_health(redis_server: RedisServer, redis_client: Any, wait_until: Any) -> None:
    t = reader(redis_server, last_event_id="0")
    for i in range(20):
        xadd(redis_client, "s", "x" * 10, upstream_id=str(i))
    it = t.iter_events(timeout=10)
    for _ in range(20):
        next(it)
    m = t.metrics
    assert m.messages_received == 20 and m.bytes_received >= 200 and m.connected_at is not None
    health = t.health()
    assert health.status == "healthy" and health.state is TransportState.CONNECTED
    t.close()
    assert t.health().status == "unhealthy"


def test_reconnects_with_backoff_when_the_connection_drops(
    redis_server: RedisServer, redis_client: Any, wait_until: Any
) -> None:
    t = reader(redis_server, last_event_id="0", block_ms=100)
    got: list[str] = []
    attempts: list[int] = []
    t.on("event", lambda e: got.append(e.data))
    t.on("reconnecting", lambda attempt, delay, error: attempts.append(attempt))
    t.connect()
    xadd(redis_client, "s", "before")
    wait_until(lambda: got == ["before"])
    redis_client.client_kill_filter(_type="normal", skipme=True)  # cuts every other client
    xadd(redis_client, "s", "after")
    wait_until(lambda: got == ["before", "after"])
    assert attempts and t.metrics.reconnects >= 1
    t.close()


@pytest.mark.parametrize("parser", ["hiredis", "python"])
def test_both_reply_parsers_read_large_batches_and_error_replies(
    redis_server: RedisServer, redis_client: Any, monkeypatch: pytest.MonkeyPatch, parser: str
) -> None:
    """hiredis when installed, else the pure-Python fallback: the same events either way,
    replies cut by many reads included (200 entries of 4 KiB in one read)."""
    from aikit_transports.contrib.redis import connection, resp

    if parser == "hiredis":
        if resp.hiredis is None:
            pytest.skip("hiredis is not installed")
        monkeypatch.setattr(connection, "new_reader", resp.hiredis_reader)
    else:
        monkeypatch.setattr(connection, "new_reader", resp.Reader)
    sent = [f"{i:04d}" + "x" * 4096 for i in range(200)]
    for data in sent:
        xadd(redis_client, "s", data)
    xadd_end(redis_client, "s")
    t = reader(redis_server, last_event_id="0", count=500)
    assert [e.data for e in collect(t)] == sent
    t.close()
    redis_client.set("k", "a string")
    link = connection.RedisLink(connection.parse_redis_url(redis_server.url), timeout=5.0)
    try:
        with pytest.raises(RedisReplyError, match="WRONGTYPE") as caught:
            link.pipeline(("PING",), ("XLEN", "k"))
        assert caught.value.code == "WRONGTYPE"
        assert link.call("XLEN", "s") == 201  # the link goes on after an error reply
        small = link._reader
        assert link.call("PING") == b"PONG" and link._reader is small
        assert len(link.call("XRANGE", "s", "-", "+")) == 201
        # a fresh reader once a large reply is read: the link does not hold its memory
        assert link._reader is not small and not link._reader.has_data()
    finally:
        link.close()


# --- bad input ---------------------------------------------------------------------------------


def test_malformed_url_raises_value_error_at_construction() -> None:
    with pytest.raises(ValueError, match="malformed Redis URL"):
        RedisStreamTransport("redis://127.0.0.1:port/0", "s")


def test_unreachable_redis_is_a_connect_error_naming_host_and_port() -> None:
    with _closed_port() as port:
        t = RedisStreamTransport(
            f"redis://127.0.0.1:{port}/0", "s", reconnect=ReconnectPolicy(max_attempts=0)
        )
        errors: list[TransportError] = []
        t.on("error", errors.append)
        with pytest.raises(ReconnectFailed) as info:
            t.connect(timeout=10)
        cause = info.value.__cause__
        assert isinstance(cause, ConnectError)
        assert f"127.0.0.1:{port}" in cause.message and "cannot reach Redis" in cause.message
        assert f"127.0.0.1:{port}" in str(info.value)
        assert errors and t.state is TransportState.ERROR
        t.close()


class _closed_port:
    """A port of 127.0.0.1 that nothing listens on."""

    def __enter__(self) -> int:
        import socket

        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return int(sock.getsockname()[1])

    def __exit__(self, *exc: object) -> None:
        return None


def test_an_entry_that_is_not_an_envelope_is_an_error_event_and_the_stream_goes_on(
    redis_server: RedisServer, redis_client: Any
) -> None:
    xadd(redis_client, "s", "one")
    bad = redis_client.xadd("s", {"foo": "bar"}).decode()
    xadd(redis_client, "s", "two")
    xadd_end(redis_client, "s")
    t = reader(redis_server, last_event_id="0")
    errors: list[TransportError] = []
    t.on("error", errors.append)
    assert [e.data for e in collect(t)] == ["one", "two"]
    assert len(errors) == 1 and isinstance(errors[0], ProtocolError)
    assert bad in errors[0].message and "not an aikit envelope" in errors[0].message
    t.close()


def test_a_key_that_is_not_a_stream_fails_the_transport(
    redis_server: RedisServer, redis_client: Any
) -> None:
    redis_client.set("s", "a string")
    t = reader(redis_server, last_event_id="0")
    with pytest.raises(RedisReplyError, match="WRONGTYPE"):
        collect(t)
    assert t.state is TransportState.ERROR
    t.close()


# --- the wire in the registry, manager, connect() and the CLI ----------------------------


def test_registry_manager_and_connect_know_the_wire(
    redis_server: RedisServer, redis_client: Any
) -> None:
    url = redis_server.url + "?stream=s"
    assert wire_for_scheme(url) is TransportType.REDIS_STREAM
    assert resolve_transport("redis-stream") is RedisStreamTransport
    xadd(redis_client, "s", "hello")
    xadd_end(redis_client, "s")
    with TransportManager() as mgr:
        t = mgr.create("redis-stream", url, last_event_id="0", block_ms=200)
        assert [e.data for e in t.iter_events(timeout=10)] == ["hello"]
        assert t.state is TransportState.CLOSED and mgr.get(t.id) is None
    c = connect(url, transports=("redis-stream",), last_event_id="0", block_ms=200)
    assert isinstance(c, RedisStreamTransport)
    assert [e.data for e in c.iter_events(timeout=10)] == ["hello"]
    c.close()


def test_cli_listens_to_a_redis_url(
    redis_server: RedisServer, redis_client: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    for x in ("a", "b"):
        xadd(redis_client, "s", x)
    xadd(redis_client, "s", {"k": 1})
    xadd_end(redis_client, "s")
    code = cli_main(["listen", redis_server.url + "?stream=s", "--last-event-id", "0", "--json"])
    out = capsys.readouterr().out.splitlines()
    assert code == 0
    assert [line.split('"data": ')[1].split(', "id"')[0] for line in out] == [
        '"a"',
        '"b"',
        '{"k": 1}',
    ]


# --- consumer groups -------------------------------------------------------------------------


def test_group_consumers_share_the_entries_and_acknowledge_them(
    redis_server: RedisServer, redis_client: Any, wait_until: Any
) -> None:
    a = reader(redis_server, group="g", consumer="a", count=7)
    b = reader(redis_server, group="g", consumer="b", count=7)
    got: dict[str, list[int]] = {"a": [], "b": []}
    a.on("event", lambda e: got["a"].append(int(e.data)))  # acknowledged when it returns
    it = b.iter_events(timeout=20)  # acknowledged when the next one is asked for
    a.connect()
    for i in range(200):
        xadd(redis_client, "s", str(i))
    xadd_end(redis_client, "s")
    got["b"] = [int(e.data) for e in it]
    wait_until(lambda: a.state is TransportState.CLOSED, 20)  # a ends once the group is done
    assert sorted(got["a"] + got["b"]) == list(range(200))
    assert not set(got["a"]) & set(got["b"])
    assert redis_client.xpending("s", "g")["pending"] == 0
    a.close()
    b.close()


def test_an_iterator_acknowledges_the_events_it_asked_past(
    redis_server: RedisServer, redis_client: Any, wait_until: Any
) -> None:
    for i in range(10):
        xadd(redis_client, "s", str(i))
    t = reader(redis_server, group="g", consumer="c", count=10)
    it = t.iter_events(timeout=10)
    assert [next(it).data for _ in range(3)] == ["0", "1", "2"]
    it.close()  # "0" and "1" were asked past; "2" and the rest were not
    assert redis_client.xpending("s", "g")["pending"] == 8
    it = t.iter_events(timeout=0.5)
    assert [next(it).data for _ in range(7)] == [str(i) for i in range(3, 10)]
    with pytest.raises(TimeoutError):
        next(it)  # asking for the next one acknowledges the whole batch taken
    assert redis_client.xpending("s", "g")["pending"] == 1  # "2": taken, never asked past
    t.close()


def test_an_existing_group_is_used_as_it_is(redis_server: RedisServer, redis_client: Any) -> None:
    xadd(redis_client, "s", "seen by the group before")
    redis_client.xgroup_create("s", "g", id="$")
    xadd(redis_client, "s", "new")
    xadd_end(redis_client, "s")
    t = reader(redis_server, group="g")
    assert [e.data for e in collect(t)] == ["new"]
    t.close()


def test_unacknowledged_entries_are_delivered_again_to_the_same_consumer(
    redis_server: RedisServer, redis_client: Any
) -> None:
    for i in range(10):
        xadd(redis_client, "s", str(i))
    first = reader(redis_server, group="g", consumer="c", count=10)
    it = first.iter_events(timeout=10)
    assert next(it).data == "0"  # taken, never acknowledged: the process "dies"
    first.close()
    assert redis_client.xpending("s", "g")["pending"] == 10
    xadd_end(redis_client, "s")
    again = reader(redis_server, group="g", consumer="c")
    assert [e.data for e in collect(again)] == [str(i) for i in range(10)]
    assert redis_client.xpending("s", "g")["pending"] == 0
    again.close()


def test_entries_of_a_dead_consumer_are_claimed(
    redis_server: RedisServer, redis_client: Any
) -> None:
    for i in range(5):
        xadd(redis_client, "s", str(i))
    redis_client.xgroup_create("s", "g", id="0")
    redis_client.xreadgroup("g", "dead", {"s": ">"}, count=3)  # takes 0..2 and dies
    xadd_end(redis_client, "s")
    t = reader(redis_server, group="g", consumer="live", claim_idle=0.2)
    assert sorted(e.data for e in collect(t)) == ["0", "1", "2", "3", "4"]
    assert redis_client.xpending("s", "g")["pending"] == 0
    t.close()


# --- the relay --------------------------------------------------------------------------------


def _custom_sse(body: bytes) -> Callable[[RecordedRequest, StreamWriter], None]:
    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        writer.write(body)

    return route


def test_relay_round_trips_str_bytes_and_json_exactly(
    redis_server: RedisServer, stream_server: StreamServer, relays: list[RedisRelay]
) -> None:
    from aikit_transports.testing import WebSocketServer

    stream_server.route(
        "/custom",
        _custom_sse(
            "retry: 1500\nevent: update\nid: a1\ndata: line 1\ndata: ünï \u2028 çødé\n\n"
            'id: a2\ndata: {"not": "parsed"}\n\ndata: [DONE]\n\n'.encode()
        ),
    )
    with WebSocketServer() as ws:
        upstreams: dict[str, Any] = {
            "sse": SSETransport(stream_server.url("/custom"), reconnect=FAST),
            "ws": WebSocketTransport(ws.url("/stream?count=3&binary=1"), reconnect=FAST),
            "ndjson": HTTPStreamTransport(
                stream_server.url("/ndjson?count=3&end=204"), reconnect=FAST
            ),
        }
        for name, upstream in upstreams.items():
            relays.append(RedisRelay(upstream, redis_server.url, name, lease_ttl=2).start())
        results = {}
        for name in upstreams:
            t = reader(redis_server, name, last_event_id="0")
            results[name] = [(e.type, e.data, e.retry) for e in collect(t)]
            t.close()
    assert results["sse"] == [
        ("update", "line 1\nünï \u2028 çødé", 1500),
        ("message", '{"not": "parsed"}', 1500),
    ]
    assert results["ws"] == [
        ("binary", f'{{"id":{i},"text":"message {i}"}}'.encode(), None) for i in (1, 2, 3)
    ]
    assert results["ndjson"] == [
        ("message", {"id": i, "data": f"line {i}"}, None) for i in (1, 2, 3)
    ]
    for r in relays:
        assert r.wait(10) and r.state == "done"


@pytest.mark.slow
def test_one_relay_holds_the_lease_and_another_takes_over_without_gap_or_duplicate(
    redis_server: RedisServer,
    redis_client: Any,
    stream_server: StreamServer,
    relays: list[RedisRelay],
    wait_until: Any,
) -> None:
    url = stream_server.url("/sse?count=400&delay=0.005&end=sentinel")

    def factory(last_id: Optional[str]) -> SSETransport:
        return SSETransport(url, last_event_id=last_id, reconnect=FAST)

    first = RedisRelay(factory, redis_server.url, "s", lease_ttl=1.0, id="first")
    second = RedisRelay(factory, redis_server.url, "s", lease_ttl=1.0, id="second")
    relays += [first, second]
    leases: list[tuple[str, bool]] = []
    first.on("lease", lambda held: leases.append(("first", held)))
    second.on("lease", lambda held: leases.append(("second", held)))
    first.start()
    wait_until(lambda: first.metrics.lease_held)
    second.start()
    wait_until(lambda: second.state == "standby")
    t = reader(redis_server, last_event_id="0")
    it = t.iter_events(timeout=20)
    got = [next(it).data for _ in range(50)]
    first.close()  # releases the lease: the other takes it at once
    got += [e.data for e in it]
    assert got == [f"event {i}" for i in range(1, 401)]
    assert leases[:3] == [("first", True), ("first", False), ("second", True)]
    assert second.wait(10) and second.state == "done"
    resumed = [r for r in stream_server.requests if r.path == "/sse"][-1]
    # resumed right after the last event in the stream (close() may cut the reply of the
    # first relay's last append, so its metrics can lag one batch behind the stream)
    after = int(resumed.headers["Last-Event-ID"])
    assert after >= int(first.metrics.last_upstream_id or 0)
    assert second.metrics.events_out == 400 - after and second.metrics.events_skipped == 0
    assert redis_client.get("s:relay:lease") is None
    t.close()


@pytest.mark.slow
def test_a_relay_that_loses_its_lease_stops_relaying_and_takes_it_again_later(
    redis_server: RedisServer,
    redis_client: Any,
    stream_server: StreamServer,
    relays: list[RedisRelay],
    wait_until: Any,
) -> None:
    url = stream_server.url("/sse?count=300&delay=0.005&end=sentinel")
    relay = RedisRelay(
        lambda last_id: SSETransport(url, last_event_id=last_id, reconnect=FAST),
        redis_server.url,
        "s",
        lease_ttl=1.0,
    )
    relays.append(relay)
    leases: list[bool] = []
    relay.on("lease", leases.append)
    relay.start()
    wait_until(lambda: redis_client.xlen("s") >= 50)
    # another relay "took" the lease (as after a failover): ours must stop appending
    redis_client.set("s:relay:lease", "someone-else", px=1500)
    redis_client.hset("s:relay:state", "holder", "someone-else")
    wait_until(lambda: leases[-1] is False and relay.state == "standby")
    frozen = redis_client.xlen("s")
    wait_until(lambda: leases.count(True) == 2, 10)  # it expired: ours takes it back
    assert relay.wait(20) and relay.state == "done"
    t = reader(redis_server, last_event_id="0")
    assert [e.data for e in collect(t)] == [f"event {i}" for i in range(1, 301)]
    assert frozen < 300 and relay.metrics.lease_acquisitions == 2
    t.close()


def test_a_relay_given_a_transport_cannot_take_a_lost_lease_again(
    redis_server: RedisServer,
    redis_client: Any,
    stream_server: StreamServer,
    relays: list[RedisRelay],
    wait_until: Any,
) -> None:
    upstream = SSETransport(stream_server.url("/sse?count=300&delay=0.005&end=sentinel"))
    relay = RedisRelay(upstream, redis_server.url, "s", lease_ttl=1.0)
    relays.append(relay)
    relay.start()
    wait_until(lambda: redis_client.xlen("s") >= 10)
    redis_client.set("s:relay:lease", "someone-else", px=500)
    redis_client.hset("s:relay:state", "holder", "someone-else")
    assert relay.wait(20) and relay.state == "failed"
    assert "give it a factory" in (relay.metrics.last_error or "")
    assert upstream.state is TransportState.CLOSED


def test_a_relay_skips_events_an_upstream_replays_after_a_takeover(
    redis_server: RedisServer,
    redis_client: Any,
    stream_server: StreamServer,
    relays: list[RedisRelay],
) -> None:
    # this upstream ignores Last-Event-ID and always starts from 1
    body = "".join(f"id: {i}\ndata: event {i}\n\n" for i in range(1, 31)) + "data: [DONE]\n\n"
    stream_server.route("/replays", _custom_sse(body.encode()))
    for i in range(1, 11):  # a previous relay appended 1..10
        xadd(redis_client, "s", f"event {i}", upstream_id=str(i))
    redis_client.hset("s:relay:state", mapping={"upstream_id": "10"})
    relay = RedisRelay(
        SSETransport(stream_server.url("/replays"), reconnect=FAST), redis_server.url, "s"
    )
    relays.append(relay)
    relay.start()
    assert relay.wait(10) and relay.state == "done"
    t = reader(redis_server, last_event_id="0")
    assert [e.data for e in collect(t)] == [f"event {i}" for i in range(1, 31)]
    assert relay.metrics.events_skipped == 10 and relay.metrics.events_out == 20
    assert stream_server.requests[-1].headers.get("Last-Event-ID") == "10"  # resumed from it
    t.close()


def test_a_finished_stream_stays_finished(
    redis_server: RedisServer, stream_server: StreamServer, relays: list[RedisRelay]
) -> None:
    url = stream_server.url("/sse?count=5&end=sentinel")
    first = RedisRelay(SSETransport(url), redis_server.url, "s")
    relays.append(first)
    first.run()
    assert first.state == "done" and first.metrics.events_out == 5
    later = RedisRelay(SSETransport(url), redis_server.url, "s")
    relays.append(later)
    closed: list[str] = []
    later.on("closed", closed.append)
    later.run()
    assert later.state == "done" and later.metrics.lease_acquisitions == 0
    assert closed == ["done"] and len(stream_server.requests) == 1


def test_relay_metrics_health_and_events(
    redis_server: RedisServer,
    stream_server: StreamServer,
    relays: list[RedisRelay],
    wait_until: Any,
) -> None:
    upstream = SSETransport(stream_server.url("/sse?count=20&end=hold"), reconnect=FAST)
    relay = RedisRelay(upstream, redis_server.url, "s", lease_ttl=1.0)
    relays.append(relay)
    assert relay.health().status == "degraded"  # not started
    lease: list[bool] = []
    relay.on("lease", lease.append)
    relay.start()
    wait_until(lambda: relay.metrics.events_out == 20)
    m = relay.metrics
    assert m.lease_held and m.lease_acquisitions == 1 and m.events_in == 20
    assert m.last_upstream_id == "20" and m.last_entry_id is not None
    assert relay.health().status == "healthy" and relay.holder == relay.token
    assert relay.upstream is upstream
    relay.close()
    assert lease == [True, False] and relay.state == "closed"
    assert relay.health().status == "unhealthy"


def test_relay_gives_up_on_an_unreachable_redis_by_its_policy(stream_server: StreamServer) -> None:
    with _closed_port() as port:
        relay = RedisRelay(
            SSETransport(stream_server.url("/sse")),
            f"redis://127.0.0.1:{port}/0",
            "s",
            reconnect=ReconnectPolicy(max_attempts=1, initial_delay=0.01),
        )
        errors: list[TransportError] = []
        relay.on("error", errors.append)
        with pytest.raises(ReconnectFailed, match=f"127.0.0.1:{port}"):
            relay.run()
        assert relay.state == "failed" and relay.metrics.errors >= 2
        assert isinstance(errors[0], ConnectError) and f"127.0.0.1:{port}" in errors[0].message
        relay.close()


def test_a_failed_upstream_fails_the_relay(
    redis_server: RedisServer, stream_server: StreamServer
) -> None:
    relay = RedisRelay(SSETransport(stream_server.url("/sse?status=404")), redis_server.url, "s")
    with pytest.raises(TransportError, match="404"):
        relay.run()
    assert relay.state == "failed" and relay.health().status == "unhealthy"
    relay.close()


# --- Redis restarts ----------------------------------------------------------------------------


def _restart_mid_stream(server: RedisServer, stream_server: StreamServer) -> list[list[str]]:
    """Relay 1500 slow events; restart Redis after 300; what each of 2 readers received."""
    client = server.client()
    url = stream_server.url("/sse?count=1500&delay=0.002&end=sentinel")
    relay = RedisRelay(
        SSETransport(url, reconnect=FAST), server.url, "s", lease_ttl=2.0, reconnect=FAST
    )
    readers = [reader(server, last_event_id="0", block_ms=100) for _ in range(2)]
    got: list[list[str]] = [[], []]
    ended = [threading.Event(), threading.Event()]
    for t, seen, end in zip(readers, got, ended):
        t.on("event", lambda e, seen=seen: seen.append(e.data))
        t.on("closed", lambda reason, end=end: end.set())
        t.connect()
    relay.start()
    try:
        deadline = time.monotonic() + 30
        while client.xlen("s") < 300:
            assert time.monotonic() < deadline, "the relay did not get going"
            time.sleep(0.01)  # polls Redis, bounded above
        server.restart()
        for end in ended:
            assert end.wait(45), "a reader did not reach the end"
        assert relay.wait(10) and relay.state == "done"
        assert relay.metrics.redis_reconnects >= 1
        assert all(t.metrics.reconnects >= 1 for t in readers)
    finally:
        relay.close()
        for t in readers:
            t.close()
        client.close()
    return got


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_redis_restart_with_aof_loses_nothing(
    redis_server_aof: RedisServer, stream_server: StreamServer
) -> None:
    got = _restart_mid_stream(redis_server_aof, stream_server)
    for seen in got:
        assert seen == [f"event {i}" for i in range(1, 1501)]


@pytest.mark.slow
@pytest.mark.timeout(120)
def test_redis_restart_without_persistence_readers_resume(
    redis_server: RedisServer, stream_server: StreamServer
) -> None:
    got = _restart_mid_stream(redis_server, stream_server)
    for seen in got:
        numbers = [int(x.split()[1]) for x in seen]
        # what Redis held but no reader had read yet is gone with it; the rest is in order
        assert numbers == sorted(set(numbers)) and numbers[-1] == 1500
