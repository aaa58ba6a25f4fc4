"""The shared I/O threads: a few threads that each watch many open streams' sockets.

An :class:`IOLoop` is one thread with a ``selectors`` selector and its own timer heap (it is a
:class:`~aikit_transports.timers.Scheduler`): heartbeats, stall deadlines and reconnect delays of
its streams are entries in that heap, not wake-ups of a thread each. :class:`Workers` is the
small pool that runs what may block (opening a connection) and every callback of a transport.
Both start their threads on demand and end them when nothing uses them any more, so an idle
process keeps no thread of ours.
"""

from __future__ import annotations

import contextlib
import logging
import os
import select
import selectors
import socket
import threading
import time
from collections import deque
from typing import Any, Callable, Optional

from ..timers import Scheduler

__all__ = [
    "IOLoop",
    "Waiter",
    "Workers",
    "ready",
    "run_ended",
    "run_shared",
    "shared_loop",
    "shared_workers",
    "IO_THREADS",
    "WORKERS",
]

log = logging.getLogger("aikit_transports")

#: Seconds a timer may fire late, so that the timers due close together share a wake-up.
_SLACK = 0.02
#: How many I/O threads the process shares (each multiplexes its share of the open streams).
IO_THREADS = 2
#: The most worker threads the process shares (opening connections, callbacks).
WORKERS = 8
#: Seconds an idle worker waits for work before it ends.
_WORKER_IDLE = 2.0
#: Workers that start as soon as calls wait; more start only for a call that waited ``_SLOW``.
_BASE_WORKERS = 2
_SLOW = 0.01


if hasattr(select, "poll"):

    def ready(sock: socket.socket, timeout: Optional[float], *, write: bool = False) -> bool:
        """Whether ``sock`` is readable (``write``: writable) within ``timeout`` seconds (``poll``:
        no ``FD_SETSIZE`` limit, unlike ``select``, so descriptors past 1,024 work)."""
        poller = select.poll()
        poller.register(sock, select.POLLOUT if write else select.POLLIN)
        return bool(poller.poll(None if timeout is None else timeout * 1000))

else:  # pragma: no cover - Windows

    def ready(sock: socket.socket, timeout: Optional[float], *, write: bool = False) -> bool:
        """Whether ``sock`` is readable (``write``: writable) within ``timeout`` seconds."""
        ready_sockets = (
            select.select([], [sock], [], timeout)[1]
            if write
            else (select.select([sock], [], [], timeout)[0])
        )
        return bool(ready_sockets)


class Waiter:
    """Waits for one socket to become readable, again and again (one ``poll`` object)."""

    __slots__ = ("_poll", "_sock")

    def __init__(self, sock: socket.socket) -> None:
        self._sock = sock
        self._poll: Optional[Any] = None
        if hasattr(select, "poll"):
            self._poll = select.poll()
            self._poll.register(sock, select.POLLIN)

    def wait(self, timeout: Optional[float]) -> bool:
        """Whether the socket became readable (or its end came) within ``timeout`` seconds."""
        poll = self._poll
        if poll is None:  # pragma: no cover - Windows
            return ready(self._sock, timeout)
        return bool(poll.poll(None if timeout is None else timeout * 1000))


def _call(callback: Callable[[], None]) -> None:
    try:
        callback()
    except Exception:  # a bug of ours in one stream must not end the others
        log.exception("I/O callback failed")


