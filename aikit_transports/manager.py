"""``TransportManager``: the transports of a long-lived process, their timers on one small pool.

A manager creates transports by wire name, keeps at most ``max_transports`` of them open, and
runs the periodic work of all of them on one ``ThreadPoolExecutor`` of ``max_workers`` threads fed
by one timer thread: idle cleanup, health checks and the WebSocket heartbeats. So a process with
500 open WebSocket transports runs on 500 reader threads + ``max_workers`` + 1, and no thread per
timer. HTTP wires of one manager share one ``requests.Session`` (``pool_maxsize`` connections
kept per host), so many streams to one host reuse connections.

Wires are looked up in a small registry (``"sse"``, ``"websocket"`` or ``"ws"``,
``"http-stream"``, any :class:`~aikit_transports.TransportType`, or a transport class); each wire
module is imported on first use, so a missing one only fails when it is asked for.
:func:`register_transport` adds a wire.

The Django pattern (what ``aikit_transports.contrib.django.get_manager`` does): one manager per
process, created lazily and thread-safely on first use (after the fork of a pre-forking server,
never at import time: threads do not survive ``fork()``), and shut down at interpreter exit::

    import atexit, threading
    from aikit_transports import TransportManager

    _manager = None
    _manager_lock = threading.Lock()

    def get_manager() -> TransportManager:
        global _manager
        if _manager is None:
            with _manager_lock:
                if _manager is None:
                    _manager = TransportManager(max_transports=200, idle_timeout=600)
                    atexit.register(_manager.shutdown)
        return _manager

    # a view: one upstream feed shared by every request of this process
    def feed(request):
        t = get_manager().get_or_create("sse", FEED_URL)
        return sse_response(t, close_source=False)

A management command that runs for a while uses its own manager as a context manager
(``with TransportManager() as mgr: ...``), which closes every transport and joins the pool on exit.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import logging
import threading
import time
from typing import (
    TYPE_CHECKING,
    Any,
    Callable,
    Dict,
    Hashable,
    List,
    Literal,
    Optional,
    Set,
    Tuple,
    Type,
    TypeVar,
    Union,
    cast,
    overload,
)

import requests

from .buffer import BackpressureInfo
from .emitter import F, check_event_name, registrar
from .errors import TransportClosedError, TransportError, TransportLimitError
from .events import TRANSPORT_EVENTS, Event, EventName, TransportState, TransportType
from .metrics import TransportHealth, TransportMetrics, latency_summary
from .timers import Scheduler, TimerHandle
from .transports.base import BaseTransport
from .transports.registry import WireSpec, accepts_option, normalise_wire, resolve_transport
from .transports.sessions import close_session, new_session
from .validate import check_int, check_seconds

if TYPE_CHECKING:
    from .transports.http_stream import HTTPStreamTransport
    from .transports.sse import SSETransport
    from .transports.websocket import WebSocketTransport

__all__ = ["TransportManager"]

log = logging.getLogger("aikit_transports.manager")

ManagerListener = Callable[..., Any]
TT = TypeVar("TT", bound=BaseTransport)
M = TypeVar("M", bound="TransportManager")

#: Manager events that are the manager's own (not forwarded from transports).
_OWN_EVENTS = frozenset({"unhealthy"})
#: What ``mgr.on()`` takes: every transport event, and the manager's own.
ManagerEventName = Union[EventName, Literal["unhealthy"]]
MANAGER_EVENTS: Tuple[str, ...] = (*TRANSPORT_EVENTS, *sorted(_OWN_EVENTS))
#: A connected transport silent for this many times its ``idle_timeout`` counts as stalled:
#: its own stall detection should have acted long before.
_STALL_FACTOR = 2.0


def _freeze(value: Any) -> Hashable:
    """A hashable stand-in for an option value (containers by content, others by hash or repr)."""
    if isinstance(value, dict):
        return (
            "dict",
            tuple(sorted(((repr(k), _freeze(v)) for k, v in value.items()), key=lambda kv: kv[0])),
        )
    if isinstance(value, (list, tuple)):
        return (type(value).__name__, tuple(_freeze(v) for v in value))
    if isinstance(value, (set, frozenset)):
        return ("set", tuple(sorted(repr(_freeze(v)) for v in value)))
    try:
        hash(value)
    except TypeError:
        return ("repr", type(value).__qualname__, repr(value))
    return (type(value).__qualname__, value)


def _type_name(t: BaseTransport) -> str:
    return str(getattr(t.type, "value", t.type))


class _Entry:
    """What the manager keeps about one transport."""

    __slots__ = (
        "activity",
        "forwarders",
        "forwarders_lock",
        "key",
        "last_active",
        "status",
        "transport",
    )

    def __init__(self, transport: BaseTransport, key: Optional[Hashable], now: float) -> None:
        self.transport = transport
        self.key = key
        self.last_active = now
        self.activity = 0  # messages received + sent when last looked at
        self.forwarders: Dict[str, Callable[..., None]] = {}
        # Serialises adding and removing this transport's forwarders. Never held together with
        # the manager's lock around a transport call: t.on("event") may deliver leftover events
        # under the transport's dispatch lock, while a closing transport holds that lock and
        # waits for the manager's lock (in _left).
        self.forwarders_lock = threading.RLock()
        self.status = "healthy"


class TransportManager:
    """Owns many transports: limits, reuse, event forwarding, idle cleanup, health and metrics.

    Transports are created but not connected: call ``t.connect()`` or iterate them. A transport
    that closes for any reason (``close()``, done, failed, idle, ``close(id)``) leaves the manager
    and frees its slot; ``close_all()`` closes every transport (reason ``"manager"``) and keeps the
    manager usable; ``shutdown()`` (and leaving a ``with`` block) also stops the timers and joins
    the pool.

    ``mgr.on(name, cb)`` forwards the events of every transport with the transport first:
    ``cb(t, event)``, ``cb(t, error)``, ``cb(t)`` for ``connected``, ``cb(t, reason)`` for
    ``closed``, ``cb(t, attempt, delay, error)`` for ``reconnecting``, and so on for every
    transport event. Listeners run on the transport's thread, so listeners of different
    transports may run at the same time. The manager's own event ``unhealthy``,
    ``cb(t, health)``, fires when the periodic health check finds a transport newly unhealthy.

    The ``event`` forwarder is registered on a transport only while the manager has ``event``
    listeners (added to every transport when the first one comes, removed with the last). A
    forwarder is a consumer of the transport: while none exists, events arriving between
    ``t.connect()`` and ``t.iter_events()`` wait for that first iterator (see ``iter_events``); an
    always-registered forwarder would take that buffer away and buffer events for nobody.
    With manager ``event`` listeners, each transport's iterators get the events from the moment
    they start, like any second consumer.

    Idle cleanup (every ``cleanup_interval`` seconds) closes, with reason ``"idle"``, a transport
    that neither received nor sent a message for ``idle_timeout`` seconds since it was created or
    last connected (``idle_timeout=None`` turns it off). ``metrics()`` counters are cumulative
    over the manager's life (transports that left still count); ``buffer_size`` is current.

    Every method is safe to call from any thread, including from a transport's callback. HTTP
    wires share one session, cookies included: pass ``session=`` to keep a transport apart.

    :param max_transports: the most transports open at once (then ``TransportLimitError``).
    :param idle_timeout: seconds without a message received or sent before a transport is
        closed as idle (``None``: never).
    :param cleanup_interval: seconds between two idle cleanups.
    :param health_check_interval: seconds between two health checks (``None``: no periodic
        check, so no ``unhealthy`` event).
    :param max_workers: the threads of the pool that runs the timers (idle cleanup, health
        checks, heartbeats) and closes transports.
    :param pool_maxsize: the connections per host kept by the shared HTTP session.
    """

    def __init__(
        self,
        max_transports: int = 100,
        idle_timeout: Optional[float] = 300.0,
        cleanup_interval: float = 30.0,
        health_check_interval: Optional[float] = 30.0,
        max_workers: int = 4,
        pool_maxsize: int = 10,
    ) -> None:
        check_int("max_transports", max_transports)
        check_int("max_workers", max_workers)
        check_int("pool_maxsize", pool_maxsize)
        check_seconds("idle_timeout", idle_timeout, allow_none=True)
        check_seconds("cleanup_interval", cleanup_interval, allow_none=False)
        check_seconds("health_check_interval", health_check_interval, allow_none=True)
        self.max_transports = max_transports
        self.idle_timeout = idle_timeout
        self.cleanup_interval = float(cleanup_interval)
        self.health_check_interval = health_check_interval
        self.max_workers = max_workers
        self.pool_maxsize = pool_maxsize

        self._lock = threading.RLock()
        self._entries: Dict[str, _Entry] = {}
        self._by_key: Dict[Hashable, str] = {}
        self._listeners: Dict[str, Tuple[ManagerListener, ...]] = {}
        self._failed: Dict[str, TransportHealth] = {}
        self._retired = TransportMetrics()
        self._closed = False
        self._workers: Set[int] = set()
        self._pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=max_workers,
            thread_name_prefix="aikit-manager",
            initializer=self._worker_started,
        )
        self._scheduler = Scheduler("aikit-manager-timers", executor=self._pool)
        self._session: Optional[requests.Session] = None
        self._timers: List[TimerHandle] = []
        self._cleanup_running = threading.Lock()
        self._health_running = threading.Lock()

    # -- creating and finding ---------------------------------------------------------------

    @overload
    def create(
        self, type: Literal["sse", TransportType.SSE], url: str, **options: Any
    ) -> SSETransport: ...
    @overload
    def create(
        self, type: Literal["websocket", "ws", TransportType.WEBSOCKET], url: str, **options: Any
    ) -> WebSocketTransport: ...
    @overload
    def create(
        self, type: Literal["http-stream", TransportType.HTTP_STREAM], url: str, **options: Any
    ) -> HTTPStreamTransport: ...
    @overload
    def create(self, type: Type[TT], url: str, **options: Any) -> TT: ...
    @overload
    def create(
        self, type: Union[str, TransportType], url: str, **options: Any
    ) -> BaseTransport: ...
    def create(self, type: WireSpec, url: str, **options: Any) -> BaseTransport:
        """A new transport of wire ``type`` (not connected yet), owned by this manager.

        ``TransportLimitError`` when ``max_transports`` are open; ``ValueError`` for an unknown
        wire or a bad option. Type checkers see the class: ``create("sse", url)`` is an
        ``SSETransport``, ``create(MyWire, url)`` a ``MyWire``.

        :param type: the wire: a name (``"sse"``, ``"websocket"``, ...), a
            :class:`~aikit_transports.TransportType` or a transport class.
        :param url: the endpoint.
        :param options: keyword arguments of the transport's class.
        """
        cls = resolve_transport(type)
        with self._lock:
            entry = self._register(cls, url, options, key=None)
        self._forward_all(entry)
        return entry.transport

    @overload
    def get_or_create(
        self, type: Literal["sse", TransportType.SSE], url: str, **options: Any
    ) -> SSETransport: ...
    @overload
    def get_or_create(
        self, type: Literal["websocket", "ws", TransportType.WEBSOCKET], url: str, **options: Any
    ) -> WebSocketTransport: ...
    @overload
    def get_or_create(
        self, type: Literal["http-stream", TransportType.HTTP_STREAM], url: str, **options: Any
    ) -> HTTPStreamTransport: ...
    @overload
    def get_or_create(self, type: Type[TT], url: str, **options: Any) -> TT: ...
    @overload
    def get_or_create(
        self, type: Union[str, TransportType], url: str, **options: Any
    ) -> BaseTransport: ...
    def get_or_create(self, type: WireSpec, url: str, **options: Any) -> BaseTransport:
        """The open transport created with the same wire, URL and options, else a new one
        (typed like :meth:`create`).

        :param type: the wire, as for :meth:`create`.
        :param url: the endpoint.
        :param options: keyword arguments of the transport's class (compared by value).
        """
        cls = resolve_transport(type)
        key = (cls, url, _freeze(options))
        with self._lock:
            found = self._by_key.get(key)
            if found is not None:
                entry = self._entries.get(found)
                if entry is not None and entry.transport.state not in (
                    TransportState.CLOSED,
                    TransportState.ERROR,
                ):
                    return entry.transport
            entry = self._register(cls, url, options, key=key)
        self._forward_all(entry)
        return entry.transport

    def _register(
        self,
        cls: Type[BaseTransport],
        url: str,
        options: Dict[str, Any],
        key: Optional[Hashable],
    ) -> _Entry:
        """Create the transport and take it in (the manager's lock is held by the caller)."""
        kwargs = dict(options)
        if "scheduler" not in kwargs and accepts_option(cls, "scheduler"):
            kwargs["scheduler"] = self._scheduler
        if self._closed:
            raise TransportClosedError("the transport manager is shut down")
        if len(self._entries) >= self.max_transports:
            raise TransportLimitError(
                f"the manager already holds {len(self._entries)} open transports "
                f"(max_transports={self.max_transports}); close one, or create the manager "
                f"with a larger max_transports"
            )
        if kwargs.get("id") is not None and kwargs["id"] in self._entries:
            raise ValueError(f"a transport with id {kwargs['id']!r} is already managed")
        if "session" not in kwargs and accepts_option(cls, "session"):
            kwargs["session"] = self._shared_session()
        transport = cls(url, **kwargs)
        entry = _Entry(transport, key, time.monotonic())
        self._entries[transport.id] = entry
        if key is not None:
            self._by_key[key] = transport.id
        # first of its "closed" listeners, so that the user's ones find it gone
        transport.on("closed", lambda reason: self._left(transport, reason))
        self._start_timers()
        log.debug("created %r", transport)
        return entry

    def _shared_session(self) -> requests.Session:
        if self._session is None:
            self._session = new_session(self.pool_maxsize)
        return self._session

    def get(self, id: str) -> Optional[BaseTransport]:
        """The open transport with this id, or ``None``.

        :param id: the transport's id.
        """
        entry = self._entries.get(id)
        return entry.transport if entry is not None else None

    def find(
        self,
        type: Union[str, TransportType, None] = None,
        state: Union[str, TransportState, None] = None,
    ) -> List[BaseTransport]:
        """Open transports of this wire and/or state (enum or its string), oldest first.

        :param type: the wire, a :class:`~aikit_transports.TransportType` or its string
            (``None``: any).
        :param state: the :class:`~aikit_transports.TransportState` or its string (``None``:
            any).
        """
        want_type = None if type is None else normalise_wire(type)
        want_state = None if state is None else TransportState(state)
        return [
            t
            for t in self._transports()
            if (want_type is None or _type_name(t) == want_type)
            and (want_state is None or t.state is want_state)
        ]

    def _transports(self) -> List[BaseTransport]:
        with self._lock:
            return [e.transport for e in self._entries.values()]

    def __len__(self) -> int:
        return len(self._entries)

    # -- closing ----------------------------------------------------------------------------

    def close(self, id: str, timeout: float = 5.0) -> bool:
        """Close the transport ``id`` (reason ``"manager"``); ``False`` if the manager has none.

        :param id: the transport's id.
        :param timeout: seconds to wait for it to close, as for its own ``close()``.
        """
        transport = self.get(id)
        if transport is None:
            return False
        transport._close("manager", timeout)
        return True

    def close_all(self, timeout: float = 5.0) -> None:
        """Close every transport (reason ``"manager"``), several at a time on the pool.

        :param timeout: seconds to wait for each transport to close, as for its ``close()``.
        """
        self._close_many(self._transports(), "manager", timeout)

    def _close_many(self, transports: List[BaseTransport], reason: str, timeout: float) -> None:
        if not transports:
            return
        if threading.get_ident() in self._workers:  # waiting on the pool from it could deadlock
            for t in transports:
                t._close(reason, timeout)
            return
        futures = []
        for t in transports:
            if t._on_own_thread():  # called from its own callback: it finishes when we return
                t._close(reason, timeout)
                continue
            try:
                futures.append(self._pool.submit(t._close, reason, timeout))
            except RuntimeError:  # the pool is shut down: close here
                t._close(reason, timeout)
        for future in futures:
            future.result()

    def shutdown(self, timeout: float = 5.0) -> None:
        """Close every transport, stop the timers, join the pool and release the shared session.

        Idempotent; the manager refuses new transports afterwards.

        :param timeout: seconds to wait for each transport to close, and for the timers to stop.
        """
        with self._lock:
            self._closed = True
            timers, self._timers = self._timers, []
        self.close_all(timeout)
        for timer in timers:
            timer.cancel()
        self._scheduler.shutdown(timeout)
        self._pool.shutdown(wait=threading.get_ident() not in self._workers)
        with self._lock:
            session, self._session = self._session, None
        if session is not None:
            close_session(session)

    @property
    def closed(self) -> bool:
        """Whether :meth:`shutdown` was called."""
        return self._closed

    def __enter__(self: M) -> M:
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()

    def __repr__(self) -> str:
        state = "shut down" if self._closed else f"{len(self._entries)}/{self.max_transports}"
        return f"<TransportManager transports={state}>"

    def _left(self, transport: BaseTransport, reason: str) -> None:
        """A transport closed: it leaves the manager (first of its ``closed`` listeners)."""
        final = transport.metrics
        with self._lock:
            entry = self._entries.get(transport.id)
            if entry is None or entry.transport is not transport:
                return
            del self._entries[transport.id]
            if entry.key is not None and self._by_key.get(entry.key) == transport.id:
                del self._by_key[entry.key]
            self._retired = TransportMetrics.total([self._retired, final])
            if reason == "failed":
                self._failed[transport.id] = transport.health()
                while len(self._failed) > max(100, self.max_transports):
                    del self._failed[next(iter(self._failed))]
        log.debug("%s left the manager (%s)", transport.id, reason)

    # -- events -----------------------------------------------------------------------------

    @overload
    def on(self, name: ManagerEventName) -> Callable[[F], F]: ...
    @overload
    def on(
        self, name: Literal["event"], callback: Callable[[BaseTransport, Event], Any]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self,
        name: Literal["connecting", "connected", "done"],
        callback: Callable[[BaseTransport], Any],
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self,
        name: Literal["reconnecting"],
        callback: Callable[[BaseTransport, int, float, TransportError], Any],
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self, name: Literal["error"], callback: Callable[[BaseTransport, TransportError], Any]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self, name: Literal["closed"], callback: Callable[[BaseTransport, str], Any]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self,
        name: Literal["backpressure", "drain"],
        callback: Callable[[BaseTransport, BackpressureInfo], Any],
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self,
        name: Literal["unhealthy"],
        callback: Callable[[BaseTransport, TransportHealth], Any],
    ) -> Callable[[], None]: ...
    def on(self, name: ManagerEventName, callback: Optional[ManagerListener] = None) -> Any:
        """Call ``callback(transport, *args)`` for ``name`` events of every transport.

        Returns a zero-argument callable that unregisters it; without ``callback``, a decorator.
        A name that is not an event is a ``ValueError`` listing them.

        :param name: a transport event (``event``, ``error``, ``closed``, ...) or ``unhealthy``.
        :param callback: called with the transport, then the event's arguments (``None``: return
            a decorator).
        """
        check_event_name(name, MANAGER_EVENTS)
        if callback is None:
            return registrar(lambda cb: self.on(name, cb))
        if not callable(callback):
            raise TypeError("callback must be callable")
        with self._lock:
            first = name not in self._listeners
            self._listeners[name] = (*self._listeners.get(name, ()), callback)
            entries = list(self._entries.values()) if first else []
        for entry in entries:
            self._sync_forwarder(entry, name)
        return lambda: self.off(name, callback)

    def off(self, name: ManagerEventName, callback: Optional[ManagerListener] = None) -> None:
        """Unregister ``callback`` (or every listener of ``name``).

        :param name: the event.
        :param callback: the listener to remove (``None``: every listener of ``name``).
        """
        check_event_name(name, MANAGER_EVENTS)
        with self._lock:
            current = list(self._listeners.get(name, ()))
            if callback is None:
                current = []
            elif callback in current:
                current.remove(callback)
            else:
                return
            if current:
                self._listeners[name] = tuple(current)
                return
            self._listeners.pop(name, None)
            entries = list(self._entries.values())
        for entry in entries:
            self._sync_forwarder(entry, name)

    def _forward_all(self, entry: _Entry) -> None:
        """Give a new transport the forwarders of every name the manager listens to."""
        with self._lock:
            names = list(self._listeners)
        for name in names:
            self._sync_forwarder(entry, name)

    def _sync_forwarder(self, entry: _Entry, name: str) -> None:
        """Register or remove ``entry``'s forwarder of ``name`` to match the manager's listeners."""
        if name in _OWN_EVENTS:
            return
        transport = entry.transport
        with entry.forwarders_lock:
            with self._lock:
                wanted = name in self._listeners and self._entries.get(transport.id) is entry
            forwarder = entry.forwarders.get(name)
            if wanted and forwarder is None:

                def forward(*args: Any) -> None:
                    self._dispatch(name, transport, args)

                entry.forwarders[name] = forward
                transport.on(cast(EventName, name), forward)
            elif not wanted and forwarder is not None:
                del entry.forwarders[name]
                transport.off(cast(EventName, name), forwarder)

    def _dispatch(self, name: str, transport: BaseTransport, args: Tuple[Any, ...]) -> None:
        """Call the manager's listeners of ``name``; the first exception is re-raised afterwards,
        so that the transport reports it as an ``error`` like any listener's."""
        first: Optional[Exception] = None
        for callback in self._listeners.get(name, ()):
            try:
                callback(transport, *args)
            except Exception as exc:
                log.error("manager listener for %r raised %s: %s", name, type(exc).__name__, exc)
                if first is None:
                    first = exc
        if first is not None:
            raise first

    # -- periodic work ----------------------------------------------------------------------

    def _worker_started(self) -> None:
        self._workers.add(threading.get_ident())

    def _start_timers(self) -> None:
        """Start the cleanup and health timers with the first transport (lock held)."""
        if self._timers:
            return
        if self.idle_timeout is not None:
            self._timers.append(self._scheduler.call_every(self.cleanup_interval, self._cleanup))
        if self.health_check_interval is not None:
            self._timers.append(
                self._scheduler.call_every(self.health_check_interval, self._periodic_health)
            )

    def _cleanup(self) -> None:
        """Close the transports that neither received nor sent for ``idle_timeout`` seconds."""
        limit = self.idle_timeout
        if limit is None or not self._cleanup_running.acquire(blocking=False):
            return
        try:
            idle = []
            now = time.monotonic()
            with self._lock:
                entries = list(self._entries.values())
            for entry in entries:
                m = entry.transport._m  # the monotonic times (snapshots give wall-clock ones)
                activity = m.messages_received + m.messages_sent
                if activity != entry.activity:
                    entry.activity = activity
                    entry.last_active = now
                last = max(entry.last_active, m.last_message_at or 0.0, m.connected_at or 0.0)
                if now - last >= limit:
                    idle.append(entry.transport)
            for t in idle:
                log.info("%s: closing after %.0f s without messages", t.id, limit)
            self._close_many(idle, "idle", 5.0)
        finally:
            self._cleanup_running.release()

    def _periodic_health(self) -> None:
        """Judge every transport; log and emit ``unhealthy`` for those that just became so."""
        if not self._health_running.acquire(blocking=False):
            return
        try:
            with self._lock:
                entries = list(self._entries.values())
            for entry in entries:
                health = self._judge(entry.transport)
                previous, entry.status = entry.status, health.status
                if health.status == "unhealthy" and previous != "unhealthy":
                    log.warning("%s is unhealthy: %s", entry.transport.id, health.reason)
                    with contextlib.suppress(Exception):  # logged by _dispatch; timers go on
                        self._dispatch("unhealthy", entry.transport, (health,))
        finally:
            self._health_running.release()

    # -- health and metrics -----------------------------------------------------------------

    def health_check(self) -> Dict[str, TransportHealth]:
        """``{id: TransportHealth}`` of every open transport, and of those that failed since the
        previous call (each failure is reported once, by the call that follows it).

        Unhealthy: failed, 3 or more failed attempts in a row (a reconnect loop), or connected but
        stalled (silent for twice its ``idle_timeout``: its own stall detection did not act).
        """
        result = {t.id: self._judge(t) for t in self._transports()}
        with self._lock:
            failed, self._failed = self._failed, {}
        for id, health in failed.items():
            result.setdefault(id, health)
        return result

    @staticmethod
    def _judge(t: BaseTransport) -> TransportHealth:
        health = t.health()
        limit = t.idle_timeout
        idle = health.idle_seconds
        if (
            health.status == "degraded"
            and health.state is TransportState.CONNECTED
            and limit is not None
            and idle is not None
            and idle > _STALL_FACTOR * limit
        ):
            return dataclasses.replace(
                health,
                status="unhealthy",
                reason=f"stalled: no traffic for {idle:.1f} s (idle_timeout {limit:g} s)",
            )
        return health

    def metrics(self) -> TransportMetrics:
        """The transports' metrics together. Counters: summed over every transport the manager
        held (those that left still count); ``buffer_size``: the open ones now.
        ``connected_at`` / ``uptime``: of the open transport connected the longest (``None`` /
        ``0.0`` when none is connected); ``last_message_at``: the latest of the open ones;
        ``latency``: over the recent deliveries of every open transport together;
        ``ping_rtt_ms``: the mean of the open WebSocket transports that measured one.
        """
        transports = self._transports()
        snapshots = [t.metrics for t in transports]
        with self._lock:
            retired = self._retired
        total = TransportMetrics.total([dataclasses.replace(retired, buffer_size=0), *snapshots])
        connected = [
            m
            for t, m in zip(transports, snapshots)
            if t.state is TransportState.CONNECTED and m.connected_at is not None
        ]
        oldest = max(connected, key=lambda m: m.uptime, default=None)
        last = [m.last_message_at for m in snapshots if m.last_message_at is not None]
        rtts = [m.ping_rtt_ms for m in snapshots if m.ping_rtt_ms is not None]
        return dataclasses.replace(
            total,
            connected_at=None if oldest is None else oldest.connected_at,
            uptime=0.0 if oldest is None else oldest.uptime,
            last_message_at=max(last) if last else None,
            latency=latency_summary([s for t in transports for s in list(t._m.latency)]),
            ping_rtt_ms=sum(rtts) / len(rtts) if rtts else None,
        )

    def summary(self) -> Dict[str, Any]:
        """``{"total": n, "by_type": {"sse": 2, ...}, "by_state": {"connected": 3, ...}}``."""
        by_type: Dict[str, int] = {}
        by_state: Dict[str, int] = {}
        transports = self._transports()
        for t in transports:
            kind = _type_name(t)
            by_type[kind] = by_type.get(kind, 0) + 1
            state = t.state.value
            by_state[state] = by_state.get(state, 0) + 1
        return {"total": len(transports), "by_type": by_type, "by_state": by_state}
