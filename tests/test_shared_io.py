"""The shared I/O threads (issue 18): a few selector threads and a small worker pool carry every
open stream, end to end against real servers on 127.0.0.1.

What they must keep: a transport's callbacks one at a time and in order, never on an I/O
thread; a slow listener holding up its own transport only; ``block`` backpressure taking that
one socket out of the selector; a bounded number of threads whatever the number of streams;
nothing left once the transports are closed (the leak guard checks threads and sockets).
"""

from __future__ import annotations

import threading
from typing import Any, Callable, Dict, List

import pytest
from faultkit import forever_route, quiet_stream

from aikit_transports import (
    BufferConfig,
    Event,
    HTTPStreamTransport,
    ReconnectPolicy,
    SSETransport,
)
from aikit_transports.testing import StreamServer
from aikit_transports.transports import io_loop
from aikit_transports.transports.base import BaseTransport

pytestmark = pytest.mark.usefixtures("shared_io")

FAST = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=5)


def make(wire: str, servers: Dict[str, Any], count: int, **options: Any) -> BaseTransport:
    options.setdefault("reconnect", FAST)
    return quiet_stream(wire, servers, count, **options)


def library_threads() -> List[str]:
    """The client library's threads (the test servers' are named ``aikit-testing-*``)."""
    return [
        t.name
        for t in threading.enumerate()
        if t.name.startswith("aikit") and not t.name.startswith("aikit-testing")
    ]


@pytest.mark.parametrize("wire", ["sse", "websocket", "http-stream"])
def test_callbacks_run_in_order_on_workers_never_on_an_io_thread(
    wire: str, servers: Dict[str, Any]
) -> None:
    seen: List[tuple[str, str]] = []
    done = threading.Event()
    t = make(wire, servers, count=30)

    def note(name: str) -> Callable[..., None]:
        def callback(*args: Any) -> None:
            seen.append((name, threading.current_thread().name))
            if name == "event" and sum(1 for n, _ in seen if n == "event") == 30:
                done.set()

        return callback

    for name in ("connecting", "connected", "event", "closed"):
        t.on(name, note(name))  # type: ignore[call-overload]
    t.connect()
    assert done.wait(10)
    t.close()
    names = [name for name, _ in seen]
    assert names == ["connecting", "connected"] + ["event"] * 30 + ["closed"]
    threads = {thread for name, thread in seen if name != "closed"}
    assert all(thread.startswith("aikit-worker-") for thread in threads)


def test_a_slow_listener_holds_up_only_its_own_transport(servers: Dict[str, Any]) -> None:
    release = threading.Event()
    slow_seen: List[str] = []
    fast_seen: List[str] = []
    all_fast = threading.Event()
    slow = make("sse", servers, count=20)
    fast = make("websocket", servers, count=20)

    def on_slow(event: Event) -> None:
        release.wait(10)
        slow_seen.append(event.data)

    def on_fast(event: Event) -> None:
        fast_seen.append(event.data)
        if len(fast_seen) == 20:
            all_fast.set()

    slow.on("event", on_slow)
    fast.on("event", on_fast)
    try:
        slow.connect()
        fast.connect()
        assert all_fast.wait(10)  # while the other transport's listener is stuck
        assert slow_seen == []
        release.set()
    finally:
        release.set()
        slow.close()
        fast.close()
    assert len(fast_seen) == 20


@pytest.mark.parametrize("wire", ["sse", "websocket"])
def test_many_streams_run_on_a_bounded_number_of_threads(
    wire: str, servers: Dict[str, Any]
) -> None:
    count = 60
    transports = [make(wire, servers, count=3) for _ in range(count)]
    got: Dict[str, int] = {}
    lock = threading.Lock()
    every = threading.Event()

    def counter(t: BaseTransport) -> Callable[[Event], None]:
        def on_event(event: Event) -> None:
            with lock:
                got[t.id] = got.get(t.id, 0) + 1
                if sum(got.values()) == 3 * count:
                    every.set()

        return on_event

    try:
        for t in transports:
            t.on("event", counter(t))
            t.connect()
        assert every.wait(20)
        threads = library_threads()
        assert len(threads) <= io_loop.IO_THREADS + io_loop.WORKERS, threads
        assert all(n.startswith(("aikit-io-", "aikit-worker-")) for n in threads)
    finally:
        for t in transports:
            t.close()
    assert set(got.values()) == {3}


def test_a_full_block_buffer_rests_that_socket_and_loses_nothing(
    wait_until: Callable[..., Any],
) -> None:
    with StreamServer() as server:
        server.route("/forever", forever_route("sse"))
        other_events = threading.Event()
        t = SSETransport(
            server.url("/forever"),
            buffer=BufferConfig(max_size=50, strategy="block"),
            reconnect=FAST,
            idle_timeout=2.0,
        )
        other = SSETransport(server.url("/sse?count=5&end=hold"), reconnect=FAST)
        other.on("event", lambda event: other_events.set() if event.id == "5" else None)
        try:
            events = t.iter_events(timeout=10)
            first = next(events)
            io = t._io
            assert io is not None
            # the reader fills the buffer, then stops reading that socket
            wait_until(lambda: io.holding() and not io.waiting(), message="socket rests")
            other.connect()
            assert other_events.wait(10)  # the I/O threads serve the others meanwhile
            numbers = [int(first.id or 0)] + [int(next(events).id or 0) for _ in range(2000)]
            assert numbers == list(range(numbers[0], numbers[0] + 2001))  # none lost, in order
            assert t.metrics.messages_dropped == 0
        finally:
            t.close()
            other.close()


def test_a_long_poll_reads_on_a_thread_of_its_own(stream_server: StreamServer) -> None:
    url = stream_server.url("/poll?count=3")
    t = HTTPStreamTransport(url, mode="long-poll", poll_interval=0.01, reconnect=FAST)
    try:
        events = t.iter_events(timeout=10)
        assert next(events) is not None
        assert f"aikit-http-stream-{t.id}" in library_threads()
    finally:
        t.close()


def test_the_io_loop_runs_calls_and_timers_and_ends_when_idle() -> None:
    loop = io_loop.IOLoop("aikit-io-test")
    ran: List[str] = []
    both = threading.Event()

    def later() -> None:
        ran.append("timer")
        both.set()

    loop.call_soon(lambda: ran.append("soon"))
    loop.call_later(0.01, later)
    assert both.wait(5)
    assert ran == ["soon", "timer"]
    thread = loop._thread
    if thread is not None:
        thread.join(5)
    assert not loop.thread_alive  # nothing left to do: the thread ended


def test_workers_end_once_no_transport_uses_them() -> None:
    workers = io_loop.Workers(max_workers=2, name="aikit-worker-test")
    workers.hold()
    done = threading.Event()
    workers.submit(done.set)
    assert done.wait(5)
    assert any(n.startswith("aikit-worker-test") for n in library_threads())
    workers.release()  # the leak guard checks that the worker ends now


def test_by_default_a_lone_transport_reads_on_its_own_thread_and_the_others_share(
    servers: Dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AIKIT_TRANSPORTS_IO", "auto")
    lone = make("sse", servers, count=1)
    joining = [make(wire, servers, count=1) for wire in ("sse", "websocket", "http-stream")]
    try:
        lone.connect()
        assert lone._io is None and f"aikit-sse-{lone.id}" in library_threads()
        for t in joining:
            t.connect()
            assert t._io is not None
    finally:
        for t in [lone, *joining]:
            t.close()
    again = make("websocket", servers, count=1)  # alone again
    try:
        again.connect()
        assert again._io is None
    finally:
        again.close()
