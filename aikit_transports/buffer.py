"""A bounded, thread-safe message buffer with overflow strategies and water marks."""

from __future__ import annotations

import collections
import queue
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Callable, Generic, Optional, TypeVar

from .config import BufferConfig
from .errors import TransportClosedError
from .events import BufferStrategy

__all__ = ["MessageBuffer", "BackpressureInfo"]

T = TypeVar("T")


@dataclass(frozen=True)
class BackpressureInfo:
    """The state of a buffer when it crossed a water mark."""

    #: Items buffered at that moment.
    size: int
    #: The buffer's capacity (:attr:`BufferConfig.max_size`).
    max_size: int
    #: Its overflow strategy.
    strategy: BufferStrategy
    #: Items dropped by the strategy so far (``drop-oldest``, ``drop-newest``).
    dropped: int


class MessageBuffer(Generic[T]):
    """A FIFO between one producer thread and its consumers, on ``queue.Queue``-style locking.

    ``block`` makes a producer wait for room (so a reader stops reading and TCP pushes back),
    ``drop-oldest`` / ``drop-newest`` discard and count, ``unlimited`` never refuses.
    ``on_backpressure`` / ``on_drain`` are called, outside the lock, by the thread whose
    put or get crossed the high or low water mark.

    :param config: size, strategy and water marks (``None``: the :class:`BufferConfig` defaults).
    :param on_backpressure: ``on_backpressure(info)``, called when the buffer fills to its high
        water mark.
    :param on_drain: ``on_drain(info)``, called when it falls back to its low water mark.
    """

    def __init__(
        self,
        config: Optional[BufferConfig] = None,
        *,
        on_backpressure: Optional[Callable[[BackpressureInfo], None]] = None,
        on_drain: Optional[Callable[[BackpressureInfo], None]] = None,
    ) -> None:
        self.config = config = config or BufferConfig()
        self.strategy: BufferStrategy = BufferStrategy(config.strategy)
        self.max_size = config.max_size
        self._high = max(1, int(config.max_size * config.high_water_mark))
        self._low = int(config.max_size * config.low_water_mark)
        self._items: collections.deque[T] = collections.deque()
        self._mutex = threading.Lock()
        # One condition serves both waits, for items and for room (a kilobyte less per
        # buffer, and transports keep one buffer per consumer). Every waiter re-checks its own
        # predicate in a loop and every notify is a ``notify_all``, so sharing costs at most a
        # spurious wake-up, and rarely: a buffer is never empty and full at once.
        self._not_empty = self._not_full = threading.Condition(self._mutex)
        # Threads waiting in ``_not_empty`` / ``_not_full`` (changed under the mutex): a put or
        # get with nobody to wake skips the notify, a few Python calls on the hot path.
        self._getters = 0
        self._putters = 0
        self._closed = False
        self._interrupted = False
        self._above_high = False
        self.dropped = 0
        self.on_backpressure = on_backpressure
        self.on_drain = on_drain

    def __len__(self) -> int:
        return len(self._items)

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def put(self, item: T, timeout: Optional[float] = None) -> bool:
        """Add ``item``; ``False`` when the strategy dropped it (or a ``block`` wait timed out).

        :param item: what to add.
        :param timeout: with ``block``, the longest wait for room in seconds (``None``: no limit).
        """
        return self.put_many((item,), timeout) == 1

    def put_many(self, items: Sequence[T], timeout: Optional[float] = None) -> int:
        """Add ``items`` in order; returns how many of them were stored or replaced older ones.

        With ``block`` it waits for room until everything is stored, ``timeout`` runs out or
        :meth:`interrupt_put` is called. Raises ``TransportClosedError`` once closed.

        :param items: what to add, oldest first.
        :param timeout: with ``block``, the longest wait for room in seconds (``None``: no limit).
        """
        count = len(items)
        crossed = False
        with self._mutex:
            if self._closed:
                raise TransportClosedError("buffer is closed")
            strategy = self.strategy
            buf = self._items
            if strategy is BufferStrategy.UNLIMITED or len(buf) + count <= self.max_size:
                buf.extend(items)
                accepted = count
            elif strategy is BufferStrategy.BLOCK:
                accepted = self._put_blocking(items, timeout)
            elif strategy is BufferStrategy.DROP_OLDEST:
                buf.extend(items)
                extra = len(buf) - self.max_size
                for _ in range(extra):
                    buf.popleft()
                self.dropped += extra
                accepted = count
            else:  # DROP_NEWEST
                accepted = max(0, self.max_size - len(buf))
                buf.extend(items[:accepted])
                self.dropped += count - accepted
            if accepted and self._getters:
                self._not_empty.notify_all()
            if not self._above_high and len(buf) >= self._high:
                self._above_high = crossed = True
        if crossed and self.on_backpressure is not None:
            self.on_backpressure(self._info())
        return accepted

    def _put_blocking(self, items: Sequence[T], timeout: Optional[float]) -> int:
        buf = self._items
        deadline = None if timeout is None else time.monotonic() + timeout
        accepted = 0
        count = len(items)
        while accepted < count:
            room = self.max_size - len(buf)
            if room > 0:
                buf.extend(items[accepted : accepted + room])
                accepted += min(room, count - accepted)
                if self._getters:
                    self._not_empty.notify_all()
                continue
            if self._closed:
                raise TransportClosedError("buffer is closed")
            if self._interrupted:
                break
            if not self._above_high:
                self._above_high = True
                self._mutex.release()
                try:
                    if self.on_backpressure is not None:
                        self.on_backpressure(self._info())
                finally:
                    self._mutex.acquire()
                continue
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                break
            self._putters += 1
            try:
                self._not_full.wait(remaining)
            finally:
                self._putters -= 1
        self._interrupted = False
        return accepted

    def interrupt_put(self) -> None:
        """Make a producer waiting for room in ``put_many`` return early with what it stored.

        With no producer waiting, the next one to wait for room returns early instead: an
        interrupt that comes just before the wait is never lost.
        """
        with self._mutex:
            self._interrupted = True
            self._not_full.notify_all()

    def get(self, timeout: Optional[float] = None) -> T:
        """Remove and return the oldest item; ``queue.Empty`` after ``timeout``,
        ``TransportClosedError`` once closed and empty.

        :param timeout: the longest wait for an item in seconds (``None``: no limit).
        """
        with self._mutex:
            self._wait_for_items(timeout)
            item = self._items.popleft()
            drained = self._after_get()
        if drained:
            self._notify_drain()
        return item

    def get_batch(
        self, timeout: Optional[float] = None, max_items: Optional[int] = None
    ) -> list[T]:
        """Remove and return every waiting item (at most ``max_items``), waiting for the first.

        :param timeout: the longest wait for the first item in seconds (``None``: no limit);
            then ``queue.Empty``.
        :param max_items: the most items returned (``None``: all that are waiting).
        """
        with self._mutex:
            self._wait_for_items(timeout)
            buf = self._items
            if max_items is None or max_items >= len(buf):
                items = list(buf)
                buf.clear()
            else:
                items = [buf.popleft() for _ in range(max_items)]
            drained = self._after_get()
        if drained:
            self._notify_drain()
        return items

    def _wait_for_items(self, timeout: Optional[float]) -> None:
        if self._items:
            return
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._items:
            if self._closed:
                raise TransportClosedError("buffer is closed")
            remaining = None if deadline is None else deadline - time.monotonic()
            if remaining is not None and remaining <= 0:
                raise queue.Empty
            self._getters += 1
            try:
                self._not_empty.wait(remaining)
            finally:
                self._getters -= 1

    def _after_get(self) -> bool:
        if self._putters:
            self._not_full.notify_all()
        if self._above_high and len(self._items) <= self._low:
            self._above_high = False
            return True
        return False

    def _notify_drain(self) -> None:
        if self.on_drain is not None:
            self.on_drain(self._info())

    def _info(self) -> BackpressureInfo:
        return BackpressureInfo(len(self._items), self.max_size, self.strategy, self.dropped)

    def requeue(self, items: Sequence[T]) -> None:
        """Put ``items`` back at the head, in order (a consumer stopped in the middle of a
        batch it had taken). Never dropped, even past ``max_size`` or after :meth:`close`.

        :param items: the items taken and not handled, oldest first.
        """
        with self._mutex:
            self._items.extendleft(reversed(items))
            self._not_empty.notify_all()

    def clear(self) -> list[T]:
        """Remove and return everything buffered."""
        with self._mutex:
            items = list(self._items)
            self._items.clear()
            self._not_full.notify_all()
            return items

    def close(self) -> None:
        """Refuse new items and wake every waiter; what is buffered can still be taken."""
        with self._mutex:
            self._closed = True
            self._not_empty.notify_all()
            self._not_full.notify_all()

    def __repr__(self) -> str:
        return (
            f"<MessageBuffer size={len(self._items)}/{self.max_size} "
            f"strategy={self.strategy.value} dropped={self.dropped}>"
        )