class IOLoop(Scheduler):
    """One thread multiplexing sockets (:meth:`add_reader`) and timers (:meth:`call_later`).

    The selector is touched from the loop's thread only: other threads hand work over with
    :meth:`call_soon`. The thread runs while a timer, a reader or a call is pending.
    """

    def __init__(self, name: str = "aikit-io") -> None:
        super().__init__(name)
        self._soon: deque[Callable[[], None]] = deque()
        self._readers = 0
        self._selector: Optional[selectors.BaseSelector] = None
        self._wake_r: Optional[socket.socket] = None
        self._wake_w: Optional[socket.socket] = None
        self._woken = False
        self.users = 0  # streams assigned to this loop (see shared_loop)

    def on_loop(self) -> bool:
        """Whether the caller runs on this loop's thread."""
        return self._thread is threading.current_thread()

    def call_soon(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on the loop's thread, after what is already queued (any thread)."""
        with self._cond:
            self._soon.append(callback)
            self._ensure_thread()
            self._wake()

    def add_reader(self, sock: socket.socket, callback: Callable[[], None]) -> None:
        """Call ``callback`` on the loop's thread whenever ``sock`` is readable (loop only)."""
        assert self._selector is not None
        self._selector.register(sock, selectors.EVENT_READ, callback)
        with self._cond:
            self._readers += 1

    def remove_reader(self, sock: socket.socket) -> None:
        """Stop watching ``sock`` (loop only; a socket closed meanwhile is forgotten too)."""
        assert self._selector is not None
        try:
            self._selector.unregister(sock)
        except (KeyError, ValueError):
            return
        with self._cond:
            self._readers -= 1

    # -- the thread ---------------------------------------------------------------------

    def _ensure_thread(self) -> None:
        if self._thread is None:
            self._selector = selectors.DefaultSelector()
            self._wake_r, self._wake_w = socket.socketpair()
            self._wake_r.setblocking(False)
            self._wake_w.setblocking(False)
            self._selector.register(self._wake_r, selectors.EVENT_READ, None)
            self._woken = False
        super()._ensure_thread()

    def _wake(self) -> None:
        if self._woken or self._wake_w is None or self.on_loop():
            return  # the loop looks at its queue and heap again before it next waits
        self._woken = True
        with contextlib.suppress(OSError):  # full: a wake-up is pending anyway
            self._wake_w.send(b"\0")

    def _idle(self) -> bool:
        return (self._active == 0 and not self._readers and not self._soon) or self._shutdown

    def _run(self) -> None:
        selector = self._selector
        wake_r = self._wake_r
        assert selector is not None and wake_r is not None
        while self._turn(selector, wake_r):
            pass

    def _turn(self, selector: selectors.BaseSelector, wake_r: socket.socket) -> bool:
        """One turn of the loop: queued calls, due timers, then a wait for ready sockets (until
        the next timer); ``False`` once idle, when the thread ends. A turn of its own keeps no
        reference to what it ran (nor to a transport) while the loop waits."""
        with self._cond:
            if self._idle():
                self._thread = None
                self._close_selector()
                return False
            soon = self._soon
            if soon:
                self._soon = deque()
            due = []
            while True:
                handle, delay = self._next_due()
                if handle is None:
                    break
                due.append(handle.callback)
            self._woken = False
        for call in soon:
            _call(call)
        for call in due:
            _call(call)
        # Timers due within _SLACK of each other fire in one wake-up (heartbeats, deadlines)
        timeout = 0 if soon or due else None if delay is None else delay + _SLACK
        call = soon = due = None  # type: ignore[assignment]
        for key, _ in selector.select(timeout):
            callback = key.data
            if callback is None:
                with contextlib.suppress(OSError):
                    wake_r.recv(4096)
                continue
            _call(callback)
        return True

    def _close_selector(self) -> None:
        """Under the lock, as the thread ends: the selector and wake-up pair go with it."""
        if self._selector is not None:
            self._selector.close()
            self._selector = None
        for sock in (self._wake_r, self._wake_w):
            if sock is not None:
                sock.close()
        self._wake_r = self._wake_w = None
        self._readers = 0


class Workers:
    """A small pool for blocking steps and callbacks: threads start on demand and end after a
    while without work, at once when no transport uses the pool any more (:meth:`hold`,
    :meth:`release`).

    Two workers keep up with fast callbacks (more would only contend for the GIL: about a fifth
    more CPU per event, measured); another one starts, up to ``max_workers``, when a call waits
    ``_SLOW`` seconds for a worker because the others are held up (a slow listener, an open
    that waits for a server). ``timers`` checks again when no call comes to trigger that.
    """

    def __init__(
        self,
        max_workers: int = WORKERS,
        name: str = "aikit-worker",
        timers: Optional[Callable[[], Scheduler]] = None,
    ) -> None:
        self.max_workers = max_workers
        self._name = name
        self._timers = timers
        self._cond = threading.Condition()
        self._queue: deque[tuple[Callable[[], None], float]] = deque()
        self._threads = 0
        self._idle = 0
        self._seq = 0
        self._users = 0
        self._check_armed = False

    def hold(self) -> None:
        """A transport starts using the pool."""
        with self._cond:
            self._users += 1

    def release(self) -> None:
        """A transport stopped using the pool: with none left, idle workers end now."""
        with self._cond:
            self._users -= 1
            if self._users <= 0:
                self._cond.notify_all()

    def submit(self, callback: Callable[[], None]) -> None:
        """Run ``callback`` on a worker thread."""
        with self._cond:
            queue = self._queue
            queue.append((callback, time.monotonic()))
            if self._idle >= len(queue):
                self._cond.notify()
            else:
                self._grow()

    def _grow(self) -> None:
        """Under the lock, with calls waiting and no idle worker: start one if fewer than two
        run or the oldest call waited ``_SLOW``; else check again in ``_SLOW``."""
        if self._threads >= self.max_workers:
            return
        if self._threads < _BASE_WORKERS or time.monotonic() - self._queue[0][1] >= _SLOW:
            self._threads += 1
            self._seq += 1
            thread = threading.Thread(
                target=self._work, name=f"{self._name}-{self._seq}", daemon=True
            )
            thread.start()
        elif not self._check_armed and self._timers is not None:
            self._check_armed = True
            self._timers().call_later(_SLOW, self._check)

    def _check(self) -> None:
        with self._cond:
            self._check_armed = False
            if self._queue and self._idle < len(self._queue):
                self._grow()

    def _work(self) -> None:
        cond = self._cond
        queue = self._queue
        while True:
            with cond:
                idle_since = None
                while not queue and self._users > 0:
                    now = time.monotonic()
                    if idle_since is None:
                        idle_since = now
                    elif now - idle_since >= _WORKER_IDLE:
                        break
                    self._idle += 1
                    cond.wait(_WORKER_IDLE)
                    self._idle -= 1
                if not queue:
                    self._threads -= 1
                    return
                callback = queue.popleft()[0]
                if queue and not self._idle:
                    self._grow()  # the others wait: held up elsewhere?
            _call(callback)
            del callback  # no reference to a transport while waiting for work


_lock = threading.Lock()
_loops: list[IOLoop] = []
_workers: Optional[Workers] = None


def _io_threads() -> int:
    """``IO_THREADS``, or ``AIKIT_IO_THREADS`` from the environment."""
    try:
        return max(1, int(os.environ.get("AIKIT_IO_THREADS", IO_THREADS)))
    except ValueError:
        return IO_THREADS


_running = 0  # transports started and not ended, in this process


def run_shared() -> bool:
    """Whether a transport that starts now runs on the shared I/O threads, and count it in.

    ``AIKIT_TRANSPORTS_IO`` decides: ``shared`` always, ``threads`` never (a reader thread of
    its own each), ``auto`` (the default) unless it is the only one running: a lone transport
    reads on its own thread, which measures faster for one stream (no hand-over between
    threads), and every one that joins it goes to the shared threads.
    """
    global _running
    mode = os.environ.get("AIKIT_TRANSPORTS_IO", "auto").lower()
    with _lock:
        alone = _running == 0
        _running += 1
    return mode == "shared" or (mode != "threads" and not alone)


def run_ended() -> None:
    """A transport counted by :func:`run_shared` ended."""
    global _running
    with _lock:
        _running -= 1


def shared_loop() -> IOLoop:
    """The process's I/O loop with the fewest streams; the caller counts itself in ``users``
    (and out when its stream ends)."""
    with _lock:
        if not _loops:
            _loops.extend(IOLoop(f"aikit-io-{n}") for n in range(_io_threads()))
        loop = min(_loops, key=lambda candidate: candidate.users)
        loop.users += 1
        return loop


def release_loop(loop: IOLoop) -> None:
    """A stream stopped using ``loop``."""
    with _lock:
        loop.users -= 1


def shared_workers() -> Workers:
    """The process's worker pool."""
    global _workers
    with _lock:
        if _workers is None:
            _workers = Workers(timers=lambda: _loops[0])
        return _workers
