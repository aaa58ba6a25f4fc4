"""``RedisRelay``: one upstream stream, appended to a Redis Stream for every worker to read.

Many processes on many hosts may run a relay for the same stream; a lease in Redis lets one of
them relay while the others wait, ready to take over (see :mod:`.lease` for the keys and why
no entry is written twice or skipped).
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Set, Tuple, TypeVar, Union, overload

from ...buffer import MessageBuffer
from ...config import BufferConfig, ReconnectPolicy
from ...emitter import EventEmitter, Listener, check_event_name, registrar
from ...errors import (
    ProtocolError,
    ReconnectFailed,
    StreamInterrupted,
    TransportClosedError,
    TransportError,
)
from ...events import BufferStrategy, Event, TransportState
from ...metrics import TransportHealth
from ...redact import redact_url
from ...transports.base import BaseTransport
from .connection import RedisLink, parse_redis_url
from .envelope import PackedEntries, encode_end_marker, pack_entry, pack_event
from .lease import AcquireResult, AppendResult, RelayStore
from .upstream import UpstreamFactory, Upstreams, may_send_again

__all__ = ["RedisRelay", "RelayMetrics"]

_F = TypeVar("_F", bound=Callable[..., Any])

#: The events a relay emits.
RELAY_EVENTS = ("lease", "error", "done", "closed")

log = logging.getLogger("aikit_transports.redis")

T = TypeVar("T")

_UNHEALTHY_AFTER = 3


class _Stopped(Exception):
    """``close()`` was called: unwind the relay's loops."""


@dataclass(frozen=True)
class RelayMetrics:
    """A snapshot of a relay's counters.

    ``events_in`` were received from the upstream, ``events_out`` appended to the stream,
    ``events_skipped`` dropped as replays after a takeover (or as data that has no envelope
    form); ``lease_held`` says whether this relay holds the lease now and ``lease_acquisitions``
    how often it took it; ``upstream_reconnects`` and ``redis_reconnects`` count reconnection
    attempts; ``last_error`` describes the latest error, if any.

    :param events_in: the events received from the upstream.
    :param events_out: the events appended to the stream.
    :param events_skipped: the events dropped as replays, or as data without an envelope form.
    :param lease_held: whether this relay holds the lease now.
    :param lease_acquisitions: how many times this relay took the lease.
    :param upstream_reconnects: the upstream's reconnection attempts.
    :param redis_reconnects: the reconnection attempts to Redis.
    :param errors: the errors reported (``error`` events).
    :param last_error: the message of the latest error (``None``: none yet).
    :param last_append_at: when the latest append was made, in ``time.monotonic()`` seconds
        (``None``: none yet).
    :param last_entry_id: the stream id of the latest entry appended (``None``: none yet).
    :param last_upstream_id: the upstream id of the latest event appended (``None``: none yet).
    """

    events_in: int = 0
    events_out: int = 0
    events_skipped: int = 0
    lease_held: bool = False
    lease_acquisitions: int = 0
    upstream_reconnects: int = 0
    redis_reconnects: int = 0
    errors: int = 0
    last_error: Optional[str] = None
    last_append_at: Optional[float] = None
    last_entry_id: Optional[str] = None
    last_upstream_id: Optional[str] = None


