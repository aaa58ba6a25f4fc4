"""What ``iter_events()`` returns: an iterator registered as a consumer from its creation, with a
buffer of its own, that hands events over in the caller's thread."""

from __future__ import annotations

import contextlib
import queue
import time
from collections.abc import Iterator
from typing import TYPE_CHECKING, Optional

from ..buffer import MessageBuffer
from ..errors import ConnectError, TransportClosedError, TransportError
from ..events import Event

if TYPE_CHECKING:
    from .base import BaseTransport

__all__ = ["EventIterator"]


class _NotConnectedInTime(ConnectError):
    """``connect(timeout)`` ran out; ``iter_events(timeout)`` turns it into ``TimeoutError``."""

    retryable = True


class EventIterator(Iterator[Event]):
    """What ``iter_events()`` returns: registered from creation, with a buffer of its own.

    :param transport: the transport whose events it yields (connected here if it is not yet).
    :param timeout: the most seconds to wait for each event (``None``: no limit).
    """

    def __init__(self, transport: BaseTransport, timeout: Optional[float]) -> None:
        self._transport = transport
        self._timeout = timeout
        self._batch: list[Event] = []
        self._pos = 0
        self._buf: Optional[MessageBuffer[Event]] = transport._add_consumer()
        if transport._reader is None and transport._closed_reason is None:
            try:
                transport.connect(timeout)
            except _NotConnectedInTime as exc:
                self.close()
                raise TimeoutError(f"no event within {timeout} s: {exc.message}") from (
                    exc.__cause__
                )
            except TransportError:
                if transport._failure is None:
                    self.close()
                    raise
                # A failure is raised by __next__ once the buffered events are yielded.
            except BaseException:
                self.close()
                raise

    def __iter__(self) -> EventIterator:
        return self

    def __next__(self) -> Event:
        pos = self._pos
        batch = self._batch
        if pos < len(batch) and not self._transport._paused:
            self._pos = pos + 1
            return batch[pos]
        return self._next_batch()

    def _next_batch(self) -> Event:
        transport = self._transport
        taken = self._batch
        if taken and self._pos >= len(taken):  # asked for more: the batch taken is delivered
            self._batch = []
            self._pos = 0
            delivered = transport._delivered
            if delivered is not None:
                delivered(taken)
        buf = self._buf
        if buf is None:
            raise StopIteration
        if transport._paused:
            self._wait_resumed()
            if self._pos < len(self._batch):
                return self.__next__()
        try:
            batch = buf.get_batch(self._timeout)
        except queue.Empty:
            raise TimeoutError(f"no event within {self._timeout} s") from None
        except TransportClosedError:
            self.close()
            failure = transport._failure
            if failure is not None:
                raise failure from failure.__cause__
            raise StopIteration from None
        transport._m.latency.append(time.monotonic() - batch[0].received_at)
        self._batch = batch
        self._pos = 1
        return batch[0]

    def _wait_resumed(self) -> None:
        transport = self._transport
        deadline = None if self._timeout is None else time.monotonic() + self._timeout
        with transport._pause_cond:
            while transport._paused and not transport._stop.is_set():
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0:
                    raise TimeoutError(f"paused: no event within {self._timeout} s")
                transport._pause_cond.wait(remaining)

    def close(self) -> None:
        """Stop iterating; events not yet yielded stay for the next consumer."""
        buf, self._buf = self._buf, None
        if buf is not None:
            rest = self._batch[self._pos :]
            delivered = self._transport._delivered
            if delivered is not None and self._pos > 1:  # those the consumer asked past
                delivered(self._batch[: self._pos - 1])
            self._batch = []
            if rest:
                buf.requeue(rest)
            self._transport._remove_consumer(buf)

    def __enter__(self) -> EventIterator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        with contextlib.suppress(Exception):  # at interpreter shutdown
            self.close()
