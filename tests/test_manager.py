"""TransportManager: limits, reuse, forwarding, idle cleanup, health, metrics and shutdown.

Most tests use ``FakeWire``, an in-process wire registered under ``"fake"`` (events are pushed by
the test), so they need no network; the SSE and WebSocket tests use the real servers.
"""

from __future__ import annotations

import enum
import logging
import queue
import threading
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, Optional

import pytest

from aikit_transports.config import ReconnectPolicy
from aikit_transports.errors import (
    ConnectError,
    HTTPStatusError,
    NotSupportedError,
    TransportClosedError,
    TransportError,
    TransportLimitError,
)
from aikit_transports.events import Event, TransportState, TransportType
from aikit_transports.manager import TransportManager
from aikit_transports.metrics import TransportHealth
from aikit_transports.transports import io_loop
from aikit_transports.transports.base import DONE, EOF_, BaseTransport
from aikit_transports.transports.registry import _WIRES, register_transport

if TYPE_CHECKING:
    from aikit_transports.testing import StreamServer

_WAKE = object()
FAST = ReconnectPolicy(max_attempts=None, initial_delay=0.01, max_delay=0.02, jitter=0)


class FakeType(str, enum.Enum):
    FAKE = "fake"


class FakeWire(BaseTransport):
    """A wire whose stream is a queue the test pushes into (``None`` ends it: ``done``)."""

    type = FakeType.FAKE  # type: ignore[assignment]
    schemes = ("fake",)

    def __init__(self, url: str, *, fail_with: Optional[TransportError] = None, **options: Any):
        super().__init__(url, **options)
        self.fail_with = fail_with
        self.inbox: queue.Queue[Any] = queue.Queue()
        self.opened = threading.Event()

    def push(self, *items: Any) -> None:
        for item in items:
            self.inbox.put(item)

    def send(self, data: Any, timeout: Optional[float] = None) -> None:
        self._m.messages_sent += 1

    def _open(self) -> None:
        if self.fail_with is not None:
            raise self.fail_with
        self.opened.set()

    def _read(self) -> str:
        while not self._stop.is_set():
            item = self.inbox.get()
            if item is _WAKE:
                return EOF_
            if item is None:
                return DONE
            self._traffic()
            self._publish([Event(item, transport_id=self.id)])
        return EOF_

    def _interrupt(self) -> None:
        self.inbox.put(_WAKE)


@pytest.fixture(autouse=True)
def _fake_wire(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(_WIRES, "fake", FakeWire)


@pytest.fixture
def mgr() -> Iterator[TransportManager]:
    with TransportManager(max_transports=10, max_workers=2) as manager:
        yield manager


def fake(mgr: TransportManager, url: str = "fake://a", **options: Any) -> FakeWire:
    t = mgr.create("fake", url, **options)
    assert isinstance(t, FakeWire)
    return t


def collector() -> tuple[list[tuple[Any, ...]], threading.Condition, Callable[..., None]]:
    """A listener that records its arguments, and a condition notified on each call."""
    seen: list[tuple[Any, ...]] = []
    cond = threading.Condition()

    def listener(*args: Any) -> None:
        with cond:
            seen.append(args)
            cond.notify_all()

    return seen, cond, listener


def wait_for(
    cond: threading.Condition, predicate: Callable[[], bool], timeout: float = 5.0
) -> None:
    with cond:
        assert cond.wait_for(predicate, timeout), "condition not met in time"


# --- construction and the registry ----------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("max_transports", 0),
        ("max_workers", 0),
        ("pool_maxsize", True),
        ("idle_timeout", -1),
        ("cleanup_interval", None),
        ("health_check_interval", 0),
    ],
)
def test_bad_options_name_the_option(option: str, value: Any) -> None:
    with pytest.raises(ValueError, match=option):
        TransportManager(**{option: value})


def test_unknown_wire_lists_the_known_ones(mgr: TransportManager) -> None:
    with pytest.raises(ValueError, match=r"unknown transport type 'carrier-pigeon'.*sse"):
        mgr.create("carrier-pigeon", "http://127.0.0.1/")