class RedisRelay:
    """Run one upstream transport and append every event to a Redis Stream.

    ``transport`` is the upstream: a transport not connected yet (any of ours), or a factory
    ``f(last_upstream_id) -> transport`` that builds one starting after that id. Only one relay
    per stream relays at a time, across every process and host: the others wait and take over
    within about ``lease_ttl`` seconds when the holder dies, resuming the upstream after the
    last upstream id recorded in Redis (and skipping events whose id is among those of the
    newest ``dedupe_window`` entries, should the upstream send some again), so the stream gets
    no gap and no duplicate. A relay given a transport can hold the lease once; with a factory
    it can take the lease again after losing it (to another relay, e.g. after a Redis
    failover).

    Each event becomes one entry (``XADD ... MAXLEN ~ maxlen``; ``maxlen=None`` keeps every
    entry) holding its type, data (``str``, ``bytes`` or JSON, round-tripping exactly), upstream
    id and the time it was received (see :mod:`.envelope`). When the upstream ends for good
    (``done``), the relay appends an end marker, which readers turn into ``done``, and stops;
    relays that start later for that stream stop at once. Delete the stream and its
    ``<stream>:relay:*`` keys (or take a new name) to run it again.

    Nothing is sent again that could repeat or invent output ("What is sent again" in the
    docs): an upstream that ends with ``StreamInterrupted`` ends the stream with it (the end
    marker carries it, and readers fail with it), and a relay taking over never re-opens an
    upstream whose request is not idempotent (see ``upstream.may_send_again``) unless the
    stream has an upstream id to resume from: it ends the stream with a ``StreamInterrupted``
    instead.

    ``run()`` relays in the calling thread until done or ``close()``, and raises what ended it
    otherwise (the upstream failed, or Redis stayed away longer than ``reconnect`` allows:
    it retries forever by default); ``start()`` runs it on a background thread and
    ``close()`` stops it (releasing the lease, so another relay takes over at once). While
    Redis is away the relay keeps its pending events and stops reading the upstream (which
    waits, by TCP backpressure), then goes on. The lease is renewed by the relay's own loop:
    every append renews it, and so does a timer when the upstream is quiet.

    ``metrics`` (:class:`RelayMetrics`) and ``health()`` work like a transport's; ``on(name,
    callback)`` takes ``lease`` ``(held: bool)``, ``error`` ``(error)``, ``done`` ``()`` and
    ``closed`` ``(reason)`` (``"done"``, ``"user"``, ``"failed"``).

    :param transport: the upstream: a transport not connected yet, or a factory
        ``f(last_upstream_id) -> transport``.
    :param redis_url: the Redis server: a ``redis://``, ``rediss://`` or ``unix://`` URL.
    :param stream: the name of the Redis Stream written (``stream`` in the URL must agree).
    :param maxlen: about the most entries the stream keeps (``None``: every entry).
    :param lease_ttl: seconds the lease lasts unless renewed: a standby takes over about that
        long after the holder dies.
    :param reconnect: how to reconnect to Redis (``None``: forever, after 0.2 s up to 5 s).
    :param timeout: seconds allowed to connect to Redis, for each command, and for the upstream
        to close.
    :param batch_size: the most events appended in one round trip.
    :param buffer_size: the most events held between the upstream and Redis (then the upstream
        waits).
    :param dedupe_window: how many of the newest entries are checked for replayed upstream ids
        on taking over (``0``: none).
    :param id: this relay's id, in its lease token and logs (``None``: a random one).
    """

    def __init__(
        self,
        transport: Union[BaseTransport, UpstreamFactory],
        redis_url: str,
        stream: str,
        *,
        maxlen: Optional[int] = 100_000,
        lease_ttl: float = 10.0,
        reconnect: Optional[ReconnectPolicy] = None,
        timeout: float = 5.0,
        batch_size: int = 500,
        buffer_size: int = 1000,
        dedupe_window: int = 1000,
        id: Optional[str] = None,
    ) -> None:
        self._upstreams = Upstreams(transport)
        address = parse_redis_url(redis_url)
        in_url = address.params.get("stream")
        if not isinstance(stream, str) or not stream:
            raise ValueError("stream must be a non-empty string")
        if in_url is not None and in_url != stream:
            raise ValueError(f"stream is given twice, as {stream!r} and in the URL as {in_url!r}")
        if maxlen is not None and (
            isinstance(maxlen, bool) or not isinstance(maxlen, int) or maxlen < 1
        ):
            raise ValueError(f"maxlen must be a positive integer or None, not {maxlen!r}")
        for name, value in (("lease_ttl", lease_ttl), ("timeout", timeout)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ValueError(f"{name} must be a positive number of seconds, not {value!r}")
        for name, count in (("batch_size", batch_size), ("buffer_size", buffer_size)):
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise ValueError(f"{name} must be a positive integer, not {count!r}")
        if (
            isinstance(dedupe_window, bool)
            or not isinstance(dedupe_window, int)
            or dedupe_window < 0
        ):
            raise ValueError(f"dedupe_window must be an integer >= 0, not {dedupe_window!r}")
        if reconnect is not None and not isinstance(reconnect, ReconnectPolicy):
            raise ValueError("reconnect must be a ReconnectPolicy")
        self.id: str = id or uuid.uuid4().hex[:12]
        self.url = redis_url
        self.safe_url: str = redact_url(redis_url) or ""
        self.stream = stream
        self.maxlen = maxlen
        self.lease_ttl = float(lease_ttl)
        self.timeout = float(timeout)
        self.batch_size = batch_size
        self.buffer_size = buffer_size
        self.dedupe_window = dedupe_window
        self.policy = reconnect or ReconnectPolicy(
            max_attempts=None, initial_delay=0.2, max_delay=5.0
        )
        #: What this relay writes into the lease: host, process and relay id.
        self.token = f"{socket.gethostname()}:{os.getpid()}:{self.id}"
        self._address = address
        self._store = RelayStore(stream)
        self._link = RedisLink(address, timeout=self.timeout)
        self._ttl_ms = max(1, int(self.lease_ttl * 1000))
        self._emitter = EventEmitter()

        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._finished = threading.Event()
        self._running = False
        self._runner: Optional[threading.Thread] = None  # the thread in run()
        self._thread: Optional[threading.Thread] = None
        self._state = "idle"
        self._upstream: Optional[BaseTransport] = None
        self._queue: Optional[MessageBuffer[Event]] = None
        self._upstream_end: Optional[str] = None
        self._upstream_error: Optional[TransportError] = None
        self._holder: Optional[str] = None
        self._failure: Optional[TransportError] = None
        self._redis_attempt = 0

        self._events_in = 0
        self._events_out = 0
        self._events_skipped = 0
        self._holding = False
        self._acquisitions = 0
        self._upstream_reconnects = 0
        self._redis_reconnects = 0
        self._errors = 0
        self._last_error: Optional[str] = None
        self._last_append_at: Optional[float] = None
        self._last_entry: Optional[str] = None
        self._last_upstream_id: Optional[str] = None

    # -- public API --------------------------------------------------------------------------

    @property
    def state(self) -> str:
        """``idle``, ``standby`` (waiting for the lease), ``relaying``, ``done``, ``closed``
        or ``failed``."""
        return self._state

    @property
    def upstream(self) -> Optional[BaseTransport]:
        """The upstream transport while this relay holds the lease."""
        return self._upstream

    @property
    def holder(self) -> Optional[str]:
        """The token of the lease's holder as last seen (``self.token`` while relaying)."""
        return self.token if self._holding else self._holder

    @overload
    def on(self, name: str, callback: Listener) -> Callable[[], None]: ...
    @overload
    def on(self, name: str, callback: None = None) -> Callable[[_F], _F]: ...
    def on(
        self, name: str, callback: Optional[Listener] = None
    ) -> Union[Callable[[], None], Callable[[_F], _F]]:
        """Register ``callback`` for ``lease``, ``error``, ``done`` or ``closed`` (an unknown
        name raises ``ValueError``); returns a function that unregisters it, or without a
        callback, a decorator.

        :param name: the event: ``lease``, ``error``, ``done`` or ``closed``.
        :param callback: called with the event's arguments (``None``: return a decorator).
        """
        check_event_name(name, RELAY_EVENTS)
        if callback is None:
            return registrar(lambda cb: self._emitter.on(name, cb))
        return self._emitter.on(name, callback)

    def off(self, name: str, callback: Optional[Listener] = None) -> None:
        """Unregister ``callback`` (or every listener of ``name``).

        :param name: the event: ``lease``, ``error``, ``done`` or ``closed``.
        :param callback: the listener to remove (``None``: every listener of ``name``).
        """
        check_event_name(name, RELAY_EVENTS)
        self._emitter.off(name, callback)

    def run(self) -> None:
        """Relay in this thread until the upstream is done or ``close()`` is called; raises
        the error that ended it otherwise."""
        with self._lock:
            if self._running:
                raise RuntimeError("this relay is already running")
            if self._state in ("done", "closed", "failed"):
                raise TransportClosedError(f"this relay is {self._state}")
            self._running = True
            self._runner = threading.current_thread()
            self._finished.clear()
        reason = "user"
        try:
            reason = self._main()
        except _Stopped:
            reason = "user"
        except TransportError as exc:
            self._failure = exc
            reason = "failed"
        except Exception as exc:  # a bug of ours must still end the relay cleanly
            log.exception("%s: relay crashed", self.id)
            error = TransportError(f"internal error: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._failure = error
            reason = "failed"
        finally:
            self._release_lease()
            self._link.close()
            self._state = {"done": "done", "failed": "failed"}.get(reason, "closed")
            self._running = False
            self._finished.set()
        if self._failure is not None and self._failure is not self._upstream_error:
            self._error(self._failure)
        if reason == "done":
            self._emit("done")
        self._emit("closed", reason)
        if self._failure is not None:
            raise self._failure

    def start(self) -> RedisRelay:
        """Run the relay on a background thread; returns at once."""
        with self._lock:
            if self._thread is not None or self._running:
                raise RuntimeError("this relay is already running")
            self._thread = threading.Thread(
                target=self._run_quietly, name=f"aikit-redis-relay-{self.id}", daemon=True
            )
            self._thread.start()
        return self

    def _run_quietly(self) -> None:
        # a failure is reported by the error and closed events, and kept in metrics.last_error
        with contextlib.suppress(TransportError):
            self.run()

    def wait(self, timeout: Optional[float] = None) -> bool:
        """Wait until a relay started with ``start()`` ended; ``False`` on timeout.

        :param timeout: the longest wait in seconds (``None``: no limit).
        """
        thread = self._thread
        if thread is None:
            return True
        thread.join(timeout)
        return not thread.is_alive()

    def close(self, timeout: float = 5.0) -> None:
        """Stop relaying, close the upstream, release the lease; idempotent, any thread.

        :param timeout: seconds to wait for the upstream to close, and about that long for the
            relay to stop.
        """
        self._stop.set()
        buf = self._queue
        if buf is not None:
            buf.close()
        self._link.interrupt()
        with self._lock:
            running = self._running
            thread = self._thread
            never_ran = not running and thread is None and self._state == "idle"
            if never_ran:
                self._state = "closed"
        if never_ran:
            self._upstreams.discard(timeout)
            self._emit("closed", "user")
            return
        current = threading.current_thread()
        if current is self._runner:
            return  # from a callback or a signal handler of run()'s thread: it ends on return
        if thread is not None:
            thread.join(timeout + 1.0)
        elif running:
            self._finished.wait(timeout + 1.0)

    def __enter__(self) -> RedisRelay:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<RedisRelay id={self.id} stream={self.stream!r} url={self.safe_url} {self._state}>"

    @property
    def metrics(self) -> RelayMetrics:
        """A snapshot of the counters."""
        return RelayMetrics(
            events_in=self._events_in,
            events_out=self._events_out,
            events_skipped=self._events_skipped,
            lease_held=self._holding,
            lease_acquisitions=self._acquisitions,
            upstream_reconnects=self._upstream_reconnects,
            redis_reconnects=self._redis_reconnects,
            errors=self._errors,
            last_error=self._last_error,
            last_append_at=self._last_append_at,
            last_entry_id=self._last_entry,
            last_upstream_id=self._last_upstream_id,
        )

    def health(self) -> TransportHealth:
        """Healthy while relaying a healthy upstream or waiting for the lease with Redis
        reachable; degraded while Redis or the upstream reconnects; unhealthy once ended or
        after 3 failed Redis attempts in a row."""
        state = self._state
        last = self._last_append_at
        idle = None if last is None else time.monotonic() - last
        if state == "failed":
            return TransportHealth("unhealthy", TransportState.ERROR, idle, self._last_error)
        if state in ("done", "closed"):
            return TransportHealth("unhealthy", TransportState.CLOSED, idle, f"relay {state}")
        if self._redis_attempt >= _UNHEALTHY_AFTER:
            return TransportHealth(
                "unhealthy",
                TransportState.RECONNECTING,
                idle,
                f"Redis unreachable: {self._redis_attempt} failed attempts in a row",
            )
        if self._redis_attempt:
            return TransportHealth(
                "degraded", TransportState.RECONNECTING, idle, "reconnecting to Redis"
            )
        upstream = self._upstream
        if state == "relaying" and upstream is not None:
            health = upstream.health()
            reason = None if health.reason is None else f"upstream: {health.reason}"
            return TransportHealth(health.status, health.state, idle, reason)
        if state == "idle":
            return TransportHealth("degraded", TransportState.IDLE, idle, "not started")
        return TransportHealth("healthy", TransportState.IDLE, idle, None)

    # -- events ------------------------------------------------------------------------------

    def _emit(self, name: str, *args: Any) -> None:
        self._emitter.emit(name, *args)

    def _error(self, error: TransportError) -> None:
        error.with_context(transport_id=self.id, url=self.safe_url, attempt=None)
        self._errors += 1
        self._last_error = error.message
        log.warning("%s: %s", self.id, error)
        self._emit("error", error)

    # -- the relay's loops -------------------------------------------------------------------

    def _main(self) -> str:
        """Wait for the lease, relay while holding it, again after losing it; ``"done"``."""
        while True:
            acquired = self._acquire()
            if acquired.status == "done":
                log.info("%s: stream %r is finished: nothing to relay", self.id, self.stream)
                return "done"
            if self._relay(acquired) == "done":
                return "done"

    def _acquire(self) -> AcquireResult:
        poll = max(0.02, self.lease_ttl / 10)
        waiting = False
        while True:
            self._state = "standby"
            result = self._call(self._store.acquire, self._link, self.token, self._ttl_ms)
            if result.status != "held":
                return result
            if not waiting:
                log.info("%s: standing by; %s holds the lease", self.id, result.holder)
                waiting = True
            self._holder = result.holder
            if self._stop.wait(poll):
                raise _Stopped

    def _relay(self, acquired: AcquireResult) -> str:
        """One lease term: ``"done"`` or ``"lost"``."""
        self._acquisitions += 1
        self._holding = True
        self._holder = self.token
        self._state = "relaying"
        log.info(
            "%s: holds the lease of %r; upstream resumes after %r",
            self.id,
            self.stream,
            acquired.upstream_id,
        )
        self._emit("lease", True)
        upstream: Optional[BaseTransport] = None
        buf: MessageBuffer[Event] = MessageBuffer(
            BufferConfig(max_size=self.buffer_size, strategy=BufferStrategy.BLOCK)
        )
        try:
            seen: Set[str] = set()
            if acquired.upstream_id is not None and self.dedupe_window:
                seen = self._call(self._store.recent_upstream_ids, self._link, self.dedupe_window)
            upstream = self._upstreams.build(acquired.upstream_id)
            if not may_send_again(upstream):
                if acquired.opened is not None and acquired.upstream_id is None:
                    return self._end_stream(acquired.last_entry, self._not_again(upstream))
                if not self._call(self._store.renew, self._link, self.token, self._ttl_ms, True):
                    self._lost()
                    return "lost"
            self._start_upstream(upstream, buf)
            return self._pump(buf, acquired.last_entry, seen)
        finally:
            self._holding = False
            self._queue = None
            self._upstream = None
            buf.close()  # frees an upstream reader waiting for room in it
            if upstream is not None:
                upstream.close(self.timeout)
            self._emit("lease", False)

    def _start_upstream(self, upstream: BaseTransport, buf: MessageBuffer[Event]) -> None:
        self._upstream_end = None
        self._upstream_error = None

        def on_event(event: Event) -> None:
            # waits for room: the upstream's reader stops (TCP backpressure); closed: stopping
            with contextlib.suppress(TransportClosedError):
                buf.put(event)

        def on_error(error: TransportError) -> None:
            self._upstream_error = error
            self._error(error)

        def on_reconnecting(attempt: int, delay: float, error: TransportError) -> None:
            self._upstream_reconnects += 1

        def on_closed(reason: str) -> None:
            self._upstream_end = reason
            buf.close()  # what it holds is still taken; then the relay sees the end

        upstream.on("event", on_event)
        upstream.on("error", on_error)
        upstream.on("reconnecting", on_reconnecting)
        upstream.on("closed", on_closed)
        self._queue = buf
        self._upstream = upstream
        if self._stop.is_set():
            raise _Stopped
        # starts its reader, which keeps connecting by itself; a failure reaches on_closed
        with contextlib.suppress(TransportError):
            upstream.connect(timeout=0.01)

    def _pump(self, buf: MessageBuffer[Event], last_entry: str, seen: Set[str]) -> str:
        """Move events from the upstream to the stream until it ends or the lease is lost."""
        expected = last_entry
        renew_every = self.lease_ttl / 3
        next_renew = time.monotonic() + renew_every
        skipping = bool(seen)
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                batch = buf.get_batch(
                    max(0.0, next_renew - time.monotonic()), max_items=self.batch_size
                )
            except queue.Empty:
                batch = []
            except TransportClosedError:
                break
            if batch:
                self._events_in += len(batch)
                if skipping:
                    batch, skipping = self._skip_replayed(batch, seen)
                if batch:
                    status, expected = self._append(batch, expected)
                    if status == "lost":
                        return "lost"
                    next_renew = time.monotonic() + renew_every
                    continue
            if time.monotonic() >= next_renew:
                if not self._call(self._store.renew, self._link, self.token, self._ttl_ms):
                    self._lost()
                    return "lost"
                next_renew = time.monotonic() + renew_every
        if self._stop.is_set():
            raise _Stopped
        error = self._upstream_error
        if self._upstream_end == "done" or isinstance(error, StreamInterrupted):
            return self._end_stream(expected, error if self._upstream_end == "failed" else None)
        if self._upstream_end == "failed" and error is not None:
            raise error
        raise TransportClosedError(
            f"the upstream transport was closed ({self._upstream_end or 'unknown'})",
            retryable=False,
        )

    def _end_stream(self, expected: str, error: Optional[TransportError] = None) -> str:
        """Append the end marker: ``"done"``, or, carrying ``error`` (which readers then fail
        with), raise it; ``"lost"`` when another relay holds the lease."""
        kind = None if error is None else (type(error).__name__, error.message)
        marker = pack_entry(encode_end_marker(self._last_upstream_id, time.time(), kind))
        result = self._append_entries(expected, None, marker, final=True)
        if result.status == "lost":
            return "lost"
        self._last_entry = result.last_entry
        if error is not None:
            log.warning(
                "%s: the stream ends with %s (end marker %s)", self.id, kind, result.last_entry
            )
            raise error
        log.info("%s: the upstream is done; end marker %s appended", self.id, result.last_entry)
        return "done"

    def _not_again(self, upstream: BaseTransport) -> StreamInterrupted:
        """Why this relay does not open ``upstream``: another one sent its request already."""
        method = getattr(upstream, "method", "the")
        return StreamInterrupted(
            f"the upstream's {method} request may not be sent again and the stream has no "
            "upstream id to resume from: another relay sent it and stopped, so this one ends "
            "the stream instead (pass idempotent=True to the upstream if sending it again "
            "is safe)",
            events_delivered=self._events_out,
        )

    def _skip_replayed(self, batch: List[Event], seen: Set[str]) -> Tuple[List[Event], bool]:
        """Drop the events an upstream sends again after a takeover (ids already appended),
        up to the first new one."""
        for index, event in enumerate(batch):
            if event.id is None or event.id not in seen:
                if index:
                    self._events_skipped += index
                    log.info("%s: skipped %d events already in the stream", self.id, index)
                return batch[index:], False
        self._events_skipped += len(batch)
        return [], True

    def _append(self, batch: List[Event], expected: str) -> Tuple[str, str]:
        packed: List[bytes] = []
        count = 0
        offset = time.time() - time.monotonic()
        upstream_id: Optional[str] = None
        for event in batch:
            try:
                entry, args = pack_event(event, event.received_at + offset)
            except TypeError as exc:
                self._events_skipped += 1
                self._error(ProtocolError(f"event {event.id!r} not relayed: {exc}"))
                continue
            packed.append(entry)
            count += args
            if event.id is not None:
                upstream_id = event.id
        if not packed:
            return "ok", expected
        entries = (b"".join(packed), count)
        result = self._append_entries(expected, upstream_id, entries)
        if result.status == "lost":
            return "lost", expected
        if result.status == "dup":
            log.info("%s: the previous try of this batch was appended already", self.id)
        self._events_out += len(packed)
        self._last_append_at = time.monotonic()
        self._last_entry = result.last_entry
        if upstream_id is not None:
            self._last_upstream_id = upstream_id
        return "ok", result.last_entry

    def _append_entries(
        self,
        expected: str,
        upstream_id: Optional[str],
        entries: PackedEntries,
        final: bool = False,
    ) -> AppendResult:
        """Append ``entries`` under our lease (see ``RelayStore.append``); a lost lease is
        recorded here, the caller only stops."""
        result = self._call(
            self._store.append,
            self._link,
            self.token,
            self._ttl_ms,
            self.maxlen,
            expected,
            upstream_id,
            entries,
            final,
        )
        if result.status == "lost":
            self._lost()
        return result

    def _lost(self) -> None:
        log.warning("%s: lost the lease of %r to another relay", self.id, self.stream)
        self._holder = None

    def _call(self, operation: Callable[..., T], *args: Any) -> T:
        """Run one Redis operation; retryable failures are retried by the policy (the pending
        events and the upstream wait meanwhile)."""
        while True:
            if self._stop.is_set():
                raise _Stopped
            try:
                result = operation(*args)
            except TransportError as exc:
                if self._stop.is_set():
                    raise _Stopped from None
                if not exc.retryable:
                    raise
                self._redis_attempt += 1
                self._error(exc)
                if not self.policy.allows(self._redis_attempt):
                    failed = ReconnectFailed(
                        f"gave up on Redis after {self._redis_attempt - 1} reconnection "
                        f"attempts: {exc.message}"
                    )
                    failed.__cause__ = exc
                    raise failed from exc
                self._redis_reconnects += 1
                delay = self.policy.delay(self._redis_attempt)
                log.info("%s: Redis again in %.2f s after: %s", self.id, delay, exc.message)
                if self._stop.wait(delay):
                    raise _Stopped from None
                continue
            if self._redis_attempt:
                log.info("%s: Redis is back", self.id)
                self._redis_attempt = 0
            return result

    def _release_lease(self) -> None:
        """Give the lease up at the end, on a fresh connection (``close()`` may have cut the
        relay's own); if Redis is away, it expires by itself."""
        if not self._acquisitions:
            return
        link = RedisLink(self._address, timeout=min(self.timeout, 2.0))
        try:
            self._store.release(link, self.token)
        except TransportError as exc:
            log.debug("%s: lease not released (it expires by itself): %s", self.id, exc)
        finally:
            link.close()
