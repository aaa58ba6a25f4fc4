"""Counters and snapshots: :class:`TransportMetrics`, :class:`TransportHealth`."""

from __future__ import annotations

import collections
import time
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from typing import Optional

from .events import TransportState

__all__ = [
    "TransportMetrics",
    "TransportHealth",
    "MetricsRecorder",
    "LATENCY_WINDOW",
    "latency_summary",
]

LATENCY_WINDOW = 100


@dataclass(frozen=True)
class TransportMetrics:
    """A snapshot of a transport's counters (or a manager's aggregate of them).

    ``connected_at`` and ``last_message_at`` are wall-clock times (``time.time()``: seconds
    since the epoch, ready for ``datetime.fromtimestamp``) of the last connection and the last
    message; ``uptime`` is the seconds since ``connected_at``. ``latency`` holds ``avg``,
    ``p50``, ``p95`` and ``p99`` in ms from read-off-the-socket to delivery to a consumer, over
    the last 100 deliveries; ``ping_rtt_ms`` is WebSocket only. (``Event.received_at`` is
    ``time.monotonic()`` instead: a clock for measuring delays, not a date.)

    :param messages_received: the messages read off the wire (counted before buffering).
    :param messages_sent: the messages sent upstream.
    :param bytes_received: the bytes read off the wire.
    :param bytes_sent: the bytes sent upstream.
    :param messages_dropped: the events a full buffer dropped (``drop-oldest``, ``drop-newest``).
    :param reconnect_attempts: the reconnection attempts made.
    :param reconnects: the reconnections that succeeded.
    :param errors: the errors reported (``error`` events).
    :param replayed_skipped: events a resumed server sent again (ids already delivered), which
        were skipped; they are not in ``messages_received``.
    :param connected_at: when the last connection opened, in ``time.time()`` seconds (``None``:
        never).
    :param last_message_at: when the last message arrived, in ``time.time()`` seconds
        (``None``: none yet).
    :param uptime: the seconds the current connection has been open (0 while not connected).
    :param buffer_size: the events waiting in the buffers now.
    :param latency: ``avg``, ``p50``, ``p95`` and ``p99`` in ms over the last 100 deliveries
        (empty: none yet).
    :param ping_rtt_ms: the last WebSocket ping's round trip in ms (``None``: none yet, or not
        a WebSocket).
    """

    messages_received: int = 0
    messages_sent: int = 0
    bytes_received: int = 0
    bytes_sent: int = 0
    messages_dropped: int = 0
    reconnect_attempts: int = 0
    reconnects: int = 0
    errors: int = 0
    replayed_skipped: int = 0
    connected_at: Optional[float] = None
    last_message_at: Optional[float] = None
    uptime: float = 0.0
    buffer_size: int = 0
    latency: dict[str, float] = field(default_factory=dict)
    ping_rtt_ms: Optional[float] = None

    def as_dict(self) -> dict[str, object]:
        """The snapshot as a plain dict (for logging or JSON)."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @classmethod
    def total(cls, snapshots: Iterable[TransportMetrics]) -> TransportMetrics:
        """Counters summed over ``snapshots`` (times and latency are left out).

        :param snapshots: the snapshots to add up.
        """
        items = list(snapshots)
        summed = {
            name: sum(getattr(m, name) for m in items)
            for name in (
                "messages_received",
                "messages_sent",
                "bytes_received",
                "bytes_sent",
                "messages_dropped",
                "reconnect_attempts",
                "reconnects",
                "errors",
                "replayed_skipped",
                "buffer_size",
            )
        }
        return cls(**summed)


@dataclass(frozen=True)
class TransportHealth:
    """``status`` is ``"healthy"``, ``"degraded"`` or ``"unhealthy"``; ``reason`` says why."""

    #: ``"healthy"``, ``"degraded"`` or ``"unhealthy"``.
    status: str
    #: The transport's state.
    state: TransportState
    #: Seconds since the last traffic arrived (``None``: none yet).
    idle_seconds: Optional[float]
    #: Why it is not healthy (``None`` when it is).
    reason: Optional[str] = None


def latency_summary(samples: Iterable[float]) -> dict[str, float]:
    """avg / p50 / p95 / p99 in ms of latency samples given in seconds."""
    values = sorted(samples)
    if not values:
        return {}
    n = len(values)

    def pct(p: float) -> float:
        return values[min(n - 1, int(p * n))] * 1000.0

    return {"avg": sum(values) / n * 1000.0, "p50": pct(0.5), "p95": pct(0.95), "p99": pct(0.99)}


class MetricsRecorder:
    """The mutable counters behind a transport's :class:`TransportMetrics`.

    Each counter has one writer thread (the reader, or senders under the send lock), so
    plain integer updates need no lock; latency samples go to a bounded deque.
    """

    def __init__(self) -> None:
        # Times are ``time.monotonic()`` here (immune to clock changes); snapshots turn them
        # into wall-clock times.
        self.messages_received = 0
        self.messages_sent = 0
        self.bytes_received = 0
        self.bytes_sent = 0
        self.reconnect_attempts = 0
        self.reconnects = 0
        self.errors = 0
        self.replayed_skipped = 0
        self.connected_at: Optional[float] = None
        self.last_message_at: Optional[float] = None
        self.last_traffic_at: Optional[float] = None
        self.ping_rtt_ms: Optional[float] = None
        self.latency: collections.deque[float] = collections.deque(maxlen=LATENCY_WINDOW)

    def snapshot(
        self, *, dropped: int, buffer_size: int, connected: bool = True
    ) -> TransportMetrics:
        """An immutable copy of the counters, times turned into wall-clock ones; ``uptime`` is
        that of the current connection (0 while not connected)."""
        now = time.monotonic()
        to_wall = time.time() - now
        return TransportMetrics(
            messages_received=self.messages_received,
            messages_sent=self.messages_sent,
            bytes_received=self.bytes_received,
            bytes_sent=self.bytes_sent,
            messages_dropped=dropped,
            reconnect_attempts=self.reconnect_attempts,
            reconnects=self.reconnects,
            errors=self.errors,
            replayed_skipped=self.replayed_skipped,
            connected_at=None if self.connected_at is None else self.connected_at + to_wall,
            last_message_at=(
                None if self.last_message_at is None else self.last_message_at + to_wall
            ),
            uptime=(
                now - self.connected_at if connected and self.connected_at is not None else 0.0
            ),
            buffer_size=buffer_size,
            latency=latency_summary(list(self.latency)),
            ping_rtt_ms=self.ping_rtt_ms,
        )
