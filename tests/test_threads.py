"""Threads on every wire: callbacks that raise, block, pause or close; close() from anywhere;
1,000 open/close cycles.

Nothing may deadlock, kill the reader, or leave a thread, socket or file descriptor behind (the
leak guard in conftest checks the last two after every test), and memory must not grow with
the number of transports opened and closed.
"""

from __future__ import annotations

import gc
import os
import threading
import time
import tracemalloc
import weakref
from typing import Any, Callable, Dict, List

import pytest
from faultkit import quiet_stream

from aikit_transports import (
    BufferConfig,
    Event,
    HTTPStreamTransport,
    ReconnectPolicy,
    SSETransport,
    TransportClosedError,
    TransportError,
    TransportState,
    WebSocketTransport,
)
from aikit_transports.buffer import MessageBuffer
from aikit_transports.transports.base import BaseTransport

WIRES = ("sse", "websocket", "http-stream")
FAST = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=5)


def make(wire: str, servers: Dict[str, Any], count: int = 5, **options: Any) -> BaseTransport:
    """A stream of ``count`` events that then stays open, silent (reconnecting fast)."""
    options.setdefault("reconnect", FAST)
    return quiet_stream(wire, servers, count, **options)


def dropping(wire: str, servers: Dict[str, Any]) -> BaseTransport:
    """A stream that drops its connection after every 3 events (so it reconnects)."""
    if wire == "websocket":
        url = servers["ws"].url("/stream?count=12&drop_every=3&session=threads")
        return WebSocketTransport(url, heartbeat_interval=None, reconnect=FAST)
    endpoint = "sse?end=sentinel" if wire == "sse" else "ndjson?end=204"
    url = servers["http"].url(f"/{endpoint}&count=12&drop_every=3")
    cls = SSETransport if wire == "sse" else HTTPStreamTransport
    return cls(url, reconnect=FAST)


def run_in_thread(fn: Callable[[], Any], timeout: float = 15.0) -> None:
    """Run ``fn`` in a thread and fail if it has not returned within ``timeout`` (a deadlock)."""
    failures: List[BaseException] = []

    def target() -> None:
        try:
            fn()
        except BaseException as exc:  # reported below
            failures.append(exc)

    thread = threading.Thread(target=target, name="test-closer")
    thread.start()
    thread.join(timeout)
    assert not thread.is_alive(), f"{fn} did not return within {timeout} s: deadlock"
    if failures:
        raise failures[0]


# -- callbacks that raise -----------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
def test_listeners_that_raise_are_reported_and_the_stream_goes_on(
    wire: str, servers: Dict[str, Any]
) -> None:
    t = make(wire, servers, count=20)
    errors: List[TransportError] = []
    t.on("error", errors.append)
    t.on("connected", lambda: 1 / 0)
    t.on("event", lambda event: [][0])
    events = t.iter_events(timeout=10)
    try:
        received = [next(events) for _ in range(20)]
        # listeners run on the transport's own queue, maybe behind the iterator: wait for them
        _settled(lambda: len(errors) >= 21)
        assert t.is_connected() and t._reader is not None and t._reader.is_alive()
    finally:
        t.close()
    assert len(received) == 20
    causes = [type(e.__cause__) for e in errors]
    assert causes.count(ZeroDivisionError) == 1 and causes.count(IndexError) == 20
    assert "a listener of 'event' raised IndexError" in [e.message for e in errors][-1]


# -- callbacks that block -----------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
def test_close_returns_while_a_listener_blocks(wire: str, servers: Dict[str, Any]) -> None:
    t = make(wire, servers)
    entered, release = threading.Event(), threading.Event()
    closed: List[str] = []
    t.on("closed", closed.append)
    t.on("event", lambda event: (entered.set(), release.wait(30)))
    try:
        t.connect()
        assert entered.wait(10)
        # The reader is stuck in the listener (holding the dispatch lock): close() must not
        # wait for it beyond its timeout, nor deadlock.
        run_in_thread(lambda: t.close(timeout=0.5))
        assert t.state is TransportState.CLOSED
        assert closed == []  # emitted by the reader once the listener returns
    finally:
        release.set()
    assert t._reader is not None
    t._reader.join(10)
    assert not t._reader.is_alive()
    assert closed == ["user"]


def test_pause_from_a_listener_stops_delivery_mid_batch(
    servers: Dict[str, Any], wait_until: Callable[..., Any]
) -> None:
    # Every event of this stream comes in one read: pause() from the listener must hold back
    # the rest of that batch, not only the next read.
    t = SSETransport(servers["http"].url("/sse?count=500&end=hold"), reconnect=FAST)
    seen: List[str] = []
    paused = threading.Event()

    def on_event(event: Event) -> None:
        seen.append(event.id or "")
        if len(seen) == 10:
            t.pause()
            paused.set()

    t.on("event", on_event)
    try:
        t.connect()
        assert paused.wait(10)
        wait_until(lambda: t.metrics.messages_received == 500, 10)
        assert len(seen) == 10
        t.resume()
        wait_until(lambda: len(seen) == 500, 10)
    finally:
        t.close()
    assert seen == [str(i) for i in range(1, 501)]


