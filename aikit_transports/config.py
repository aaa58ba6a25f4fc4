"""Policies a user sets: how to reconnect (`ReconnectPolicy`) and buffer (`BufferConfig`)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from typing import Callable, Optional, Union

from .errors import HTTPStatusError, TransportError
from .events import BufferStrategy

__all__ = ["ReconnectPolicy", "BufferConfig"]

_DEFAULT_RETRY_STATUSES = (408, 425, 429, 500, 502, 503, 504)


@dataclass(frozen=True)
class ReconnectPolicy:
    """When and how fast to reconnect.

    The delay before attempt ``n`` (1-based) is ``min(max_delay, base * multiplier**(n-1))``,
    where ``base`` is the server's SSE ``retry:`` time when one was sent, else ``initial_delay``;
    ``jitter`` then takes up to that fraction off at random so that many clients spread out.
    A ``Retry-After`` header (429/503) replaces the computed delay: the wait is the server's
    time plus up to ``jitter`` of it (never less than asked, and clients told the same time do
    not come back in one wave); one longer than ``max_retry_after`` seconds fails at once.
    ``max_attempts=None`` retries forever, ``0`` never. ``retry_if(error)`` can veto a retry, or
    force one, but never makes a request that may not be sent again re-sendable.

    :param max_attempts: the most reconnection attempts (``None``: no limit; ``0``: none).
    :param initial_delay: the delay before the first attempt in seconds, without a server time.
    :param max_delay: the longest delay computed, in seconds.
    :param multiplier: the factor (at least 1) the delay grows by from one attempt to the next.
    :param jitter: the fraction (0 to 1) of a delay taken off, or added to a ``Retry-After``,
        at random.
    :param retry_statuses: the HTTP statuses worth another attempt.
    :param retry_if: ``retry_if(error)``, whether to retry after ``error``, in place of
        ``retry_statuses`` and ``error.retryable`` (``None``: those decide).
    :param max_retry_after: the longest ``Retry-After`` (seconds) waited for.
    """

    max_attempts: Optional[int] = 10
    initial_delay: float = 1.0
    max_delay: float = 30.0
    multiplier: float = 2.0
    jitter: float = 0.5
    retry_statuses: tuple[int, ...] = _DEFAULT_RETRY_STATUSES
    retry_if: Optional[Callable[[TransportError], bool]] = field(default=None, compare=False)
    max_retry_after: float = 300.0

    def __post_init__(self) -> None:
        if self.max_attempts is not None and (
            not isinstance(self.max_attempts, int) or self.max_attempts < 0
        ):
            raise ValueError("max_attempts must be None or an integer >= 0")
        if self.initial_delay < 0:
            raise ValueError("initial_delay must be >= 0")
        if self.max_delay < 0:
            raise ValueError("max_delay must be >= 0")
        if self.multiplier < 1:
            raise ValueError("multiplier must be >= 1")
        if not 0 <= self.jitter <= 1:
            raise ValueError("jitter must be between 0 and 1")
        if not 0 <= self.max_retry_after < float("inf"):
            raise ValueError("max_retry_after must be a number of seconds >= 0")
        object.__setattr__(self, "retry_statuses", tuple(int(s) for s in self.retry_statuses))

    def allows(self, attempt: int) -> bool:
        """Whether reconnection attempt ``attempt`` (1-based) may be made.

        :param attempt: the number of the attempt, 1 for the first reconnection.
        """
        return self.max_attempts is None or attempt <= self.max_attempts

    def should_retry(self, error: TransportError) -> bool:
        """Whether ``error`` is worth another attempt (statuses by ``retry_statuses``).

        :param error: the error that ended the connection or the last attempt.
        """
        if self.retry_if is not None:
            return bool(self.retry_if(error))
        if isinstance(error, HTTPStatusError):
            return error.status_code in self.retry_statuses
        return error.retryable

    def delay(
        self,
        attempt: int,
        *,
        server_retry_ms: Optional[int] = None,
        retry_after: Optional[float] = None,
        rand: Callable[[], float] = random.random,
    ) -> float:
        """Seconds to wait before attempt ``attempt`` (1-based).

        :param attempt: the number of the attempt, 1 for the first reconnection.
        :param server_retry_ms: the server's SSE ``retry:`` time in milliseconds, the base in
            place of ``initial_delay`` (``None``: none was sent).
        :param retry_after: the server's ``Retry-After`` in seconds, which replaces the computed
            delay (``None``: none was sent).
        :param rand: returns a random number in [0, 1) for the jitter.
        """
        if retry_after is not None and retry_after >= 0:
            return float(retry_after) * (1.0 + self.jitter * rand())
        base = server_retry_ms / 1000.0 if server_retry_ms is not None else self.initial_delay
        exponent = max(0, attempt - 1)
        try:
            value = base * self.multiplier**exponent
        except OverflowError:
            value = self.max_delay
        value = min(self.max_delay, value)
        if self.jitter:
            value *= 1.0 - self.jitter * rand()
        return value


@dataclass(frozen=True)
class BufferConfig:
    """Size and overflow strategy of the receive buffer between the reader and each consumer.

    ``backpressure`` is emitted when the buffer fills to ``high_water_mark`` (a fraction of
    ``max_size``), ``drain`` when it falls back to ``low_water_mark``.
    """

    #: The most events held for one consumer.
    max_size: int = 1000
    #: What a full buffer does: ``block`` the reader, ``drop-oldest``, ``drop-newest`` or
    #: ``unlimited`` (a :class:`BufferStrategy` or its value).
    strategy: Union[BufferStrategy, str] = BufferStrategy.BLOCK
    #: The fill (a fraction of ``max_size``) at which ``backpressure`` is emitted.
    high_water_mark: float = 0.8
    #: The fill at which ``drain`` follows.
    low_water_mark: float = 0.5

    def __post_init__(self) -> None:
        if not isinstance(self.max_size, int) or self.max_size < 1:
            raise ValueError("max_size must be an integer >= 1")
        try:
            strategy = BufferStrategy(self.strategy)
        except ValueError:
            choices = ", ".join(s.value for s in BufferStrategy)
            raise ValueError(f"strategy must be one of {choices}, not {self.strategy!r}") from None
        object.__setattr__(self, "strategy", strategy)
        if not 0 < self.high_water_mark <= 1:
            raise ValueError("high_water_mark must be in (0, 1]")
        if not 0 <= self.low_water_mark < self.high_water_mark:
            raise ValueError("low_water_mark must be in [0, high_water_mark)")
