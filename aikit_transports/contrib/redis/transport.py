"""``RedisStreamTransport``: read a Redis Stream written by a :class:`RedisRelay`, as a transport.

A fourth wire on the shared base: iterators, listeners, buffer strategies, pause/resume,
reconnection with backoff, metrics, health and ``close()`` behave as for SSE or WebSocket.
"""

from __future__ import annotations

import logging
import os
import re
import socket
import threading
import time
from collections.abc import Sequence
from typing import Any, Dict, List, Optional, Set

from ...errors import EventsMissed, ProtocolError, StreamInterrupted, TransportError
from ...events import Event, TransportType, new_event
from ...transports.base import DONE, EOF_, BaseTransport
from .connection import RedisLink, RedisReplyError, Script, parse_redis_url
from .envelope import F_END, F_VERSION, Envelope, decode_fields
from .gaps import GROUP_READ, STREAM_INFO, Position, StreamInfo, missed

__all__ = ["RedisStreamTransport"]

log = logging.getLogger("aikit_transports.redis")

_ENTRY_ID = re.compile(r"\A(?:\$|\d+(?:-\d+)?)\Z")
_NAME = re.compile(r"\A[^\x00-\x20]+\Z")
#: XAUTOCLAIM calls per claim pass (each takes up to ``count`` entries).
_CLAIM_ROUNDS = 10


def _pick(name: str, given: Optional[str], params: Dict[str, str]) -> Optional[str]:
    """An option given as an argument or in the URL's query (not both, unless they agree)."""
    in_url = params.get(name)
    if given is not None and not isinstance(given, str):
        raise ValueError(f"{name} must be a string")
    if given is not None and in_url is not None and given != in_url:
        raise ValueError(f"{name} is given twice, as {given!r} and in the URL as {in_url!r}")
    value = given if given is not None else in_url
    if value is not None and not value:
        raise ValueError(f"{name} must not be empty")
    return value


def _is_end(flat: Any) -> bool:
    """Whether an entry's flat field list is our end marker."""
    if not flat:
        return False
    names = flat[::2]
    return F_VERSION in names and F_END in names


