"""One timer thread for many transports: periodic work (heartbeats, health) costs no thread each.

A :class:`Scheduler` runs its callbacks on its own thread, or hands them to an executor
(the manager's pool). Its thread starts with the first timer and ends when the last one is
cancelled, so an idle process keeps no thread of ours.
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from concurrent.futures import Executor
from typing import Callable, Optional

__all__ = ["Scheduler", "TimerHandle", "default_scheduler"]

log = logging.getLogger("aikit_transports")


def _nothing() -> None:
    """What a cancelled timer calls (never: it is skipped)."""


class TimerHandle:
    """A scheduled callback; :meth:`cancel` stops it (idempotent)."""

    __slots__ = ("_scheduler", "callback", "cancelled", "interval", "when")

    def __init__(
        self,
        scheduler: Scheduler,
        when: float,
        interval: Optional[float],
        callback: Callable[[], None],
    ) -> None:
        self._scheduler = scheduler
        self.when = when
        self.interval = interval
        self.callback = callback
        self.cancelled = False

    def cancel(self) -> None:
        """Stop this timer; a run already under way finishes."""
        if not self.cancelled:
            self._scheduler._cancelled(self)


class Scheduler:
    """A heap of timers served by one lazily started thread."""

    def __init__(self, name: str = "aikit-timers", executor: Optional[Executor] = None) -> None:
        self._name = name
        self._executor = executor
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, TimerHandle]] = []
        self._seq = itertools.count()
        self._active = 0
        self._thread: Optional[threading.Thread] = None
        self._shutdown = False

    def call_later(self, delay: float, callback: Callable[[], None]) -> TimerHandle:
        """Run ``callback`` once after ``delay`` seconds."""
        return self._add(delay, None, callback)

    def call_every(
        self, interval: float, callback: Callable[[], None], first: Optional[float] = None
    ) -> TimerHandle:
        """Run ``callback`` every ``interval`` seconds (the first time after ``first``)."""
        if interval <= 0:
            raise ValueError("interval must be > 0")
        return self._add(interval if first is None else first, interval, callback)

    def _add(
        self, delay: float, interval: Optional[float], callback: Callable[[], None]
    ) -> TimerHandle:
        with self._cond:
            if self._shutdown:
                raise RuntimeError("scheduler is shut down")
            handle = TimerHandle(self, time.monotonic() + delay, interval, callback)
            heap = self._heap
            # The thread wakes up by the earliest timer anyway: only an earlier one needs it now.
            sooner = not heap or handle.when < heap[0][0]
            heapq.heappush(heap, (handle.when, next(self._seq), handle))
            self._active += 1
            self._ensure_thread()
            if sooner:
                self._wake()
        return handle

    def _ensure_thread(self) -> None:
        """Under the lock: start the thread unless it runs."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
            self._thread.start()

    def _wake(self) -> None:
        """Under the lock: make the thread look at the heap again."""
        self._cond.notify()

    def _cancelled(self, handle: TimerHandle) -> None:
        with self._cond:
            # The flag changes under the lock only: the timer thread must never see a cancelled
            # handle that is still counted in _active (or count a fired one-shot twice).
            if handle.cancelled:
                return
            handle.cancelled = True
            # It stays in the heap until it is due: without its callback, which holds a transport
            handle.callback = _nothing
            if self._shutdown:
                return  # shutdown() already forgot every timer
            self._active -= 1
            if self._active == 0:  # the thread may end: let it see that (else it skips this one)
                self._heap.clear()
                self._wake()

    def _run(self) -> None:
        cond = self._cond
        while True:
            with cond:
                while True:
                    if self._idle():
                        self._thread = None
                        return
                    handle, delay = self._next_due()
                    if handle is not None:
                        break
                    cond.wait(delay)
            self._dispatch(handle.callback)

    def _idle(self) -> bool:
        """Whether the thread may end (under the lock): no timer left, or shut down."""
        return self._active == 0 or self._shutdown

    def _next_due(self) -> tuple[Optional[TimerHandle], Optional[float]]:
        """Under the lock: the timer due now (taken off the heap, or rescheduled when periodic),
        else ``None`` and the seconds until the next one (``None``: no timer)."""
        heap = self._heap
        while heap:
            when, _, handle = heap[0]
            if handle.cancelled:
                heapq.heappop(heap)
                continue
            delay = when - time.monotonic()
            if delay > 0:
                return None, delay
            heapq.heappop(heap)
            if handle.interval is not None:
                # keep time: the next run is due one interval after this one was due
                handle.when = max(when + handle.interval, time.monotonic())
                heapq.heappush(heap, (handle.when, next(self._seq), handle))
            else:
                handle.cancelled = True
                self._active -= 1
            return handle, None
        return None, None

    def _dispatch(self, callback: Callable[[], None]) -> None:
        if self._executor is not None:
            try:
                self._executor.submit(self._call, callback)
                return
            except RuntimeError:  # the pool is shutting down
                return
        self._call(callback)

    @staticmethod
    def _call(callback: Callable[[], None]) -> None:
        try:
            callback()
        except Exception:
            log.exception("timer callback failed")

    def shutdown(self, timeout: Optional[float] = None) -> None:
        """Cancel every timer and join the thread."""
        with self._cond:
            self._shutdown = True
            self._heap.clear()
            self._active = 0
            thread = self._thread
            self._wake()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    @property
    def thread_alive(self) -> bool:
        """Whether the timer thread is running (for tests and health)."""
        thread = self._thread
        return thread is not None and thread.is_alive()


_default: Optional[Scheduler] = None
_default_lock = threading.Lock()


def default_scheduler() -> Scheduler:
    """The process-wide scheduler used by transports that no manager owns."""
    global _default
    with _default_lock:
        if _default is None:
            _default = Scheduler()
        return _default