@pytest.mark.parametrize("strategy", ["drop-newest", "drop-oldest"])
def test_a_paused_listener_with_a_drop_strategy_counts_each_drop_once(
    servers: Dict[str, Any], strategy: str, wait_until: Callable[..., Any]
) -> None:
    t = SSETransport(
        servers["http"].url("/sse?count=300&end=hold"),
        buffer=BufferConfig(max_size=50, strategy=strategy),
        reconnect=FAST,
    )
    seen: List[Event] = []
    t.on("event", seen.append)
    t.pause()
    try:
        t.connect()
        wait_until(lambda: t.metrics.messages_received == 300, 10)
        m = t.metrics
        assert (m.buffer_size, m.messages_dropped) == (50, 250)  # 300 in, 50 kept
        t.resume()
        wait_until(lambda: len(seen) == 50, 10)
    finally:
        t.close()
    first = 1 if strategy == "drop-newest" else 251
    assert [e.id for e in seen] == [str(i) for i in range(first, first + 50)]


# -- close() from inside a callback, or from another thread -------------------------------------


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("callback", ["event", "connected", "reconnecting", "closed"])
def test_close_from_inside_a_callback(wire: str, callback: str, servers: Dict[str, Any]) -> None:
    t = dropping(wire, servers) if callback == "reconnecting" else make(wire, servers)
    closed: List[str] = []
    called = threading.Event()

    def close_now(*args: Any) -> None:
        called.set()
        t.close()

    t.on(callback, close_now)
    t.on("closed", closed.append)
    try:
        if callback == "closed":
            t.connect()
            run_in_thread(t.close)
        else:
            run_in_thread(lambda: _iterate_until_closed(t))
        assert called.wait(10)
    finally:
        run_in_thread(t.close)
    assert t._reader is not None
    t._reader.join(10)
    assert not t._reader.is_alive()
    assert t.state is TransportState.CLOSED
    assert closed == ["user"]


def _iterate_until_closed(t: BaseTransport) -> None:
    try:
        for _ in t.iter_events(timeout=10):
            pass
    except TransportClosedError:
        pass  # closed from the ``connected`` callback before connect() returned


@pytest.mark.parametrize("wire", WIRES)
def test_close_from_another_thread_ends_a_blocked_iterator(
    wire: str, servers: Dict[str, Any]
) -> None:
    t = make(wire, servers, count=1)
    events = t.iter_events()  # no timeout: only close() can end the wait
    try:
        assert next(events) is not None
        closer = threading.Timer(0.05, t.close)  # close while next() below waits
        closer.start()
        try:
            run_in_thread(lambda: list(events))
        finally:
            closer.join(10)
    finally:
        t.close()
    assert t.state is TransportState.CLOSED


# -- 1,000 open/close cycles --------------------------------------------------------------------


def _fd_count() -> int:
    return len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else 0


@pytest.mark.slow
@pytest.mark.parametrize("wire", WIRES)
def test_1000_open_close_cycles_leave_nothing_behind(wire: str, servers: Dict[str, Any]) -> None:
    alive: weakref.WeakSet[BaseTransport] = weakref.WeakSet()

    def cycle() -> None:
        t = make(wire, servers, count=1)
        alive.add(t)
        events = t.iter_events(timeout=10)
        assert next(events).data is not None
        t.close()

    def settle() -> None:
        servers["http"]._requests.clear()
        servers["ws"].requests.clear()
        servers["ws"].closes.clear()
        gc.collect()

    for _ in range(100):  # warm up: pools, caches and lazily created helpers exist by now
        cycle()
    tracemalloc.start()
    try:
        settle()
        threads, fds, memory = (
            threading.active_count(),
            _fd_count(),
            tracemalloc.get_traced_memory()[0],
        )
        for _ in range(900):
            cycle()
        settle()
        growth = tracemalloc.get_traced_memory()[0] - memory
    finally:
        tracemalloc.stop()
    print(f"\nCYCLES {wire}: 1000 open/close, memory growth over the last 900: {growth} bytes")
    # The last cycle's server-side handler thread and socket end on their own, just after
    # close() returned, and so does the worker that ran the transport's last step (it drops
    # its reference as that step returns): give them a bounded moment, as the leak guard does.
    _settled(lambda: gc.collect() >= 0 and len(alive) == 0)
    assert len(alive) == 0  # every transport was freed
    _settled(lambda: threading.active_count() <= threads and _fd_count() <= fds)
    # no growth (the baseline may itself have caught a server thread that was ending)
    assert threading.active_count() <= threads
    assert _fd_count() <= fds
    assert growth < 512 * 1024


def _settled(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    """Wait until ``condition()`` holds (or ``timeout`` passes: the caller's asserts then fail)."""
    pause = threading.Event()
    deadline = time.monotonic() + timeout
    while not condition() and time.monotonic() < deadline:
        pause.wait(0.01)


def test_an_interrupt_just_before_a_producer_waits_is_not_lost() -> None:
    # resume() interrupts the reader's wait for room; if it came just before the reader began
    # to wait, the wait used to start afresh and last until close(): listeners starved.
    buf: MessageBuffer[int] = MessageBuffer(BufferConfig(max_size=2, strategy="block"))
    buf.put_many([1, 2])
    buf.interrupt_put()  # nobody waits yet
    result: List[int] = []
    run_in_thread(lambda: result.append(buf.put_many([3])))
    assert result == [0]  # returned at once with nothing stored
    result.clear()
    run_in_thread(lambda: result.append(buf.put_many([3], timeout=0.05)))
    assert result == [0]  # the interrupt was used up: this one waited for its timeout