class RedisStreamTransport(BaseTransport):
    """Events of a Redis Stream (the envelopes a :class:`RedisRelay` appends), as a transport.

    ``RedisStreamTransport("redis://host:6379/0", "feed")`` or, as the CLI and
    :func:`~aikit_transports.connect` pass it, ``RedisStreamTransport(
    "redis://host:6379/0?stream=feed")``; ``rediss://`` is TLS (``verify`` and ``cert`` apply),
    ``unix:///path/redis.sock?db=0&stream=feed`` a local socket. A password in the URL is never
    shown.

    Without ``group``, every reader gets every entry after its cursor (``XREAD BLOCK``):
    ``last_event_id`` is ``"$"`` (entries added from now on; the default), ``"0"`` (the whole
    stream) or an entry id; ``Event.id`` is the entry id, so a reader that restarts with the
    last id it handled misses nothing and gets nothing twice (the SSE relay of the Django
    integration passes the browser's ``Last-Event-ID``). Reconnects continue from the cursor.

    With ``group`` (and ``consumer``, by default unique to this transport), the group's
    consumers share the entries (``XREADGROUP``): the group is created at ``"0"`` (or at
    ``last_event_id`` when given) if missing, and an existing group is used as it is. Each entry
    is acknowledged once it was delivered: when the ``event`` listeners returned, or when an
    iterator asked for the event after it (per batch). That is at-least-once delivery: entries
    pending longer than ``claim_idle`` seconds, on a consumer that died (or one too slow to
    deliver them in that time), are claimed (``XAUTOCLAIM``) and delivered to a live one;
    after a reconnect, this consumer's own unacknowledged entries are read again first. Keep
    the default ``block`` buffer strategy with a group: an entry dropped by ``drop-oldest`` is
    never acknowledged.

    The relay's end marker ends the stream: ``done``, then ``closed("done")`` (or, when it
    carries an error such as ``StreamInterrupted``, that error: state ``error``,
    ``closed("failed")``). A group ends once the marker was delivered and no entry of the group
    is pending any more. An entry that is not an envelope becomes an ``error`` event (a
    ``ProtocolError`` naming its id) and the stream goes on.

    Entries trimmed (``MAXLEN``) before this reader read them are never skipped silently: an
    ``EventsMissed`` error event comes before the first event after the gap (see
    ``contrib.redis.gaps``; Redis 7.0 or later). A group destroyed under its readers is
    recreated after its last delivered entry as this reader last saw it (nothing twice,
    nothing skipped), with a ``RedisReplyError`` (``NOGROUP``) error event.

    ``block_ms`` is how long one read waits in Redis; ``count`` the most entries one read
    returns. A read answered by nothing within ``block_ms`` + ``timeout`` (a half-open
    connection) is a stall: ``HeartbeatTimeout``, then a reconnect. ``close()`` wakes a
    blocked read at once.

    :param url: the Redis server: a ``redis://``, ``rediss://`` or ``unix://`` URL, whose query
        may name ``stream``, ``group`` and ``consumer``.
    :param stream: the name of the Redis Stream read (``None``: ``stream`` in the URL).
    :param last_event_id: where to start: ``"$"``, ``"0"`` or an entry id (``None``: ``"$"``,
        or ``"0"`` for a group created here).
    :param group: the consumer group whose consumers share the entries (``None``: no group).
    :param consumer: this reader's name in the group (``None``: one unique to this transport).
    :param block_ms: how long one read waits in Redis, in milliseconds.
    :param claim_idle: seconds an entry stays pending on a consumer before another claims it.
    :param count: the most entries one read returns.
    :param options: the keyword arguments of
        :class:`~aikit_transports.transports.BaseTransport` (``timeout``, ``reconnect``, ...).
    """

    type = TransportType.REDIS_STREAM
    schemes = ("redis", "rediss", "unix")
    logger_name = "aikit_transports.redis"

    def __init__(
        self,
        url: str,
        stream: Optional[str] = None,
        *,
        last_event_id: Optional[str] = None,
        group: Optional[str] = None,
        consumer: Optional[str] = None,
        block_ms: int = 5000,
        claim_idle: float = 30.0,
        count: int = 500,
        **options: Any,
    ) -> None:
        if last_event_id is not None and (
            not isinstance(last_event_id, str) or not _ENTRY_ID.match(last_event_id)
        ):
            raise ValueError(
                f"last_event_id must be '$', '0' or a stream entry id such as "
                f"'1700000000000-0', not {last_event_id!r}"
            )
        super().__init__(url, last_event_id=last_event_id, **options)
        address = parse_redis_url(url, verify=self.verify, cert=self.cert)
        stream = _pick("stream", stream, address.params)
        if stream is None:
            raise ValueError(
                "stream is required: RedisStreamTransport(url, 'name') or a URL ending in "
                "?stream=name"
            )
        group = _pick("group", group, address.params)
        consumer = _pick("consumer", consumer, address.params)
        for name, value in (("group", group), ("consumer", consumer)):
            if value is not None and not _NAME.match(value):
                raise ValueError(f"{name} must be a name without spaces or control characters")
        if consumer is not None and group is None:
            raise ValueError("consumer needs a group")
        if isinstance(block_ms, bool) or not isinstance(block_ms, int) or block_ms < 1:
            raise ValueError(f"block_ms must be a positive integer (ms), not {block_ms!r}")
        if (
            isinstance(claim_idle, bool)
            or not isinstance(claim_idle, (int, float))
            or claim_idle <= 0
        ):
            raise ValueError(f"claim_idle must be a positive number of seconds, not {claim_idle!r}")
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise ValueError(f"count must be a positive integer, not {count!r}")
        self.stream = stream
        self.group = group
        self.consumer = (
            consumer
            if consumer is not None or group is None
            else f"{socket.gethostname()}-{os.getpid()}-{self.id}"
        )
        self.block_ms = block_ms
        self.claim_idle = float(claim_idle)
        self.count = count
        self.where = address.where
        read_timeout = block_ms / 1000.0 + self.timeout
        self._link = RedisLink(address, timeout=self.timeout, read_timeout=read_timeout)
        self._cursor: str = last_event_id or "$"
        self._position = Position()  # plain mode: the cursor's number of all time
        self._delivered_id: Optional[str] = None  # the newest entry handed on
        self._end_error: Optional[TransportError] = None  # what the end marker carried
        # group mode
        self._history: Optional[bytes] = None  # where re-reading our own pending entries is
        self._group_at: Optional[str] = None  # the group's last delivered id, as last seen
        self._group_wait: Optional[str] = None  # nothing new after it: the next read waits
        self._next_claim = 0.0
        self._end_seen = False
        self._ack_lock = threading.Lock()
        self._ack_link: Optional[RedisLink] = None
        self._inflight: Set[str] = set()  # published, not acknowledged yet
        self._ack_backlog: List[str] = []  # delivered, acknowledgement not sent yet
        self._acks_closed = False
        if group is not None:
            self._ack_link = RedisLink(address, timeout=self.timeout)
            self._delivered = self._acknowledge

    # -- connection ------------------------------------------------------------------------

    def _open(self) -> None:
        link = self._link
        link.connect()
        try:
            self._prepare(link)
        except BaseException:
            link.close()  # the base releases only what opened
            raise

    def _prepare(self, link: RedisLink) -> None:
        """Make the group (or learn where the stream stands) on a new connection."""
        if self.group is not None:
            if self._ensure_group(link) and self._group_at is not None:
                self._group_gone(self._group_at, created=True)
            self._flush_acks(link)
            self._history = b"0"
            self._next_claim = 0.0
        else:
            reply = self._fetch(link, None, STREAM_INFO, STREAM_INFO.command((self.stream,), ()))
            self._cursor = self._position.opened(StreamInfo.parse(reply), self._cursor)

    def _fetch(
        self, link: RedisLink, wait_after: Optional[str], script: Script, *commands: Any
    ) -> Any:
        """The reply of the last of ``commands`` (which use ``script``), run in one round trip
        with, when ``wait_after`` is given, a wait of up to ``block_ms`` for an entry after
        that id first (``XREAD BLOCK``; its reply is dropped: ``commands`` read it)."""
        waiting: List[Any] = []
        if wait_after is not None:
            waiting.append(
                ("XREAD", "COUNT", 1, "BLOCK", self.block_ms, "STREAMS", self.stream, wait_after)
            )
        try:
            replies = link.pipeline(*waiting, *commands)
        except RedisReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
            script.load(link)  # Redis restarted, or its scripts were flushed
            replies = link.pipeline(*commands)
        self._traffic()
        return replies[-1]

    def _release(self) -> None:
        self._link.close()

    def _interrupt(self) -> None:
        self._link.interrupt()

    def _on_stopped(self) -> None:
        with self._ack_lock:
            self._acks_closed = True
            if self._ack_link is not None:
                self._ack_link.close()

    def _health_idle_limit(self) -> Optional[float]:
        limit = self.idle_timeout  # a quiet stream still answers every block_ms
        return None if limit is None else max(limit, self.block_ms / 1000.0 + self.timeout)

    def _current_event_id(self) -> Optional[str]:
        if self.group is not None:
            return self._initial_event_id
        return self._cursor

    def _resume_from(self, event_id: Optional[str]) -> None:
        super()._resume_from(event_id)
        self._cursor = event_id or "$"

    # -- reading ---------------------------------------------------------------------------

    def _read(self) -> str:
        if self.group is not None:
            return self._read_group()
        link = self._link
        stop = self._stop
        key = self.stream
        info_command = STREAM_INFO.command((key,), ())
        wait = False  # the last read found nothing: wait for an entry first
        while not stop.is_set():
            cursor = self._cursor
            raw_info, reply = self._fetch(
                link,
                cursor if wait else None,
                STREAM_INFO,
                ("MULTI",),
                info_command,
                ("XREAD", "COUNT", self.count, "STREAMS", key, cursor),
                ("EXEC",),
            )
            wait = not reply
            if wait:
                continue
            entries = reply[0][1]
            info = StreamInfo.parse(raw_info)
            first = entries[0][0].decode("ascii")
            gap = missed(info, cursor, self._position.number, first)
            self._position.read(info, first, entries[-1][0].decode("ascii"), len(entries))
            if gap is not None:
                self._missed(gap[0], cursor, first)
            if self._deliver(entries):
                return self._ended_by_marker()
        return EOF_

    def _missed(self, count: Optional[int], after: str, first: Optional[str]) -> None:
        """Say that entries after ``after`` were trimmed before this reader got them."""
        what = "entries" if count is None else f"{count} entries"
        how_many = " (how many is not known)" if count is None else ""
        self._error(
            EventsMissed(
                f"{what} of {self.stream!r} after {after} were trimmed (MAXLEN) before this "
                f"reader read them{how_many}; it goes on with {first}: raise the relay's maxlen "
                "or read faster",
                last_delivered_id=after,
                first_available_id=first,
            )
        )

    def _read_group(self) -> str:
        link = self._link
        while not self._stop.is_set():
            try:
                if self._group_step(link):
                    return self._ended_by_marker()
            except RedisReplyError as exc:
                if exc.code != "NOGROUP" or self._group_at is None:
                    raise
                self._group_gone(self._group_at, created=self._ensure_group(link))
        return EOF_

    def _group_step(self, link: RedisLink) -> bool:
        """One read of the group (our pending entries first, then claims, then new ones, else
        a wait for more); ``True`` once the group is finished."""
        key, group, consumer = self.stream, self.group, self.consumer
        if self._history is not None:  # first our own entries left unacknowledged
            reply = link.call(
                "XREADGROUP", "GROUP", group, consumer, "COUNT", self.count,
                "STREAMS", key, self._history,
            )  # fmt: skip
            self._traffic()
            entries = reply[0][1] if reply else None
            if not entries:
                self._history = None
                return False
            self._history = entries[-1][0]
            return self._deliver(self._not_held(entries))
        if time.monotonic() >= self._next_claim:
            if self._claim(link):
                return True
            self._next_claim = time.monotonic() + self.claim_idle / 4
        wait_after, self._group_wait = self._group_wait, None
        read_command = GROUP_READ.command((key,), (group, consumer, self.count))
        reply = self._fetch(link, wait_after, GROUP_READ, read_command)
        last, read, *info_values, entries = reply
        before = last.decode("ascii")
        if entries:
            self._group_at = entries[-1][0].decode("ascii")
            info = StreamInfo.parse(info_values)
            first = entries[0][0].decode("ascii")
            position = None if read is None else int(read)
            gap = missed(info, before, position, first)
            if gap is not None:
                self._missed(gap[0], before, first)
            return self._deliver(entries)
        self._group_at = self._group_wait = before
        return self._group_finished(link)

    def _ensure_group(self, link: RedisLink) -> bool:
        """Create the group if it is missing (``True`` then): at the start asked for, or, once
        this reader has seen it, after the group's last delivered entry as last seen."""
        start = self._group_at or self._initial_event_id or "0"
        try:
            link.call("XGROUP", "CREATE", self.stream, self.group, start, "MKSTREAM")
        except RedisReplyError as exc:
            if exc.code != "BUSYGROUP":
                raise
            return False
        return True

    def _group_gone(self, after: str, *, created: bool) -> None:
        """Say that the group was gone, and that it was recreated (by us when ``created``)."""
        how = (
            f"recreated it after {after}, the group's last delivered entry as this reader "
            "last saw it"
            if created
            else "another consumer recreated it"
        )
        self._history = None
        self._error(
            RedisReplyError(
                f"the consumer group {self.group!r} of {self.stream!r} was gone (XGROUP "
                f"DESTROY, or the stream was deleted): this reader {how}; entries that were "
                "pending in it (read, not acknowledged) are not delivered again",
                code="NOGROUP",
            )
        )

    def _claim(self, link: RedisLink) -> bool:
        """Take over entries pending longer than ``claim_idle`` (on a dead consumer)."""
        start: Any = b"0-0"
        min_idle = int(self.claim_idle * 1000)
        for _ in range(_CLAIM_ROUNDS):
            reply = link.call(
                "XAUTOCLAIM", self.stream, self.group, self.consumer, min_idle, start,
                "COUNT", self.count,
            )  # fmt: skip
            start, entries = reply[0], reply[1]
            deleted = reply[2] if len(reply) > 2 else ()
            entries = self._not_held(entries)
            if deleted:  # Redis dropped them from the group's pending list
                self._pending_trimmed(
                    [d.decode("ascii") for d in deleted],
                    entries[0][0].decode("ascii") if entries else None,
                )
            if entries:
                log.info("%s: claimed %d idle entries", self.id, len(entries))
                if self._deliver(entries):
                    return True
            if start in (b"0-0", "0-0") or self._stop.is_set():
                return False
        return False

    def _pending_trimmed(self, ids: List[str], first: Optional[str]) -> None:
        """Say that pending entries of the group were trimmed before anyone delivered them."""
        shown = ", ".join(ids[:3]) + (", ..." if len(ids) > 3 else "")
        self._error(
            EventsMissed(
                f"{len(ids)} pending entries of {self.stream!r} ({shown}) were trimmed "
                "(MAXLEN) before they were delivered: raise the relay's maxlen",
                last_delivered_id=self._delivered_id,
                first_available_id=first,
            )
        )

    def _group_finished(self, link: RedisLink) -> bool:
        """After an empty read: the end marker was delivered and nothing is pending."""
        if not self._end_seen:
            newest = link.call("XREVRANGE", self.stream, "+", "-", "COUNT", 1)
            if not newest or not _is_end(newest[0][1]):
                return False
            self._end_seen = True
            self._end_error = self._carried_error(decode_fields(newest[0][1]))
        summary = link.call("XPENDING", self.stream, self.group)
        return not summary or int(summary[0]) == 0

    def _ended_by_marker(self) -> str:
        """The stream ended: ``done``, or the failure the relay's end marker carried."""
        if self._end_error is not None:
            raise self._end_error
        return DONE

    def _carried_error(self, envelope: Envelope) -> Optional[TransportError]:
        """The error an end marker carries (the relay's upstream failed for good), if any."""
        if envelope.error_kind is None:
            return None
        message = envelope.error_message or "the relay's upstream failed"
        if envelope.error_kind == StreamInterrupted.__name__:
            return StreamInterrupted(
                message,
                events_delivered=self._m.messages_received,
                last_event_id=self._delivered_id,
            )
        return TransportError(f"{envelope.error_kind}: {message}")

    def _not_held(self, entries: List[Any]) -> List[Any]:
        """``entries`` without those this transport delivered and did not acknowledge yet."""
        with self._ack_lock:
            held = self._inflight
            if not held:
                return entries
            return [e for e in entries if e[0].decode("ascii") not in held]

    def _deliver(self, entries: List[Any]) -> bool:
        """Publish the events of ``entries`` in order; ``True`` when the end marker ended it."""
        events: List[Event] = []
        now = time.monotonic()
        tid = self.id
        size = 0
        ended = False
        trimmed: List[str] = []
        for raw_id, flat in entries:
            entry_id = raw_id.decode("ascii")
            if flat is None:  # deleted from the stream while it was pending
                trimmed.append(entry_id)
                continue
            if trimmed:
                self._flush(events)
                events = []
                self._acknowledge_now(trimmed)
                self._pending_trimmed(trimmed, entry_id)
                trimmed = []
            size += sum(map(len, flat))
            try:
                envelope = decode_fields(flat)
            except ValueError as exc:
                self._flush(events)
                events = []
                self._skip(entry_id)
                self._error(
                    ProtocolError(
                        f"entry {entry_id} of {self.stream!r} is skipped: {exc}", retryable=False
                    )
                )
                continue
            if envelope.end:
                self._flush(events)
                events = []
                self._skip(entry_id)
                self._end_error = self._carried_error(envelope)
                if self.group is None:
                    self._m.bytes_received += size
                    return True
                self._end_seen = ended = True
                continue
            events.append(
                new_event(envelope.data, envelope.type, entry_id, envelope.retry, tid, now)
            )
        self._m.bytes_received += size
        self._flush(events)
        if trimmed:
            self._acknowledge_now(trimmed)
            self._pending_trimmed(trimmed, None)
        return ended and self._group_finished(self._link)

    def _flush(self, events: List[Event]) -> None:
        if not events:
            return
        if self.group is not None:
            with self._ack_lock:
                self._inflight.update(e.id for e in events if e.id is not None)
        self._publish(events)
        self._cursor = self._delivered_id = events[-1].id or self._cursor

    def _skip(self, entry_id: str) -> None:
        """An entry that is not delivered (the end marker, a bad one): move past it."""
        if self.group is None:
            self._cursor = entry_id
        else:
            self._acknowledge_now([entry_id])

    # -- acknowledgements (group mode) -------------------------------------------------------

    def _acknowledge(self, events: Sequence[Event]) -> None:
        """The base's delivery hook: acknowledge what a consumer took (any thread)."""
        self._send_acks([e.id for e in events if e.id is not None], self._ack_link)

    def _acknowledge_now(self, ids: List[str]) -> None:
        """Acknowledge entries that are never delivered, from the reader thread."""
        self._send_acks(ids, self._link)

    def _flush_acks(self, link: RedisLink) -> None:
        """Send the acknowledgements that failed while Redis was away (after reconnecting)."""
        self._send_acks([], link)

    def _send_acks(self, ids: List[str], link: Optional[RedisLink]) -> None:
        with self._ack_lock:
            backlog = self._ack_backlog
            backlog.extend(ids)
            if not backlog or self._acks_closed or link is None:
                return
            try:
                link.call("XACK", self.stream, self.group, *backlog)
            except TransportError as exc:
                # kept: sent again with the next acknowledgement or after the reconnect
                log.debug("%s: acknowledgement deferred: %s", self.id, exc)
                return
            self._inflight.difference_update(backlog)
            backlog.clear()
