"""The base transport: state machine, reconnection, buffering and dispatch.

Every wire is a thin subclass that implements these hooks:

``_open()``          open one connection (raise a ``TransportError`` on failure)
``_read_start()``    once connected: get ready to read without blocking; the socket to watch
                     (``None``: ``_read_blocking()`` reads this connection, on a thread)
``_read_ready()``    read what the socket holds, without blocking, handing the parsed events to
                     ``_publish``; ``None`` while the stream goes on, else ``"done"`` (finished
                     for good) or ``"eof"`` (ended; reconnect)
``_release()``       drop the connection (always called after ``_open`` succeeded)
``_interrupt()``     from any thread: make a blocked ``_open`` return now (shut the socket)

Who runs them: a reader thread of the transport's own (``_read`` waits for the socket between
two ``_read_ready``), or the shared I/O threads and workers (see :mod:`.shared`). Delivery to
the consumers is the ``Delivery`` mixin's (:mod:`.delivery`).
"""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterator, Mapping, Sequence
from typing import (
    Any,
    Callable,
    ClassVar,
    Optional,
    Protocol,
    TypeVar,
    Union,
)

from ..buffer import MessageBuffer
from ..config import BufferConfig, ReconnectPolicy
from ..emitter import EventEmitter
from ..errors import (
    ConnectError,
    HeartbeatTimeout,
    HTTPStatusError,
    NotSupportedError,
    ReconnectFailed,
    TransportClosedError,
    TransportError,
)
from ..events import (
    BufferStrategy,
    Event,
    TransportState,
    TransportType,
)
from ..logs import TransportLog
from ..metrics import MetricsRecorder, TransportHealth, TransportMetrics
from ..redact import redact_url
from ..timers import Scheduler, default_scheduler
from ..validate import check_seconds
from .callbacks import Callbacks
from .delivery import Delivery
from .io_loop import Waiter, run_ended, run_shared
from .iterator import EventIterator, _NotConnectedInTime
from .shared import READ, SharedRunner, Steps

__all__ = ["BaseTransport"]

log = logging.getLogger("aikit_transports")

DONE = "done"
EOF_ = "eof"
_UNHEALTHY_AFTER = 3
#: Whatever the server says (``retry: 0``, a cut after every event), at most this many
#: connection attempts start in any one second.
_MAX_ATTEMPTS_PER_SECOND = 10
#: ``self`` of the calls that return it (``connect()``, ``with``): the subclass for type checkers.
T = TypeVar("T", bound="BaseTransport")
#: How ``TransportClosedError`` tells each ``closed`` reason.
_ENDED = {
    "done": "the stream finished",
    "failed": "it failed",
    "user": "close() was called",
    "manager": "its manager closed it",
    "idle": "its manager closed it after it was idle",
}


class _Runner(Protocol):
    """What runs a transport: its own reader thread, or a :class:`SharedRunner`."""

    def start(self) -> None: ...
    def is_alive(self) -> bool: ...
    def join(self, timeout: Optional[float] = None) -> None: ...


def url_scheme(url: str) -> str:
    """The scheme of ``url``, lower-cased (``""`` when it has none)."""
    return url.split("://", 1)[0].lower() if "://" in url else ""


