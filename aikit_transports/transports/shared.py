"""Running a transport on the shared I/O threads instead of a reader thread of its own.

A :class:`SharedRunner` takes the place of the reader thread. The transport's connection
attempts (the generator ``BaseTransport._loop``) and every callback of the transport run on the
shared :class:`~.io_loop.Workers`, one at a time and in order (a per-transport serial queue: the
transport's "own thread", which moves between workers); while a stream is open its socket sits in
an :class:`~.io_loop.IOLoop`'s selector, which reads whatever is there without blocking and hands
the events to the consumers. Waits (reconnect delays, stall deadlines, heartbeats) are timers in
that loop's heap.

Backpressure keeps its meaning: when a ``block`` buffer cannot take a batch, the rest is held and
the socket leaves the selector (TCP then pushes back on that server only) until the consumer
makes room. A wire that cannot read an open stream without blocking (long polling, an encoding
only urllib3 decodes) reads it on a thread of its own for that connection.
"""

from __future__ import annotations

import enum
import functools
import logging
import socket
import threading
import time
from collections.abc import Generator, Sequence
from typing import Any, Callable, ClassVar, Optional, Protocol, Union

from ..buffer import MessageBuffer
from ..errors import TransportClosedError, TransportError
from ..events import Event
from ..timers import TimerHandle
from .io_loop import IOLoop, Workers, release_loop, shared_loop, shared_workers

__all__ = ["READ", "SharedRunner", "Steps"]

log = logging.getLogger("aikit_transports")

#: What ``_loop`` yields to have the open stream read (answered with the outcome); a float it
#: yields is a number of seconds to wait.
READ = "read"
#: The connection attempts of a transport: yields ``READ`` or seconds to wait, is sent the outcome
#: of each read (or has its exception thrown in).
Steps = Generator[Union[float, str], Optional[str], None]
#: The most calls one turn of a transport's serial queue runs before letting others have the worker.
_TURN = 64


class _Driven(Protocol):
    """What the runner needs of a transport (``BaseTransport``: see its hooks)."""

    id: str
    type: ClassVar[Any]
    _stop: threading.Event
    _listener_buf: Optional[MessageBuffer[Event]]
    _m: Any
    _waiting_since: Optional[float]

    def _loop(self) -> Steps: ...
    def _run_ended(self, exc: Optional[BaseException]) -> None: ...
    def _read_blocking(self) -> str: ...
    def _read_start(self) -> Optional[socket.socket]: ...
    def _read_ready(self) -> Optional[str]: ...
    def _stall_limit(self) -> Optional[float]: ...
    def _stall_error(self) -> TransportError: ...
    def _reader_blocked(self) -> bool: ...
    def _pump_listeners(self, buf: MessageBuffer[Event]) -> None: ...


class _Phase(enum.Enum):
    STEPPING = 1  # the attempts generator runs (or is queued to) on the serial queue
    WAITING = 2  # a timer of the loop will resume it
    READING = 3  # the socket is in the selector
    HELD = 4  # a buffer is full: the socket left the selector until there is room
    BLOCKING = 5  # a thread of its own reads this connection


