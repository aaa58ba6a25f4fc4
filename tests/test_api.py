"""The API a newcomer expects: event names checked, the decorator form, ``wait()``, and one rule
for a transport that has ended (issue 17). Behaviour against the local server on 127.0.0.1."""

from __future__ import annotations

import threading
from typing import Any, Callable

import pytest

from aikit_transports import (
    Event,
    EventEmitter,
    HTTPStatusError,
    ReconnectPolicy,
    SSETransport,
    TransportClosedError,
    TransportManager,
)
from aikit_transports.emitter import check_event_name
from aikit_transports.events import TRANSPORT_EVENTS
from aikit_transports.testing import StreamServer

NO_RETRY = ReconnectPolicy(max_attempts=0)


# --- names ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "guess"),
    [
        ("message", "event"),
        ("mesage", "event"),
        ("evnt", "event"),
        ("open", "connected"),
        ("connect", "connected"),
        ("close", "closed"),
        ("disconnect", "closed"),
        ("Event", "event"),
        ("eror", "error"),
    ],
)
def test_an_unknown_transport_event_is_refused_with_the_closest_name(name: str, guess: str) -> None:
    t = SSETransport("http://127.0.0.1:9/sse")
    for register in (t.on, t.once):
        with pytest.raises(ValueError, match=f"did you mean '{guess}'") as info:
            register(name, lambda *args: None)  # type: ignore[call-overload]
        for known in TRANSPORT_EVENTS:  # the message lists every valid name
            assert repr(known) in str(info.value)
    with pytest.raises(ValueError, match=f"did you mean '{guess}'"):
        t.off(name)  # type: ignore[arg-type]
    t.close()


def test_a_name_nothing_resembles_gets_the_list_without_a_guess() -> None:
    with pytest.raises(ValueError) as info:
        check_event_name("zzz", TRANSPORT_EVENTS)
    assert "did you mean" not in str(info.value) and "'drain'" in str(info.value)
    with pytest.raises(TypeError, match="string"):
        check_event_name(3, TRANSPORT_EVENTS)  # type: ignore[arg-type]


def test_the_manager_refuses_unknown_names_and_knows_its_own() -> None:
    with TransportManager() as mgr:
        with pytest.raises(ValueError, match="did you mean 'event'"):
            mgr.on("evnt", lambda t, e: None)  # type: ignore[call-overload]
        with pytest.raises(ValueError, match="'unhealthy'"):
            mgr.off("unhealty")  # type: ignore[arg-type]
        unsubscribe = mgr.on("unhealthy", lambda t, health: None)
        unsubscribe()


# --- the decorator form ---------------------------------------------------------------------