class BaseTransport(Delivery, Callbacks):
    """What every wire shares: the state machine, reconnection, buffering and dispatch (each
    wire implements the hooks ``_open``, ``_read``, ``_release`` and ``_interrupt``).

    :param url: the endpoint, in a scheme this wire takes; credentials in it are never shown.
    :param headers: request headers sent with every connection attempt.
    :param timeout: seconds allowed to connect and get the server's answer (the response
        headers, the WebSocket handshake).
    :param idle_timeout: seconds without any traffic before the stream counts as stalled
        (``HeartbeatTimeout``, then a reconnect; ``None``: never).
    :param reconnect: the :class:`~aikit_transports.ReconnectPolicy` (``None`` or ``True``: the
        default one; ``False``: never reconnect).
    :param buffer: the receive buffer's size and strategy (``None``: the
        :class:`~aikit_transports.BufferConfig` defaults).
    :param last_event_id: the event id to resume after on the first connection (``None``: none).
    :param verify: verify the server's TLS certificate: ``True``, ``False`` or a CA bundle path.
    :param cert: the TLS client certificate: a file holding certificate and key, or a
        ``(cert, key)`` pair of files (``None``: none).
    :param proxies: proxy URLs by scheme, as ``requests`` takes them (``None``: none given).
    :param redirect_headers: header names that may follow a redirect to another origin (only
        the safe ones do otherwise; never ``Authorization``).
    :param debug: log every line of this transport whatever the logger's level.
    :param id: this transport's id, in its logs, errors and events (``None``: a random one).
    :param scheduler: runs this transport's timers, heartbeats and deadlines (``None``: a
        shared one; a manager passes its own).
    """

    type: ClassVar[TransportType]
    schemes: ClassVar[tuple[str, ...]] = ()
    #: Whether sending the request again is harmless: WebSocket and Redis readers resume by their
    #: own means; the HTTP wires decide by the method unless told (``idempotent=``).
    idempotent: bool = True
    logger_name: ClassVar[str] = "aikit_transports"
    #: Whether the wire can read an open stream without blocking (``_read_start`` and
    #: ``_read_ready``), so that it may run on the shared I/O threads.
    shared_io: ClassVar[bool] = False

    def __init__(
        self,
        url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        timeout: float = 10.0,
        idle_timeout: Optional[float] = 45.0,
        reconnect: Union[ReconnectPolicy, bool, None] = None,
        buffer: Optional[BufferConfig] = None,
        last_event_id: Optional[str] = None,
        verify: Union[bool, str] = True,
        cert: Union[str, tuple[str, str], None] = None,
        proxies: Optional[dict[str, str]] = None,
        redirect_headers: Sequence[str] = (),
        debug: bool = False,
        id: Optional[str] = None,
        scheduler: Optional[Scheduler] = None,
    ) -> None:
        if not isinstance(url, str) or not url:
            raise ValueError("url must be a non-empty string")
        scheme = url_scheme(url)
        if self.schemes and scheme not in self.schemes:
            raise ValueError(
                f"url scheme {scheme or '(none)'!r} is not supported by {type(self).__name__}; "
                f"use one of {', '.join(self.schemes)}"
            )
        check_seconds("timeout", timeout, allow_none=False)
        check_seconds("idle_timeout", idle_timeout)
        if reconnect is not None and not isinstance(reconnect, (ReconnectPolicy, bool)):
            raise ValueError("reconnect must be a ReconnectPolicy, True, False or None")
        if buffer is not None and not isinstance(buffer, BufferConfig):
            raise ValueError("buffer must be a BufferConfig")
        if headers is not None and not hasattr(headers, "items"):
            raise ValueError("headers must be a mapping of names to values")
        if last_event_id is not None and not isinstance(last_event_id, str):
            raise ValueError("last_event_id must be a string")
        if not isinstance(verify, (bool, str)):
            raise ValueError("verify must be True, False or a CA bundle path")
        if isinstance(redirect_headers, str) or not all(
            isinstance(name, str) and name for name in redirect_headers
        ):
            raise ValueError("redirect_headers must be a sequence of header names")
        if any(name.lower() == "authorization" for name in redirect_headers):
            raise ValueError("redirect_headers cannot name Authorization: it stays with its origin")
        self.id: str = id or uuid.uuid4().hex[:12]
        self.url = url
        self.safe_url: str = redact_url(url) or ""
        self.headers: dict[str, str] = dict(headers or {})
        self.timeout = float(timeout)
        self.idle_timeout = idle_timeout
        if reconnect is False:
            reconnect = ReconnectPolicy(max_attempts=0)
        elif reconnect is None or reconnect is True:
            reconnect = ReconnectPolicy()
        self.policy: ReconnectPolicy = reconnect
        self.buffer_config = buffer or BufferConfig()
        self._initial_event_id = last_event_id
        self.verify = verify
        self.cert = cert
        self.proxies = proxies
        self.redirect_headers: tuple[str, ...] = tuple(n.lower() for n in redirect_headers)
        self.debug = debug
        self.log = TransportLog(logging.getLogger(self.logger_name), debug)
        self._scheduler = scheduler

        self._state = TransportState.IDLE
        self._state_cond = threading.Condition()
        self._stop = threading.Event()
        self._reader: Optional[_Runner] = None
        self._io: Optional[SharedRunner] = None  # the runner, when on the shared I/O threads
        self._failure: Optional[TransportError] = None
        self._failure_announced = False
        self._closed_reason: Optional[str] = None
        self._pending_close: Optional[str] = None
        # ``closed`` left to a reader stuck in a callback (see _end), and whether it is gone
        self._announce_lock = threading.Lock()
        self._unannounced: Optional[str] = None
        self._reader_done = False
        self._attempt = 0  # failed attempts in a row
        self._data_seen = False
        # Since when the reader waits for bytes (None while it delivers, or rests for a full
        # buffer): a WebSocket heartbeat deadline only counts that time.
        self._waiting_since: Optional[float] = None
        self._last_error: Optional[TransportError] = None  # of the last failed attempt
        # when the last attempts started (a list: a deque costs 760 bytes per transport)
        self._attempt_starts: list[float] = []
        # Ids of recently delivered events (wires that resume by id keep them, see _publish),
        # and while a resumed response may replay, the ids it must not deliver again.
        self._recent_ids: Optional[deque[Optional[str]]] = None
        self._replay_ids: Optional[set[Optional[str]]] = None

        self._emitter = EventEmitter(self._listener_failed)
        self._dispatch_lock = threading.RLock()
        self._consumers_lock = threading.Lock()
        self._consumers: list[MessageBuffer[Event]] = []
        self._pending: Optional[MessageBuffer[Event]] = self._new_buffer()
        self._targets: tuple[MessageBuffer[Event], ...] = (self._pending,)
        self._listener_buf: Optional[MessageBuffer[Event]] = None
        self._listeners_lock = threading.Lock()
        self._retired_dropped = 0
        self._paused = False
        self._pause_cond = self._state_cond  # one condition serves both waits
        self._m = MetricsRecorder()
        # Called with each batch once a consumer took it (listeners returned, or an iterator
        # asked for the next event): wires that acknowledge deliveries (Redis groups) set it.
        self._delivered: Optional[Callable[[Sequence[Event]], None]] = None

    # -- public API ---------------------------------------------------------------------

    @property
    def state(self) -> TransportState:
        """The current :class:`TransportState`."""
        return self._state

    def is_connected(self) -> bool:
        """Whether a connection is open right now."""
        return self._state is TransportState.CONNECTED

    def connect(self: T, timeout: Optional[float] = None) -> T:
        """Open the stream; block until connected, or raise why it failed.

        Retryable failures are retried by the policy first (``ReconnectFailed`` when attempts
        run out). ``timeout`` only bounds the wait: on ``ConnectError("not connected within
        ...")``, whose ``__cause__`` is the last attempt's error, the transport keeps trying in
        the background until closed.

        :param timeout: the most seconds to wait (``None``: as long as it takes).
        """
        if self._on_own_thread():
            raise RuntimeError("connect() cannot be called from the transport's own callbacks")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._state_cond:
            if self._ended():
                self._raise_terminal(reuse=True)
            if self._reader is None:
                self._set_state(TransportState.CONNECTING)
                self._reader = self._new_runner()
                self._reader.start()
            while self._state is not TransportState.CONNECTED:
                if self._ended():
                    self._raise_terminal()
                    return self
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise self._not_connected_in_time(timeout)
                self._state_cond.wait(remaining)
        return self

    def _not_connected_in_time(self, timeout: Optional[float]) -> ConnectError:
        last = self._last_error
        detail = f" (last attempt: {last.message})" if last is not None else ""
        error = _NotConnectedInTime(f"not connected within {timeout} s{detail}")
        error.with_context(transport_id=self.id, url=self.safe_url, attempt=self._attempt)
        error.__cause__ = last
        return error

    def _ended(self) -> bool:
        """Whether the transport ended; a failure counts once it was announced in full
        (``error`` and ``closed``), so that ``connect()`` raises after its listeners ran."""
        reason = self._closed_reason
        if self._failure is not None and reason in (None, "failed"):
            return self._failure_announced
        return reason is not None

    def _raise_terminal(self, *, reuse: bool = False) -> None:
        """Why ``connect()`` cannot (or need not) wait. One that ended while ``connect()``
        waited raises its failure, or returns when it finished (``done``: its events stay
        buffered for the iterator). A transport that had already ended when ``connect()`` was
        called (``reuse``) is never started again: ``TransportClosedError`` saying why it
        ended (its ``__cause__`` the failure, if it failed), unless it finished with events
        still unread (a stream that ended between ``connect()`` and ``with``, say)."""
        if not reuse and self._failure is not None:
            raise self._failure
        if self._closed_reason == "done" and (not reuse or any(len(buf) for buf in self._targets)):
            return
        reason = self._closed_reason or "failed"
        failure = self._failure
        why = _ENDED.get(reason, reason)
        if failure is not None:
            why = f"{why}: {failure.message}"
        error = TransportClosedError(
            f"transport has ended ({why}); create a new transport to connect again",
            reason=reason,
            transport_id=self.id,
            url=self.safe_url,
        )
        raise error from failure

    def wait(self, timeout: Optional[float] = None) -> Optional[str]:
        """Block until the transport is closed; the ``closed`` reason (``"done"``, ``"failed"``,
        ``"user"``, ...), or ``None`` when ``timeout`` seconds passed first.

        The blocking call of callback users (``websocket-client``'s ``run_forever()``):
        register listeners, ``connect()``, then ``wait()``. Once it returns, the reader thread
        has ended, unless the timeout ran out meanwhile (so when the stream ended by itself,
        its ``closed`` listeners have run).

        :param timeout: the most seconds to wait (``None``: as long as it takes).
        """
        if self._on_own_thread():
            raise RuntimeError("wait() cannot be called from the transport's own callbacks")
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._state_cond:
            if not self._state_cond.wait_for(lambda: self._closed_reason is not None, timeout):
                return None
            reason = self._closed_reason
        reader = self._reader
        if reader is not None and not self._on_own_thread():
            reader.join(None if deadline is None else max(0.0, deadline - time.monotonic()))
        return reason

    def iter_events(self, timeout: Optional[float] = None) -> EventIterator:
        """Iterate over events in arrival order, in the caller's thread (connects if needed).

        The iterator is registered at once, so it misses nothing from this call on.
        ``timeout`` bounds the wait for each event (then ``TimeoutError``).

        :param timeout: the most seconds to wait for each event, connecting included (``None``:
            no limit).
        """
        if timeout is not None:
            check_seconds("timeout", timeout)
        return EventIterator(self, timeout)

    def __iter__(self) -> Iterator[Event]:
        return self.iter_events()

    def send(self, data: Any, timeout: Optional[float] = None) -> None:
        """Send a message upstream (see each wire); this wire cannot.

        :param data: the message.
        :param timeout: the most seconds the wire may wait to send it (see each wire).
        """
        raise NotSupportedError(
            f"{type(self).__name__} cannot send", transport_id=self.id, url=self.safe_url
        )

    def pause(self) -> None:
        """Stop delivering to consumers; the reader keeps buffering by the buffer strategy."""
        with self._pause_cond:
            self._paused = True

    def resume(self) -> None:
        """Deliver again, starting with what was buffered meanwhile."""
        with self._pause_cond:
            self._paused = False
            self._pause_cond.notify_all()
        listener_buf = self._listener_buf
        if listener_buf is not None:
            listener_buf.interrupt_put()  # a reader waiting for room delivers the backlog itself
            if self._io is not None:
                self._io.pump()
            elif listener_buf:
                # A reader blocked in a read would deliver it only with the next event: the
                # shared timer thread (or the manager's pool) delivers it now instead.
                self._scheduler_or_default().call_later(
                    0, lambda: self._pump_listeners(listener_buf)
                )

    @property
    def last_event_id(self) -> Optional[str]:
        """The id a reconnect resumes from: the last one seen, else the one given at start."""
        return self._current_event_id()

    @property
    def paused(self) -> bool:
        """Whether delivery is paused."""
        return self._paused

    def close(self, timeout: float = 5.0) -> None:
        """Stop, release the connection and join every thread; idempotent, from any thread.

        :param timeout: seconds to wait for the WebSocket send queue to flush and the reader
            thread to stop.
        """
        self._close("user", timeout)

    @property
    def metrics(self) -> TransportMetrics:
        """A snapshot of the counters."""
        with self._consumers_lock:
            buffers = list(self._targets)
        return self._m.snapshot(
            dropped=self._retired_dropped + sum(b.dropped for b in buffers),
            buffer_size=sum(len(b) for b in buffers),
            connected=self._state is TransportState.CONNECTED,
        )

    def health(self) -> TransportHealth:
        """Healthy, degraded or unhealthy, with the reason (:class:`TransportHealth`)."""
        state = self._state
        now = time.monotonic()
        last = self._m.last_traffic_at
        idle = None if last is None else now - last
        if state is TransportState.ERROR:
            reason = str(self._failure.message) if self._failure is not None else "failed"
            return TransportHealth("unhealthy", state, idle, reason)
        if self._attempt >= _UNHEALTHY_AFTER:
            return TransportHealth(
                "unhealthy", state, idle, f"{self._attempt} failed attempts in a row"
            )
        if state in (TransportState.CONNECTING, TransportState.RECONNECTING):
            return TransportHealth("degraded", state, idle, f"{state.value}")
        if state is TransportState.CONNECTED:
            limit = self._health_idle_limit()
            if (
                limit is not None
                and idle is not None
                and idle > limit
                and not self._reader_blocked()
            ):
                return TransportHealth("degraded", state, idle, f"no traffic for {idle:.1f} s")
            return TransportHealth("healthy", state, idle, None)
        if state is TransportState.IDLE:
            return TransportHealth("degraded", state, idle, "not connected yet")
        return TransportHealth("unhealthy", state, idle, f"closed ({self._closed_reason})")

    def _health_idle_limit(self) -> Optional[float]:
        return self.idle_timeout

    def _reader_blocked(self) -> bool:
        """Whether the reader waits for buffer room (so silence is ours, not the server's)."""
        return any(
            len(b) >= b.max_size and b.strategy is BufferStrategy.BLOCK for b in self._targets
        )

    def __enter__(self: T) -> T:
        self.connect()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} id={self.id} url={self.safe_url} state={self._state.value}>"

    # -- state and callbacks --------------------------------------------------------------

    def _set_state(self, state: TransportState) -> None:
        with self._state_cond:
            self._state = state
            self._state_cond.notify_all()
        if self.debug:
            self.log.debug("%s: state %s", self.id, state.value)

    def _emit(self, name: str, *args: Any) -> None:
        if self._emitter.has_listeners(name):
            io = self._io
            if io is not None and io.loop.on_loop():
                # never a user's callback on an I/O thread: on the transport's serial queue
                io.defer(lambda: self._emit(name, *args))
                return
            with self._dispatch_lock:
                self._emitter.emit(name, *args)

    def _listener_failed(self, exc: BaseException, name: str) -> None:
        error = (
            exc
            if isinstance(exc, TransportError)
            else TransportError(f"a listener of {name!r} raised {type(exc).__name__}: {exc}")
        )
        error.with_context(transport_id=self.id, url=self.safe_url, attempt=self._attempt)
        if error is not exc:
            error.__cause__ = exc
        self._m.errors += 1
        self._emitter.emit("error", error)

    def _error(self, error: TransportError, *, logged: bool = True) -> TransportError:
        """Count and emit ``error`` (and log it, unless the caller logs it its own way)."""
        error.with_context(transport_id=self.id, url=self.safe_url, attempt=self._attempt)
        self._m.errors += 1
        if logged:
            self.log.warning("%s: %s", self.id, error)
        self._emit("error", error)
        return error

    # -- the attempts ---------------------------------------------------------------------

    def _new_runner(self) -> _Runner:
        """The shared I/O threads when the wire reads without blocking and the process uses
        them (see :mod:`.shared` and :func:`.io_loop.run_shared`), else a reader thread of the
        transport's own."""
        shared = run_shared()
        if self.shared_io and shared:
            self._io = SharedRunner(self)
            return self._io
        return threading.Thread(
            target=self._run, name=f"aikit-{self.type.value}-{self.id}", daemon=True
        )

    def _on_own_thread(self) -> bool:
        """Whether the caller runs the transport's own steps or callbacks (its reader thread)."""
        reader = self._reader
        if self._io is not None:
            return self._io.is_current()
        return reader is not None and reader is threading.current_thread()

    def _run(self) -> None:
        """The reader thread: the attempts of ``_loop``, with its reads and waits done here."""
        steps = self._loop()
        sent: Optional[str] = None
        thrown: Optional[BaseException] = None
        try:
            while True:
                step = steps.throw(thrown) if thrown is not None else steps.send(sent)
                sent = thrown = None
                if step == READ:
                    try:
                        sent = self._read()
                    except Exception as exc:
                        thrown = exc
                else:
                    assert isinstance(step, float)
                    self._stop.wait(step)
        except StopIteration:
            self._run_ended(None)
        except BaseException as exc:
            self._run_ended(exc)

    def _run_ended(self, exc: Optional[BaseException]) -> None:
        """The attempts ended (``exc``: how, when they raised): a bug of ours still ends the
        transport cleanly; then the reader's last words."""
        try:
            if exc is not None and not isinstance(exc, TransportClosedError):
                log.error("%s: reader crashed", self.id, exc_info=exc)
                err = TransportError(f"internal error: {type(exc).__name__}: {exc}")
                err.__cause__ = exc
                self._fail(err)
        finally:
            run_ended()
            self._reader_exited()

    def _loop(self) -> Steps:
        """The connection attempts, as steps for whoever runs the transport: yields ``READ``
        to have the open stream read (and is sent the outcome, or has its error thrown in), or
        the seconds to wait before going on (a wait that ``_stop`` cuts short)."""
        policy = self.policy
        while not self._stop.is_set():
            pause = self._attempt_pause()
            if pause > 0:
                self.log.debug("%s: pacing reconnects: waiting %.2f s", self.id, pause)
                yield pause
                if self._stop.is_set():
                    return
            starts = self._attempt_starts
            starts.append(time.monotonic())
            del starts[:-_MAX_ATTEMPTS_PER_SECOND]
            self._emit("connecting")
            outcome: Union[str, TransportError, None]
            self._data_seen = False
            try:
                opened = self._open()
            except Exception as exc:
                outcome = self._as_error(exc, connecting=True)
            else:
                try:
                    if opened == DONE:  # an answer that ends the stream before it opened (204)
                        outcome = DONE
                    else:
                        self._connected()
                        outcome = yield READ
                except TransportClosedError:
                    if self._stop.is_set():
                        return
                    raise
                except Exception as exc:
                    outcome = self._as_error(exc, connecting=False)
                finally:
                    self._release()
            if self._stop.is_set() or self._pending_close is not None:
                return
            if outcome == DONE:
                self._finish()
                return
            ended = isinstance(outcome, str)  # "eof": the server ended the stream
            if ended:
                if not self._reconnect_on_eof():
                    self._finish()
                    return
                error: TransportError = ConnectError("stream ended by the server", retryable=True)
            else:
                assert isinstance(outcome, TransportError)
                error = outcome
            self._attempt += 1
            error.with_context(transport_id=self.id, url=self.safe_url, attempt=self._attempt)
            self._last_error = error
            failure = self._why_not_again(error, ended=ended)
            if failure is not None:
                self._fail(failure)
                return
            if not ended:
                self._error(error, logged=False)
            delay = policy.delay(
                self._attempt,
                server_retry_ms=self._server_retry_ms(),
                retry_after=getattr(error, "retry_after", None),
            )
            self._m.reconnect_attempts += 1
            self._set_state(
                TransportState.CONNECTING
                if self._m.connected_at is None
                else TransportState.RECONNECTING
            )
            self.log.warning(
                "%s: attempt %d failed: %s; next attempt in %.2f s",
                self.id,
                self._attempt,
                error,
                delay,
            )
            self._emit("reconnecting", self._attempt, delay, error)
            yield float(delay)
            if self._stop.is_set():
                return

    def _why_not_again(self, error: TransportError, *, ended: bool) -> Optional[TransportError]:
        """The error that ends the transport instead of another attempt after ``error``, or
        ``None`` when the request may go out again (the rules of "what is sent again")."""
        policy = self.policy
        if not policy.should_retry(error):
            return error
        refused = self._resend_refused(error, ended=ended)
        if refused is not None:
            return refused
        retry_after = getattr(error, "retry_after", None)
        if (
            isinstance(error, HTTPStatusError)
            and retry_after is not None
            and retry_after > policy.max_retry_after
        ):
            too_long = HTTPStatusError(
                f"{error.message}: the server asked to wait {retry_after:.0f} s "
                f"(Retry-After), longer than max_retry_after ({policy.max_retry_after:g} s)",
                status_code=error.status_code,
                retry_after=retry_after,
                headers=error.headers,
                body=error.body,
                retryable=False,
            )
            too_long.with_context(transport_id=self.id, url=self.safe_url, attempt=self._attempt)
            return too_long
        if not policy.allows(self._attempt):
            failed = ReconnectFailed(
                f"gave up after {self._attempt - 1} reconnection attempts: {error.message}",
                transport_id=self.id,
                url=self.safe_url,
                attempt=self._attempt,
            )
            failed.__cause__ = error
            return failed
        return None

    def _resend_refused(self, error: TransportError, *, ended: bool) -> Optional[TransportError]:
        """Why the request may not be sent again after ``error`` (``None``: it may). Wires whose
        requests may repeat output (an HTTP POST) refuse; WebSocket and Redis resume by their
        own means."""
        return None

    def _attempt_pause(self) -> float:
        """Seconds to wait so that at most ``_MAX_ATTEMPTS_PER_SECOND`` attempts start in any
        one second, whatever the server asks for (``retry: 0``, a cut after every event)."""
        starts = self._attempt_starts
        if len(starts) < _MAX_ATTEMPTS_PER_SECOND:
            return 0.0
        return starts[0] + 1.0 - time.monotonic()

    def _as_error(self, exc: BaseException, *, connecting: bool) -> TransportError:
        if isinstance(exc, TransportError):
            error = exc
        else:
            error = self._translate(exc, connecting=connecting)
        return error.with_context(
            transport_id=self.id, url=self.safe_url, attempt=self._attempt + 1
        )

    def _translate(self, exc: BaseException, *, connecting: bool) -> TransportError:
        """Turn a library exception into a typed error (wires refine this)."""
        what = "connection failed" if connecting else "connection lost"
        error = ConnectError(f"{what}: {type(exc).__name__}: {exc}", retryable=True)
        error.__cause__ = exc
        return error

    def _connected(self) -> None:
        now = time.monotonic()
        if self._m.connected_at is not None:
            self._m.reconnects += 1
        self._m.connected_at = now
        self._m.last_traffic_at = now
        self._set_state(TransportState.CONNECTED)
        self.log.info("%s: connected to %s", self.id, self.safe_url)
        self._emit("connected")

    def _reconnect_on_eof(self) -> bool:
        return True

    def _finish(self) -> None:
        """The stream finished for good: ``done``, then ``closed("done")``."""
        self._close_consumers()
        self._emit("done")
        self._end("done", TransportState.CLOSED)

    def _fail(self, error: TransportError) -> None:
        """A failure that ends the transport: ``error``, state ERROR, ``closed("failed")``."""
        with self._state_cond:
            self._failure = error
        self._error(error)
        self._close_consumers()
        self._end("failed", TransportState.ERROR)

    def _end(self, reason: str, state: TransportState, *, announce: bool = True) -> None:
        """Enter the final state. ``announce=False`` (``close()`` while the reader is stuck in
        a callback, holding the dispatch lock): ``closed`` is emitted by the reader once it
        unwinds, so that ``close()`` returns in time instead of waiting for that callback."""
        with self._state_cond:
            if self._closed_reason is not None:
                return
            self._closed_reason = reason
            self._state = state
            self._state_cond.notify_all()
        self._stop.set()
        self._on_stopped()
        if announce:
            self._emit("closed", reason)
            if self._failure is not None:
                with self._state_cond:
                    self._failure_announced = True
                    self._state_cond.notify_all()
            return
        with self._announce_lock:
            if not self._reader_done:
                self._unannounced = reason
                return
        self._emit("closed", reason)  # the reader left meanwhile

    def _reader_exited(self) -> None:
        """Last words of the reader: a close requested from inside a callback is completed
        here, and a ``closed`` that ``close()`` left to it is emitted."""
        reason = self._pending_close
        if reason is not None and self._closed_reason is None:
            self._end(reason, TransportState.CLOSED)
        with self._announce_lock:
            self._reader_done = True
            unannounced, self._unannounced = self._unannounced, None
        if unannounced is not None:
            self._emit("closed", unannounced)

    def _close(self, reason: str, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + max(0.0, timeout)
        with self._state_cond:
            if self._closed_reason is not None:
                if self._state is TransportState.ERROR and reason == "user":
                    self._state = TransportState.CLOSED
                reader = self._reader
                already = True
            else:
                already = False
                self._pending_close = reason
                reader = self._reader
        if not already:
            self._before_close(deadline)
        self._stop.set()
        self._close_consumers()
        with self._pause_cond:
            self._pause_cond.notify_all()
        if reader is not None and reader.is_alive():
            try:
                self._interrupt()
            except Exception:
                log.debug("%s: interrupt failed", self.id, exc_info=True)
            if self._io is not None:
                self._io.wake()
            if self._on_own_thread():
                return  # inside a callback: the reader finishes the close when it unwinds
            reader.join(max(0.0, deadline - time.monotonic()) + 0.5)
            if reader.is_alive():
                self.log.warning("%s: reader thread did not stop within %.1f s", self.id, timeout)
        if not already:
            # A reader still alive is stuck in a callback: it emits ``closed`` when it returns.
            stuck = reader is not None and reader.is_alive()
            self._end(reason, TransportState.CLOSED, announce=not stuck)

    # -- hooks for the wires --------------------------------------------------------------

    def _open(self) -> Optional[str]:
        """Open one connection; ``"done"`` when the answer ends the stream before it opens."""
        raise NotImplementedError

    def _read(self) -> str:
        """The reader thread's read of the open stream: ``_read_ready`` whenever the socket has
        bytes, waiting for them in between (a poll: no read buffer is held while the stream is
        quiet); the wire's own ``_read_blocking`` for a connection it cannot read so."""
        sock = self._read_start()
        if sock is None:
            return self._read_blocking()
        limit = self._stall_limit()
        waiter = Waiter(sock)
        stop = self._stop
        monotonic = time.monotonic
        while not stop.is_set():
            outcome = self._read_ready()
            if outcome is not None:
                return outcome
            self._waiting_since = monotonic()
            readable = waiter.wait(limit)
            self._waiting_since = None
            if not readable:  # ``limit`` of silence, unless traffic came just before the wait
                last = self._m.last_traffic_at
                if limit is not None and (last is None or monotonic() - last >= limit):
                    raise self._stall_error()
        return EOF_

    def _read_blocking(self) -> str:
        """Read a connection that ``_read_start`` cannot read without blocking (on a thread)."""
        raise NotImplementedError

    def _release(self) -> None:
        """Drop the current connection."""

    def _interrupt(self) -> None:
        """Wake a reader blocked in I/O (called from another thread)."""

    def _read_start(self) -> Optional[socket.socket]:
        """On an I/O thread, once connected: get ready to read without blocking; the socket to
        watch (``None``: this connection is read by ``_read`` on a thread of its own)."""
        return None

    def _read_ready(self) -> Optional[str]:
        """On an I/O thread, when the socket is readable: read what is there without blocking,
        as ``_read`` does; ``None`` while the stream goes on, else its outcome."""
        raise NotImplementedError

    def _stall_limit(self) -> Optional[float]:
        """Seconds of silence after which an open stream counts as stalled (``None``: never;
        WebSocket heartbeats keep their own deadlines)."""
        return None

    def _stall_error(self) -> TransportError:
        """The error that ends a stalled stream."""
        return HeartbeatTimeout(f"no data for {self._stall_limit()} s: stream stalled")

    def _before_close(self, deadline: float) -> None:
        """Work to do before the connection goes (the WebSocket send queue is flushed here)."""

    def _on_stopped(self) -> None:
        """The transport ended (timers and shared helpers are released here)."""

    def _current_event_id(self) -> Optional[str]:
        return self._initial_event_id

    def _resume_from(self, event_id: Optional[str]) -> None:
        """Before ``connect()``: start after ``event_id``, as if given as ``last_event_id``
        (a Redis relay that takes over resumes the upstream where the previous one stopped)."""
        self._initial_event_id = event_id

    def _server_retry_ms(self) -> Optional[int]:
        """The reconnection time the server asked for (SSE ``retry:``), if any."""
        return None

    def _scheduler_or_default(self) -> Scheduler:
        if self._io is not None:
            return self._io.loop  # the I/O thread's own timer heap
        return self._scheduler or default_scheduler()

    def _traffic(self) -> None:
        """Note that bytes arrived (data, comment or pong): the stream is alive."""
        self._m.last_traffic_at = time.monotonic()