def test_missing_wire_module_fails_only_that_wire(
    mgr: TransportManager, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(_WIRES, "gone", "aikit_transports.no_such_module:GoneTransport")
    with pytest.raises(NotSupportedError, match="gone transport is not available"):
        mgr.create("gone", "http://127.0.0.1/")
    assert fake(mgr).type is FakeType.FAKE


def test_register_transport_checks_its_target(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError):
        register_transport("x", "no-colon")
    with pytest.raises(ValueError):
        register_transport("x", dict)  # type: ignore[arg-type]
    monkeypatch.setattr("aikit_transports.transports.registry._WIRES", dict(_WIRES))
    register_transport("My_Wire", FakeWire)
    with TransportManager() as manager:
        assert isinstance(manager.create("my-wire", "fake://x"), FakeWire)


def test_wire_names_enums_and_classes_resolve(mgr: TransportManager) -> None:
    from aikit_transports.transports.sse import SSETransport

    for wire in ("sse", "SSE", TransportType.SSE, SSETransport):
        t = mgr.create(wire, "http://127.0.0.1:1/sse")
        assert isinstance(t, SSETransport)
    assert len(mgr) == 4


def test_transports_get_the_pool_scheduler_and_http_wires_one_session(
    mgr: TransportManager,
) -> None:
    import requests

    a = mgr.create("sse", "http://127.0.0.1:1/a")
    b = mgr.create("sse", "http://127.0.0.1:1/b")
    own = requests.Session()
    c = mgr.create("sse", "http://127.0.0.1:1/c", session=own)
    f = fake(mgr)
    assert a._scheduler is mgr._scheduler and f._scheduler is mgr._scheduler
    assert a._session is b._session is mgr._session  # type: ignore[attr-defined]
    assert c._session is own  # type: ignore[attr-defined]
    adapter = a._session.get_adapter("http://127.0.0.1/")  # type: ignore[attr-defined]
    assert adapter._pool_maxsize == mgr.pool_maxsize
    mgr.close_all()
    own.close()


# --- limits, reuse, lookup --------------------------------------------------------------------


def test_limit_raises_and_closed_transports_free_their_slot() -> None:
    with TransportManager(max_transports=2) as manager:
        a = fake(manager, "fake://a")
        fake(manager, "fake://b")
        with pytest.raises(
            TransportLimitError, match=r"holds 2 open transports \(max_transports=2\)"
        ):
            fake(manager, "fake://c")
        with pytest.raises(TransportLimitError):
            manager.get_or_create("fake", "fake://c")
        a.close()
        assert manager.get(a.id) is None
        c = fake(manager, "fake://c")
        assert manager.get(c.id) is c


def test_get_or_create_reuses_the_open_transport_with_the_same_key(mgr: TransportManager) -> None:
    a = mgr.get_or_create("fake", "fake://x", headers={"A": "1", "B": "2"}, timeout=3)
    # same options in another order, unhashable values included
    assert mgr.get_or_create("fake", "fake://x", timeout=3, headers={"B": "2", "A": "1"}) is a
    assert mgr.get_or_create(FakeWire, "fake://x", timeout=3, headers={"B": "2", "A": "1"}) is a
    assert mgr.get_or_create("fake", "fake://x", headers={"A": "1"}, timeout=3) is not a
    assert mgr.get_or_create("fake", "fake://y", headers={"A": "1", "B": "2"}, timeout=3) is not a
    assert mgr.create("fake", "fake://x", headers={"A": "1", "B": "2"}, timeout=3) is not a
    a.close()
    b = mgr.get_or_create("fake", "fake://x", headers={"A": "1", "B": "2"}, timeout=3)
    assert b is not a and b.state is TransportState.IDLE


def test_get_or_create_is_atomic_across_threads(mgr: TransportManager) -> None:
    got: list[BaseTransport] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(5)
        got.append(mgr.get_or_create("fake", "fake://shared", headers={"q": "1"}))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(5)
    assert len(got) == 8 and all(t is got[0] for t in got)
    assert len(mgr) == 1


def test_duplicate_ids_are_refused(mgr: TransportManager) -> None:
    fake(mgr, id="one")
    with pytest.raises(ValueError, match="already managed"):
        fake(mgr, id="one")


def test_get_find_and_summary(mgr: TransportManager) -> None:
    a = fake(mgr, "fake://a")
    b = fake(mgr, "fake://b")
    s = mgr.create("sse", "http://127.0.0.1:1/sse")
    a.connect(timeout=5)
    assert mgr.get(a.id) is a and mgr.get("nope") is None
    assert mgr.find() == [a, b, s]
    assert mgr.find(type="fake") == [a, b]
    assert mgr.find(type=TransportType.SSE) == [s] == mgr.find(type="sse")
    assert mgr.find(state="connected") == [a]
    assert mgr.find(type="fake", state=TransportState.IDLE) == [b]
    with pytest.raises(ValueError):
        mgr.find(state="sleepy")
    assert mgr.summary() == {
        "total": 3,
        "by_type": {"fake": 2, "sse": 1},
        "by_state": {"connected": 1, "idle": 2},
    }


# --- closing ----------------------------------------------------------------------------------


def test_close_by_id_uses_reason_manager(mgr: TransportManager) -> None:
    t = fake(mgr)
    t.connect(timeout=5)
    reasons: list[str] = []
    t.on("closed", reasons.append)
    assert mgr.close(t.id) is True
    assert mgr.close(t.id) is False
    assert reasons == ["manager"] and t.state is TransportState.CLOSED
    assert mgr.get(t.id) is None and len(mgr) == 0


def test_close_all_and_shutdown_leave_nothing_behind() -> None:
    manager = TransportManager(max_transports=50, max_workers=3)
    transports = [fake(manager, f"fake://{i}") for i in range(30)]
    for t in transports:
        t.connect(timeout=5)
    readers = [t._reader for t in transports]
    assert all(r is not None and r.is_alive() for r in readers)
    manager.close_all()
    assert len(manager) == 0 and manager.summary()["total"] == 0
    assert all(t.state is TransportState.CLOSED for t in transports)
    assert not any(r is not None and r.is_alive() for r in readers)
    again = fake(manager)  # close_all keeps the manager usable
    manager.shutdown()
    assert again.state is TransportState.CLOSED and manager.closed
    assert not manager._scheduler.thread_alive
    with pytest.raises(TransportClosedError, match="shut down"):
        fake(manager)
    manager.shutdown()  # idempotent
    assert not [th for th in threading.enumerate() if th.name.startswith("aikit-manager")]


def test_close_from_inside_a_callback(mgr: TransportManager) -> None:
    t = fake(mgr)
    closed = threading.Event()
    t.on("event", lambda event: mgr.close(t.id))
    t.on("closed", lambda reason: closed.set())
    t.connect(timeout=5)
    t.push("bye")
    assert closed.wait(5)
    assert mgr.get(t.id) is None


def test_a_transport_that_ends_leaves_the_manager(mgr: TransportManager) -> None:
    t = fake(mgr)
    events = t.iter_events(timeout=5)
    t.push("one", None)
    assert [e.data for e in events] == ["one"]
    assert t.state is TransportState.CLOSED and mgr.get(t.id) is None


# --- event forwarding -------------------------------------------------------------------------


def test_events_of_every_transport_are_forwarded_with_the_transport(
    mgr: TransportManager,
) -> None:
    seen, cond, listener = collector()
    mgr.on("event", listener)
    connected, ccond, on_connected = collector()
    mgr.on("connected", on_connected)
    a, b = fake(mgr, "fake://a"), fake(mgr, "fake://b")
    a.connect(timeout=5)
    b.connect(timeout=5)
    wait_for(ccond, lambda: len(connected) == 2)
    assert {args[0] for args in connected} == {a, b}
    a.push("a1", "a2")
    b.push("b1")
    wait_for(cond, lambda: len(seen) == 3)
    assert [(t, e.data) for t, e in seen if t is a] == [(a, "a1"), (a, "a2")]
    assert [(t, e.data) for t, e in seen if t is b] == [(b, "b1")]


def test_closed_reconnecting_and_error_are_forwarded(mgr: TransportManager) -> None:
    closed, cond, on_closed = collector()
    reconnecting, rcond, on_reconnecting = collector()
    errors, econd, on_error = collector()
    mgr.on("closed", on_closed)
    mgr.on("reconnecting", on_reconnecting)
    mgr.on("error", on_error)
    t = fake(mgr, fail_with=ConnectError("refused", retryable=True), reconnect=FAST)
    with pytest.raises(ConnectError):
        t.connect(timeout=0.3)
    wait_for(rcond, lambda: len(reconnecting) >= 1)
    transport, attempt, _delay, error = reconnecting[0]
    assert transport is t and attempt == 1 and isinstance(error, ConnectError)
    wait_for(econd, lambda: len(errors) >= 1)
    assert errors[0][0] is t and isinstance(errors[0][1], ConnectError)
    t.close()
    wait_for(cond, lambda: len(closed) == 1)
    assert closed == [(t, "user")]


def test_closed_listener_sees_the_transport_already_gone(mgr: TransportManager) -> None:
    found: list[Optional[BaseTransport]] = []
    mgr.on("closed", lambda t, reason: found.append(mgr.get(t.id)))
    t = fake(mgr)
    t.close()
    assert found == [None]


def test_without_manager_event_listeners_connect_then_iterate_misses_nothing(
    mgr: TransportManager,
) -> None:
    mgr.on("connected", lambda t: None)  # other forwarded names do not make a consumer
    t = fake(mgr)
    t.connect(timeout=5)
    t.push("early-1", "early-2")
    it = t.iter_events(timeout=5)
    t.push("late", None)
    assert [e.data for e in it] == ["early-1", "early-2", "late"]


def test_event_forwarder_follows_the_manager_listeners(mgr: TransportManager) -> None:
    t = fake(mgr)
    t.connect(timeout=5)
    assert t._listener_buf is None  # nobody listens: no forwarder, no consumer
    seen, cond, listener = collector()
    unsubscribe = mgr.on("event", listener)  # added to the existing transport
    assert t._listener_buf is not None
    t.push("one")
    wait_for(cond, lambda: len(seen) == 1)
    second: list[Any] = []
    mgr.on("event", lambda tr, e: second.append(e.data))
    t.push("two")
    wait_for(cond, lambda: len(seen) == 2)
    unsubscribe()
    assert t._listener_buf is not None  # one manager listener remains
    mgr.off("event")
    assert t._listener_buf is None
    assert second == ["two"]


def test_a_raising_manager_listener_is_reported_as_the_transports_error(
    mgr: TransportManager,
) -> None:
    errors, cond, on_error = collector()
    mgr.on("error", on_error)
    after: list[str] = []

    def bad(t: BaseTransport, event: Event) -> None:
        raise RuntimeError("listener bug")

    mgr.on("event", bad)
    mgr.on("event", lambda t, e: after.append(e.data))
    t = fake(mgr)
    t.connect(timeout=5)
    t.push("x", "y")
    wait_for(cond, lambda: len(errors) == 2)
    assert all(tr is t and "listener bug" in str(err) for tr, err in errors)
    assert after == ["x", "y"]  # the other listeners still ran
    assert t.state is TransportState.CONNECTED


# --- idle cleanup -----------------------------------------------------------------------------


def test_idle_transports_are_closed_with_reason_idle() -> None:
    with TransportManager(idle_timeout=0.3, cleanup_interval=0.05) as manager:
        closed, cond, on_closed = collector()
        manager.on("closed", on_closed)
        idle = fake(manager, "fake://idle")
        busy = fake(manager, "fake://busy")
        never = fake(manager, "fake://never-connected")
        idle.connect(timeout=5)
        busy.connect(timeout=5)
        stop = threading.Event()

        def keep_busy() -> None:  # traffic far more often than idle_timeout
            while not stop.wait(0.02):
                busy.push("tick")

        feeder = threading.Thread(target=keep_busy)
        feeder.start()
        try:
            wait_for(cond, lambda: len(closed) >= 2)
        finally:
            stop.set()
            feeder.join(5)
        assert sorted((t.url, reason) for t, reason in closed) == [
            ("fake://idle", "idle"),
            ("fake://never-connected", "idle"),
        ]
        assert busy.state is TransportState.CONNECTED and manager.get(busy.id) is busy
        assert never.state is TransportState.CLOSED and idle.state is TransportState.CLOSED


def test_sent_messages_count_as_activity() -> None:
    with TransportManager(idle_timeout=0.3, cleanup_interval=0.05) as manager:
        closed, cond, on_closed = collector()
        manager.on("closed", on_closed)
        sender = fake(manager, "fake://sender")
        quiet = fake(manager, "fake://quiet")
        sender.connect(timeout=5)
        quiet.connect(timeout=5)
        stop = threading.Event()

        def keep_sending() -> None:
            while not stop.wait(0.02):
                sender.send("ping")

        feeder = threading.Thread(target=keep_sending)
        feeder.start()
        try:
            wait_for(cond, lambda: len(closed) >= 1)
        finally:
            stop.set()
            feeder.join(5)
        assert closed == [(quiet, "idle")]
        assert sender.state is TransportState.CONNECTED


def test_idle_timeout_none_runs_no_cleanup() -> None:
    with TransportManager(idle_timeout=None, health_check_interval=None) as manager:
        fake(manager)
        assert manager._timers == []


# --- health -----------------------------------------------------------------------------------


def test_health_check_reports_every_transport(mgr: TransportManager) -> None:
    a = fake(mgr)
    b = fake(mgr)
    a.connect(timeout=5)
    report = mgr.health_check()
    assert set(report) == {a.id, b.id}
    assert report[a.id].status == "healthy" and report[a.id].state is TransportState.CONNECTED
    assert report[b.id].status == "degraded" and report[b.id].reason == "not connected yet"


def test_health_check_flags_a_reconnect_loop(mgr: TransportManager) -> None:
    t = fake(mgr, fail_with=ConnectError("refused", retryable=True), reconnect=FAST)
    reconnecting, cond, listener = collector()
    t.on("reconnecting", listener)
    with pytest.raises(ConnectError):
        t.connect(timeout=0.01)
    wait_for(cond, lambda: len(reconnecting) >= 4)
    health = mgr.health_check()[t.id]
    assert health.status == "unhealthy"
    assert health.reason is not None and "failed attempts in a row" in health.reason


def test_health_check_flags_a_stalled_transport(mgr: TransportManager) -> None:
    t = fake(mgr, idle_timeout=0.05)
    t.connect(timeout=5)
    stalled = threading.Event()

    def unhealthy() -> bool:
        h = mgr.health_check()[t.id]
        if h.status == "unhealthy":
            stalled.set()
            return True
        return False

    while not stalled.wait(0.01):
        unhealthy()
    health = mgr.health_check()[t.id]
    assert health.state is TransportState.CONNECTED
    assert health.reason is not None and health.reason.startswith("stalled: no traffic for")
    assert t.health().status == "degraded"  # the transport itself only calls it degraded


def test_health_check_reports_a_failed_transport_once(mgr: TransportManager) -> None:
    t = fake(mgr, fail_with=HTTPStatusError("HTTP 403 Forbidden", status_code=403))
    with pytest.raises(HTTPStatusError):
        t.connect(timeout=5)
    assert mgr.get(t.id) is None  # a failed transport left the manager
    first = mgr.health_check()
    assert first[t.id].status == "unhealthy" and first[t.id].state is TransportState.ERROR
    assert first[t.id].reason == "HTTP 403 Forbidden"
    assert t.id not in mgr.health_check()


def test_periodic_health_check_emits_unhealthy_once() -> None:
    with TransportManager(health_check_interval=0.02) as manager:
        seen, cond, listener = collector()
        manager.on("unhealthy", listener)
        t = fake(manager, idle_timeout=0.02)
        t.connect(timeout=5)
        wait_for(cond, lambda: len(seen) == 1)
        transport, health = seen[0]
        assert transport is t and isinstance(health, TransportHealth)
        assert health.status == "unhealthy" and "stalled" in (health.reason or "")
        t.push("alive")  # healthy again, then stalled again: a second report
        wait_for(cond, lambda: len(seen) == 2)
        assert seen[1][0] is t


# --- metrics and threads ----------------------------------------------------------------------


def test_metrics_sum_every_transport_including_closed_ones(mgr: TransportManager) -> None:
    a, b = fake(mgr, "fake://a"), fake(mgr, "fake://b")
    ia, ib = a.iter_events(timeout=5), b.iter_events(timeout=5)
    a.push("1", "2", "3")
    b.push("4")
    assert [next(ia).data for _ in range(3)] == ["1", "2", "3"] and next(ib).data == "4"
    a.send("x")
    total = mgr.metrics()
    assert total.messages_received == 4 and total.messages_sent == 1
    assert total.last_message_at is not None
    a.close()
    ia.close()
    assert mgr.metrics().messages_received == 4  # cumulative
    b.push("5")
    assert next(ib).data == "5"
    assert mgr.metrics().messages_received == 5
    ib.close()


def test_metrics_aggregate_times_latency_and_ping(
    stream_server: StreamServer, mgr: TransportManager
) -> None:
    before = time.time()
    transports = [
        mgr.create("sse", stream_server.url(f"/sse?count=3&end=hold&n={i}")) for i in range(2)
    ]
    for t in transports:
        with t.iter_events(timeout=10) as events:  # connects; deliveries give latency samples
            assert [next(events).data for _ in range(3)] == ["event 1", "event 2", "event 3"]
    after = time.time()
    total = mgr.metrics()
    each = [t.metrics for t in transports]
    # wall-clock times, not monotonic ones (conversions differ by microseconds: approx)
    assert all(m.connected_at is not None and before - 1 < m.connected_at < after + 1 for m in each)
    first = min(m.connected_at or 0.0 for m in each)
    assert total.connected_at == pytest.approx(first, abs=0.5)
    assert total.uptime > 0.0
    assert total.last_message_at is not None and before - 1 < total.last_message_at < after + 1
    assert set(total.latency) == {"avg", "p50", "p95", "p99"}
    assert total.ping_rtt_ms is None  # no WebSocket among them
    fake_ws = [fake(mgr, f"fake://ws{i}") for i in range(2)]
    fake_ws[0]._m.ping_rtt_ms, fake_ws[1]._m.ping_rtt_ms = 10.0, 30.0
    assert mgr.metrics().ping_rtt_ms == 20.0
    for t in transports:
        t.close()
    assert mgr.metrics().connected_at is None and mgr.metrics().uptime == 0.0  # none connected


def test_periodic_work_runs_on_the_pool_without_a_thread_per_transport() -> None:
    before = threading.active_count()
    with TransportManager(
        max_transports=60, max_workers=2, cleanup_interval=0.01, health_check_interval=0.01
    ) as manager:
        ran = threading.Event()
        names: set[str] = set()
        original = manager._periodic_health

        def spy() -> None:
            names.add(threading.current_thread().name)
            original()
            ran.set()

        manager._periodic_health = spy  # type: ignore[method-assign]
        transports = [fake(manager, f"fake://{i}") for i in range(50)]  # timers start here
        for t in transports:
            t.connect(timeout=5)
        assert ran.wait(5)
        # 50 readers + at most 2 pool workers + 1 timer thread
        assert threading.active_count() - before <= 50 + 2 + 1
        assert names and all(n.startswith("aikit-manager") for n in names)


# --- real wires -------------------------------------------------------------------------------


def test_sse_through_the_manager(stream_server: StreamServer, mgr: TransportManager) -> None:
    seen, cond, listener = collector()
    mgr.on("event", listener)
    t = mgr.get_or_create("sse", stream_server.url("/sse?count=5&end=sentinel"))
    closed = threading.Event()
    t.on("closed", lambda reason: closed.set())
    t.connect(timeout=5)
    wait_for(cond, lambda: len(seen) == 5)
    assert [e.data for _, e in seen] == [f"event {i}" for i in range(1, 6)]
    assert all(tr is t for tr, _ in seen)
    assert closed.wait(5)
    assert mgr.get(t.id) is None and mgr.metrics().messages_received == 5


def test_http_wires_of_one_manager_share_connections(
    stream_server: StreamServer, mgr: TransportManager
) -> None:
    send_url = stream_server.url("/send")
    a = mgr.create("sse", stream_server.url("/sse"), send_url=send_url)
    b = mgr.create("sse", stream_server.url("/sse?other=1"), send_url=send_url)
    for i in range(3):
        a.send({"from": "a", "n": i})
        b.send({"from": "b", "n": i})
    assert [r.json()["from"] for r in stream_server.requests] == ["a", "b"] * 3
    session = mgr._session
    assert session is not None
    pools = session.get_adapter(send_url).poolmanager.pools
    # six POSTs of two transports over one kept-alive connection
    assert [pools[key].num_connections for key in pools.keys()] == [1]  # noqa: SIM118


@pytest.mark.slow
def test_500_websocket_transports_run_on_a_few_shared_threads(shared_io: None) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from aikit_transports.testing.ws import WebSocketServer

    n, workers = 500, 4
    with WebSocketServer() as server:
        baseline = threading.active_count()  # the test's and the server's threads
        with TransportManager(max_transports=n, max_workers=workers) as manager:
            transports = [
                manager.create(
                    "websocket", server.url("/silent"), heartbeat_interval=0.5, heartbeat_timeout=10
                )
                for _ in range(n)
            ]
            with ThreadPoolExecutor(16) as connector:  # connect in parallel, bounded in time
                list(connector.map(lambda t: t.connect(timeout=30), transports))
            server.wait_for(lambda: server.connections == n, timeout=30)

            def all_have(rtts: Callable[[BaseTransport], bool]) -> bool:
                return all(rtts(t) for t in transports)

            _wait(lambda: all_have(lambda t: t.metrics.ping_rtt_ms is not None), 30)
            first = {t.id: t.metrics.ping_rtt_ms for t in transports}
            # every transport keeps pinging: each one measures a new round trip
            _wait(lambda: all_have(lambda t: t.metrics.ping_rtt_ms != first[t.id]), 30)
            extra = threading.active_count() - baseline
            shared = io_loop.IO_THREADS + io_loop.WORKERS
            assert extra <= shared + workers + 1, f"{extra} threads for {n} transports"
            pool_threads = [
                th for th in threading.enumerate() if th.name.startswith("aikit-manager_")
            ]
            assert len(pool_threads) <= workers
            total = manager.metrics()
            assert total.errors == 0 and total.reconnects == 0
            assert manager.summary() == {
                "total": n,
                "by_type": {"websocket": n},
                "by_state": {"connected": n},
            }
        assert manager.closed and len(manager) == 0
        assert all(t.state is TransportState.CLOSED for t in transports)
        # the shared threads end on their own once the last transport is gone, just after
        _wait(lambda: threading.active_count() <= baseline, 5)


def _wait(predicate: Callable[[], bool], timeout: float) -> None:
    """Poll a condition that no event signals (metrics of 500 transports); fail after timeout."""
    stop = threading.Event()
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "condition not met in time"
        stop.wait(0.05)


def test_shutdown_from_inside_a_transport_callback_does_not_wait_for_itself() -> None:
    manager = TransportManager()
    t = fake(manager)
    others = [fake(manager, f"fake://{i}") for i in range(3)]
    done = threading.Event()
    reasons: list[str] = []

    def on_event(event: Event) -> None:
        manager.shutdown(timeout=5)
        done.set()

    t.on("event", on_event)
    t.on("closed", reasons.append)
    for other in others:
        other.connect(timeout=5)
    t.connect(timeout=5)
    t.push("stop everything")
    assert done.wait(5)
    t.close()  # joins the reader that ran the callback
    assert reasons == ["manager"] and manager.closed
    assert all(o.state is TransportState.CLOSED for o in others)


def test_more_streams_than_pool_maxsize_close_without_pool_full_warnings(
    stream_server: StreamServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING)
    with TransportManager(pool_maxsize=2) as mgr:
        transports = [
            mgr.create("sse", stream_server.url(f"/sse?count=1&end=hold&n={i}")) for i in range(6)
        ]
        for t in transports:
            assert len([e for _, e in zip(range(1), t.iter_events(timeout=10))]) == 1
    assert "Connection pool is full" not in caplog.text