def test_on_and_once_without_a_callback_are_decorators(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=3&end=sentinel"), reconnect=NO_RETRY)
    seen: list[str] = []
    firsts: list[str] = []

    @t.on("event")
    def on_event(event: Event) -> None:
        seen.append(event.data)

    @t.once("event")
    def on_first(event: Event) -> None:
        firsts.append(event.data)

    t.connect()
    assert t.wait(timeout=10) == "done"
    assert seen == ["event 1", "event 2", "event 3"] and firsts == ["event 1"]
    assert callable(on_event) and on_event.__name__ == "on_event"  # left as it was
    t.close()


def test_the_decorated_function_unsubscribes_with_off(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=3&end=sentinel"), reconnect=NO_RETRY)
    seen: list[Event] = []

    @t.on("event")
    def on_event(event: Event) -> None:
        seen.append(event)

    t.off("event", on_event)
    with t:
        assert len(list(t.iter_events(timeout=10))) == 3  # the iterator got them all
    assert seen == []


def test_manager_on_as_a_decorator(stream_server: StreamServer) -> None:
    with TransportManager() as mgr:
        got: list[tuple[Any, str]] = []

        @mgr.on("event")
        def on_event(transport: Any, event: Event) -> None:
            got.append((transport, event.data))

        t = mgr.create("sse", stream_server.url("/sse?count=2&end=sentinel"))
        t.connect()
        assert t.wait(timeout=10) == "done"
        assert got == [(t, "event 1"), (t, "event 2")]


def test_emitter_on_and_once_as_decorators() -> None:
    em = EventEmitter()
    seen: list[int] = []

    @em.on("x")
    def always(value: int) -> None:
        seen.append(value)

    @em.once("x")
    def first(value: int) -> None:
        seen.append(-value)

    em.emit("x", 1)
    em.emit("x", 2)
    assert seen == [1, -1, 2]


# --- wait() ---------------------------------------------------------------------------------


def test_wait_returns_the_closed_reason(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=2&end=sentinel"), reconnect=NO_RETRY)
    closed: list[str] = []
    t.on("closed", closed.append)
    t.connect()
    assert t.wait() == "done"
    assert closed == ["done"]  # the reader has ended: its closed listeners ran
    assert t.wait(timeout=0) == "done"  # and it keeps saying so
    t.close()


def test_wait_returns_none_at_the_timeout_then_the_reason(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=1&end=hold"), reconnect=NO_RETRY)
    first = threading.Event()
    t.on("event", lambda event: first.set())
    t.connect()
    assert first.wait(10)
    assert t.wait(timeout=0.01) is None
    closer = threading.Thread(target=t.close)
    closer.start()
    assert t.wait(timeout=10) == "user"
    closer.join(10)


def test_wait_reports_a_failure(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?status=404"), reconnect=NO_RETRY)
    with pytest.raises(HTTPStatusError):
        t.connect()
    assert t.wait(timeout=10) == "failed"
    t.close()


def test_wait_from_a_callback_is_refused(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=1&end=sentinel"), reconnect=NO_RETRY)
    raised: list[BaseException] = []

    def on_event(event: Event) -> None:
        try:
            t.wait(timeout=1)
        except RuntimeError as exc:
            raised.append(exc)

    t.on("event", on_event)
    t.connect()
    assert t.wait(timeout=10) == "done"
    assert len(raised) == 1 and "callbacks" in str(raised[0])
    t.close()


# --- one rule for a transport that has ended ------------------------------------------------


def _ended_error(connect: Callable[[], object]) -> TransportClosedError:
    with pytest.raises(TransportClosedError, match="create a new transport") as info:
        connect()
    return info.value


def test_connect_after_done_says_the_stream_finished(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=2&end=sentinel"), reconnect=NO_RETRY)
    with t:
        assert len(list(t.iter_events(timeout=10))) == 2
    for again in (t.connect, t.__enter__):
        error = _ended_error(again)
        assert error.reason == "done" and "the stream finished" in error.message
    assert len(stream_server.requests) == 1  # never started again


def test_connect_after_done_with_events_unread_returns(stream_server: StreamServer) -> None:
    # ``with connect(url) as t`` on a short stream: it may finish before ``with`` connects again
    t = SSETransport(stream_server.url("/sse?count=2&end=sentinel"), reconnect=NO_RETRY)
    t.connect()
    assert t.wait(timeout=10) == "done"  # nobody read the events yet
    with t as again:
        assert again is t
        assert [e.data for e in t.iter_events(timeout=10)] == ["event 1", "event 2"]
    assert _ended_error(t.connect).reason == "done"  # now nothing is left to read


def test_connect_after_a_failure_says_it_failed_and_why(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?status=404"), reconnect=NO_RETRY)
    with pytest.raises(HTTPStatusError) as first:
        t.connect()
    error = _ended_error(t.connect)
    assert error.reason == "failed" and "HTTP 404" in error.message
    assert error.__cause__ is first.value
    t.close()
    assert _ended_error(t.connect).reason == "failed"  # close() does not change why it ended
    assert len(stream_server.requests) == 1


def test_connect_after_close_says_close_was_called(stream_server: StreamServer) -> None:
    t = SSETransport(stream_server.url("/sse?count=1&end=hold"), reconnect=NO_RETRY)
    t.connect()
    t.close()
    error = _ended_error(t.connect)
    assert error.reason == "user" and "close() was called" in error.message
    never = SSETransport(stream_server.url("/sse"))
    never.close()
    assert _ended_error(never.connect).reason == "user"
