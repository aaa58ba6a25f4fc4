"""Delivery: the consumers' buffers, handing each batch of events to them, and the listeners.

A mixin of :class:`~aikit_transports.transports.BaseTransport`. Each consumer (the group of
``event`` listeners, and each active iterator) has its own :class:`MessageBuffer`; the reader
puts every batch of events into each of them, which is where backpressure comes from. Events
that arrive while nobody consumes wait in a pending buffer that the first consumer adopts. On a
reader thread, listeners run there, serialised by ``_dispatch_lock`` with every other callback
of the transport; on the shared I/O threads, a full ``block`` buffer holds the rest of a batch
(the socket rests) and the listeners run on the transport's serial queue.
"""

from __future__ import annotations

import operator
import queue
import threading
import time
from collections import deque
from collections.abc import Sequence
from typing import Any, Callable, Optional

from ..buffer import BackpressureInfo, MessageBuffer
from ..config import BufferConfig
from ..emitter import EventEmitter
from ..errors import TransportClosedError
from ..events import BufferStrategy, Event
from ..logs import TransportLog, snippet
from ..metrics import MetricsRecorder
from .shared import SharedRunner

__all__ = ["CarriedId", "Delivery", "RECENT_IDS"]

#: How many ids of delivered events are remembered to skip a replay (see ``_publish``).
RECENT_IDS = 1024

_event_id = operator.itemgetter(2)  # ``Event.id`` (a named tuple's item 2), read in C


class CarriedId(str):
    """The last event id carried into a resumed response: the ``Event.id`` of its events that
    have no id of their own, told apart (by type) from an equal id the server sent again."""

    __slots__ = ()