class SharedRunner:
    """Stands in for a transport's reader thread (``start``, ``is_alive``, ``join``), running it
    on the shared workers and an I/O loop (see the module)."""

    def __init__(self, transport: _Driven) -> None:
        self._t = transport
        self.loop: IOLoop = shared_loop()
        self._workers: Workers = shared_workers()
        self._workers.hold()
        self._steps = transport._loop()
        self._done = threading.Event()
        # the serial queue (any thread, under _lock)
        self._lock = threading.Lock()
        self._calls: list[Callable[[], object]] = []  # short: a deque would cost 760 bytes
        self._serving = False
        self._owner: Optional[int] = None
        self._pump_queued = False
        # the read side (the loop's thread only)
        self._phase = _Phase.STEPPING
        self._sock: Optional[socket.socket] = None
        self._registered = False
        self._timer: Optional[TimerHandle] = None
        self._stall: Optional[TimerHandle] = None
        self._again: Optional[TimerHandle] = None  # a read put off (see read_again)
        self._held: list[tuple[MessageBuffer[Event], Sequence[Event]]] = []
        self._outcome: Optional[tuple[Optional[str], Optional[BaseException]]] = None
        self._blocking: Optional[threading.Thread] = None

    # -- in place of a thread ---------------------------------------------------------

    def start(self) -> None:
        self.defer(self._step)

    def is_alive(self) -> bool:
        return not self._done.is_set()

    def join(self, timeout: Optional[float] = None) -> None:
        self._done.wait(timeout)
        thread = self._blocking
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def is_current(self) -> bool:
        """Whether the caller runs this transport's steps or callbacks right now."""
        return self._owner == threading.get_ident() or (
            self._blocking is threading.current_thread()
        )

    def waiting(self) -> bool:
        """Whether the open stream waits for bytes in the loop's selector."""
        return self._phase is _Phase.READING and self._registered

    def wake(self) -> None:
        """The transport is stopping: end a wait or a read now (any thread)."""
        self.loop.call_soon(self._woken)

    # -- the serial queue -------------------------------------------------------------

    def defer(self, call: Callable[[], object]) -> None:
        """Run ``call`` on the transport's serial queue, after what is queued (any thread)."""
        with self._lock:
            self._calls.append(call)
            if self._serving:
                return
            self._serving = True
        self._workers.submit(self._serve)

    def _serve(self) -> None:
        calls = self._calls
        for _ in range(_TURN):
            with self._lock:
                if not calls:
                    self._owner = None
                    self._serving = False
                    return
                call = calls.pop(0)
                self._owner = threading.get_ident()
            try:
                call()
            except Exception:  # a bug of ours: the queue must go on
                log.exception("%s: a queued call failed", self._t.id)
        with self._lock:
            self._owner = None
        self._workers.submit(self._serve)  # the others get a turn first

    def pump(self) -> None:
        """Deliver what waits in the listeners' buffer, on the serial queue (any thread)."""
        with self._lock:
            if self._pump_queued:
                return
            self._pump_queued = True
        self.defer(self._pump)

    def _pump(self) -> None:
        with self._lock:
            self._pump_queued = False
        buf = self._t._listener_buf
        if buf is not None:
            self._t._pump_listeners(buf)

    # -- the attempts -----------------------------------------------------------------

    def _step(self, sent: Optional[str] = None, thrown: Optional[BaseException] = None) -> None:
        try:
            step = self._steps.throw(thrown) if thrown is not None else self._steps.send(sent)
        except StopIteration:
            self._finished(None)
            return
        except BaseException as exc:
            self._finished(exc)
            return
        if step == READ:
            self.loop.call_soon(self._start_reading)
        else:
            assert isinstance(step, float)
            self.loop.call_soon(functools.partial(self._start_wait, step))

    def _finished(self, exc: Optional[BaseException]) -> None:
        try:
            self._t._run_ended(exc)
        finally:
            release_loop(self.loop)
            self._workers.release()
            self._done.set()

    def _resume(self, sent: Optional[str], thrown: Optional[BaseException]) -> None:
        """Back to the attempts, after what the serial queue holds (the events read go first)."""
        self._phase = _Phase.STEPPING
        self.defer(functools.partial(self._step, sent, thrown))

    # -- on the loop's thread ---------------------------------------------------------

    def _start_wait(self, delay: float) -> None:
        if self._t._stop.is_set():
            self._resume(None, None)
            return
        self._phase = _Phase.WAITING
        self._timer = self.loop.call_later(delay, self._wait_over)

    def _wait_over(self) -> None:
        self._timer = None
        if self._phase is _Phase.WAITING:
            self._resume(None, None)

    def _woken(self) -> None:
        phase = self._phase
        if phase is _Phase.WAITING:
            timer, self._timer = self._timer, None
            if timer is not None:
                timer.cancel()
            self._resume(None, None)
        elif phase in (_Phase.READING, _Phase.HELD):
            self._held.clear()
            self._outcome = None
            self._end_read("eof", None)

    def _start_reading(self) -> None:
        t = self._t
        if t._stop.is_set():
            self._resume("eof", None)
            return
        try:
            sock = t._read_start()
        except BaseException as exc:
            self._resume(None, exc)
            return
        if sock is None:
            self._read_blocking()
            return
        self._sock = sock
        self._phase = _Phase.READING
        t._waiting_since = time.monotonic()
        self._arm_stall(t._stall_limit())
        self._readable()
        if self._phase is _Phase.READING:
            self._register()

    def _register(self) -> None:
        if not self._registered and self._again is None and self._sock is not None:
            try:
                self.loop.add_reader(self._sock, self._readable)
            except (ValueError, OSError) as exc:  # closed meanwhile
                self._end_read(None, exc)
                return
            self._registered = True

    def _unregister(self) -> None:
        if self._registered and self._sock is not None:
            self.loop.remove_reader(self._sock)
        self._registered = False

    def _readable(self) -> None:
        """The socket has bytes (or its end): read what is there."""
        try:
            outcome = self._t._read_ready()
        except BaseException as exc:
            self._read_over(None, exc)
            return
        if outcome is not None:
            self._read_over(outcome, None)
        elif self._held:
            self._rest()

    def _read_over(self, outcome: Optional[str], exc: Optional[BaseException]) -> None:
        """The read ended; events still held for a full buffer are delivered first."""
        if self._held:
            self._outcome = (outcome, exc)
            self._rest()
            return
        self._end_read(outcome, exc)

    def _rest(self) -> None:
        """A full buffer: the socket leaves the selector until there is room."""
        self._unregister()
        self._phase = _Phase.HELD
        self._t._waiting_since = None

    def _end_read(self, outcome: Optional[str], exc: Optional[BaseException]) -> None:
        self._unregister()
        self._sock = None
        self._t._waiting_since = None
        for timer in (self._stall, self._again):
            if timer is not None:
                timer.cancel()
        self._stall = self._again = None
        self._resume(outcome, exc)

    def read_again(self, delay: float) -> None:
        """Read in ``delay`` seconds rather than when the socket is next readable (the loop's
        thread: a read that could not take a lock it must not wait for)."""
        self._unregister()
        if self._again is None:
            self._again = self.loop.call_later(delay, self._read_put_off)

    def _read_put_off(self) -> None:
        self._again = None
        if self._phase is _Phase.READING:
            self._readable()
            if self._phase is _Phase.READING:
                self._register()

    def holding(self) -> bool:
        """Whether events wait for room (reading pauses until there is)."""
        return bool(self._held)

    def hold(self, buf: MessageBuffer[Event], rest: Sequence[Event]) -> None:
        """``buf`` could not take ``rest``: keep it until there is room (loop's thread)."""
        self._held.append((buf, rest))

    def room(self) -> None:
        """A consumer made room (any thread): held events go on, and reading resumes."""
        self.loop.call_soon(self._retry_held)

    def _retry_held(self) -> None:
        if self._phase is not _Phase.HELD:
            return
        held, self._held = self._held, []
        listeners = self._t._listener_buf
        for buf, rest in held:
            try:
                stored = buf.put_many(rest, 0)
            except TransportClosedError:
                continue
            if stored < len(rest):
                self._held.append((buf, rest[stored:]))
            if buf is listeners:
                self.pump()
        if self._held:
            return
        pending, self._outcome = self._outcome, None
        if pending is not None:
            self._end_read(*pending)
            return
        self._phase = _Phase.READING
        self._t._waiting_since = time.monotonic()
        self._readable()
        if self._phase is _Phase.READING:
            self._register()

    def _arm_stall(self, after: Optional[float]) -> None:
        if after is not None:
            self._stall = self.loop.call_later(after, self._stall_check)

    def _stall_check(self) -> None:
        """No traffic for the stall limit (and not for our own backpressure): the stream stalled."""
        self._stall = None
        t = self._t
        limit = t._stall_limit()
        if limit is None or self._phase not in (_Phase.READING, _Phase.HELD):
            return
        if self._phase is _Phase.HELD or t._reader_blocked():
            self._arm_stall(limit)
            return
        left = limit - (time.monotonic() - (t._m.last_traffic_at or 0.0))
        if left > 0:
            self._arm_stall(left)
            return
        self._end_read(None, t._stall_error())

    # -- a connection read on a thread of its own -------------------------------------

    def _read_blocking(self) -> None:
        self._phase = _Phase.BLOCKING
        t = self._t
        thread = threading.Thread(
            target=self._blocking_read, name=f"aikit-{t.type.value}-{t.id}", daemon=True
        )
        self._blocking = thread
        thread.start()

    def _blocking_read(self) -> None:
        try:
            outcome = self._t._read_blocking()
        except BaseException as exc:
            self.loop.call_soon(functools.partial(self._resume, None, exc))
        else:
            self.loop.call_soon(functools.partial(self._resume, outcome, None))