class Delivery:
    """Consumers and delivery (see the module docstring); the state lives in the transport."""

    id: str
    debug: bool
    log: TransportLog
    buffer_config: BufferConfig
    _m: MetricsRecorder
    _io: Optional[SharedRunner]
    _reader: Any
    _stop: threading.Event
    _emitter: EventEmitter
    _dispatch_lock: threading.RLock
    _consumers_lock: threading.Lock
    _consumers: list[MessageBuffer[Event]]
    _pending: Optional[MessageBuffer[Event]]
    _targets: tuple[MessageBuffer[Event], ...]
    _listener_buf: Optional[MessageBuffer[Event]]
    _listeners_lock: threading.Lock
    _retired_dropped: int
    _paused: bool
    _pause_cond: threading.Condition
    _pending_close: Optional[str]
    _closed_reason: Optional[str]
    _failure: Any
    _data_seen: bool
    _attempt: int
    _recent_ids: Optional[deque[Optional[str]]]
    _replay_ids: Optional[set[Optional[str]]]
    _delivered: Optional[Callable[[Sequence[Event]], None]]

    def _emit(self, name: str, *args: Any) -> None:
        raise NotImplementedError

    def _new_buffer(self) -> MessageBuffer[Event]:
        return MessageBuffer(
            self.buffer_config, on_backpressure=self._on_backpressure, on_drain=self._on_drain
        )

    def _on_backpressure(self, info: BackpressureInfo) -> None:
        self._emit("backpressure", info)

    def _on_drain(self, info: BackpressureInfo) -> None:
        if self._io is not None:
            self._io.room()
        self._emit("drain", info)

    def _add_consumer(self) -> MessageBuffer[Event]:
        with self._consumers_lock:
            if self._pending is not None:
                buf = self._pending
                self._pending = None
            else:
                buf = self._new_buffer()
            if self._closed_reason is not None or self._failure is not None:
                buf.close()
            self._consumers.append(buf)
            self._targets = tuple(self._consumers)
            return buf

    def _remove_consumer(self, buf: MessageBuffer[Event]) -> None:
        with self._consumers_lock:
            if buf not in self._consumers:
                return
            self._consumers.remove(buf)
            if self._consumers:
                self._retired_dropped += buf.dropped
                buf.close()
                buf.clear()
                self._targets = tuple(self._consumers)
            else:
                # What the last consumer left unread goes to the next one.
                self._pending = buf
                self._targets = (buf,)

    def _listeners_changed(self) -> None:
        with self._listeners_lock:
            has = self._emitter.has_listeners("event")
            if has and self._listener_buf is None:
                buf = self._listener_buf = self._add_consumer()
                if self._reader is None or self._reader.is_alive():
                    return
                # The stream already ended: what it left unread is delivered now.
                if buf and not self._paused:
                    self._pump_listeners(buf)
            elif not has and self._listener_buf is not None:
                buf, self._listener_buf = self._listener_buf, None
                self._remove_consumer(buf)

    def _close_consumers(self) -> None:
        with self._consumers_lock:
            buffers = list(self._targets)
        for buf in buffers:
            buf.close()

    def _publish(self, events: Sequence[Event]) -> None:
        """Hand a batch of parsed events to every consumer (reader thread only)."""
        if not events:
            return
        if self._replay_ids is not None:
            events = self._skip_replayed(events)
            if not events:
                return
        recent = self._recent_ids
        if recent is not None:
            recent.extend(map(_event_id, events))
        m = self._m
        m.messages_received += len(events)
        m.last_message_at = events[-1].received_at
        if self.debug:
            for event in events:
                self.log.debug(
                    "%s: event type=%s id=%s data=%s",
                    self.id,
                    event.type,
                    event.id,
                    snippet(event.data),
                )
        if not self._data_seen:
            self._data_seen = True
            self._attempt = 0
        listener_buf = self._listener_buf
        io = self._io
        if io is not None and io.loop.on_loop():
            self._hand_over(io, events)
            return
        for buf in self._targets:
            try:
                if buf is listener_buf:
                    self._feed_listeners(buf, events)
                else:
                    buf.put_many(events)
            except TransportClosedError:
                if self._stop.is_set():
                    raise
                # that consumer left meanwhile; the others still get the events

    def _hand_over(self, io: SharedRunner, events: Sequence[Event]) -> None:
        """``_publish`` on an I/O thread, which never waits: each buffer takes what it can (a
        full ``block`` buffer's rest is held, and the socket rests until there is room), and
        the listeners run on the transport's serial queue."""
        listener_buf = self._listener_buf
        count = len(events)
        for buf in self._targets:
            try:
                stored = buf.put_many(events, 0)
            except TransportClosedError:
                if self._stop.is_set():
                    return
                continue
            if stored < count and buf.strategy is BufferStrategy.BLOCK:
                io.hold(buf, events[stored:])
            if buf is listener_buf:
                io.pump()

    def _skip_replayed(self, events: Sequence[Event]) -> Sequence[Event]:
        """Drop the events at the start of a resumed response whose ids were delivered already
        (a server that ignored ``Last-Event-ID``), up to the first one that was not; an event
        without an id of its own cannot be told apart, so it ends the check and is delivered."""
        replayed = self._replay_ids
        assert replayed is not None
        skip = 0
        for event in events:
            event_id = event.id
            if event_id is None or type(event_id) is CarriedId or event_id not in replayed:
                self._replay_ids = None
                break
            skip += 1
        if skip:
            self._m.replayed_skipped += skip
            if self.debug:
                self.log.debug("%s: skipped %d events sent again", self.id, skip)
        return events[skip:] if skip else events

    def _feed_listeners(self, buf: MessageBuffer[Event], events: Sequence[Event]) -> None:
        """Run the listeners on ``events`` now, or buffer them while paused (waiting for room
        with ``block``; ``resume()`` interrupts that wait so the backlog is delivered first)."""
        count = len(events)
        done = 0
        while done < count and not self._stop.is_set():
            if not self._paused and not buf:
                done += self._deliver_to_listeners(events[done:] if done else events)
                continue  # the rest, if paused meanwhile, goes to the buffer
            rest = events[done:] if done else events
            stored = buf.put_many(rest)
            # Only ``block`` stores part of them (interrupted by ``resume()``); the other
            # strategies took the whole batch, dropping what they drop.
            done += stored if buf.strategy is BufferStrategy.BLOCK else len(rest)
            self._pump_listeners(buf)

    def _pump_listeners(self, buf: MessageBuffer[Event]) -> None:
        """Deliver what waits in the listeners' buffer. Taking and delivering happen under
        ``_dispatch_lock``, so events the reader hands on directly never overtake them."""
        while buf and not self._paused and self._pending_close is None:
            with self._dispatch_lock:
                try:
                    batch = buf.get_batch(timeout=0)
                except (queue.Empty, TransportClosedError):
                    return
                done = self._deliver_to_listeners(batch)
                if done < len(batch):
                    buf.requeue(batch[done:])  # paused meanwhile: the rest waits, first in line

    def _deliver_to_listeners(self, batch: Sequence[Event]) -> int:
        """Run the listeners on ``batch``, stopping at once if delivery gets paused or ``close()``
        is called (by a listener or another thread); how many events were delivered."""
        # ``emit("event", event)`` inlined (a Python call less per event); the listeners are
        # looked up for each event, so that ``off()`` from a listener applies to the next one.
        lookup = self._emitter.lookup()
        failed = self._emitter.listener_failed
        done = 0
        with self._dispatch_lock:
            self._m.latency.append(time.monotonic() - batch[0].received_at)
            for event in batch:
                if self._paused or self._pending_close is not None:
                    break
                for callback in lookup("event", ()):
                    try:
                        callback(event)
                    except Exception as exc:  # a listener never kills the reader
                        failed(exc, "event")
                done += 1
        delivered = self._delivered
        if delivered is not None and done:
            delivered(batch[:done] if done < len(batch) else batch)
        return done
