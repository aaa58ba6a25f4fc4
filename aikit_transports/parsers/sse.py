"""Sans-I/O parser for ``text/event-stream`` (Server-Sent Events).

Bytes go in through :meth:`SSEParser.feed`, finished :class:`~aikit_transports.events.Event`\\ s
come out; no sockets, no threads. The rules are those of the WHATWG HTML standard, section
"Server-sent events" ("Parsing an event stream", "Interpreting an event stream"):

* the stream is UTF-8 decoded with replacement of invalid bytes, one leading U+FEFF BOM removed;
* lines end at CRLF, LF or CR, and nowhere else (U+2028, U+0085 ... stay in the data);
* a blank line dispatches the event; ``:`` starts a comment; ``name: value`` sets a field, with
  one leading space of the value removed; a line without a colon is a field with an empty value;
* ``data`` appends a line, ``event`` sets the type, ``id`` sets the last event ID buffer (unless it
  contains U+0000), ``retry`` sets the reconnection time (only if it is all ASCII digits);
* an event still incomplete when the stream ends is never dispatched.

Speed: each chunk is decoded once, line ends are normalised and the text is cut into event
blocks with ``str`` methods; the usual block shapes (``data: x`` after at most an ``id: n`` and
an ``event: t`` line) are taken whole, other blocks go through the line-by-line rules.
"""

from __future__ import annotations

import codecs
import time
from typing import Optional

from ..errors import MessageTooLarge, ProtocolError
from ..events import Event, new_event

__all__ = ["SSEParser"]

_utf8_decode = codecs.utf_8_decode
_monotonic = time.monotonic
# What ``new_event`` does, inlined in the block loop to save a Python call per event.
_tuple_new = tuple.__new__

# A ``retry:`` value is a count of milliseconds; longer digit strings are clamped to this (still
# millions of years), so that ``int()`` never works on megabytes of digits nor rejects them.
_MAX_RETRY = (1 << 63) - 1

# The lines of an event not yet complete are kept as text up to this many characters, then
# applied, so that an event cut by a read still takes the fast way, and a huge one costs no
# more than one pass.
_DEFER = 1024

# Cutting text into event blocks: ``str.split("\n\n")`` runs in C but still looks at every
# few characters (1-2 GB/s), while ``str.find("\n")`` is a ``memchr`` (many GB/s) that costs a
# Python step per line found. Lines of this many characters or more on average (events of a
# few KiB) are found faster by hopping from line end to line end.
_HOP_LINE = 512


def _split_blocks(text: str) -> list[str]:
    """Exactly ``text.split("\n\n")``, by line-end hops when the first lines are long.

    The first block (or its first four lines) decides: short lines go to ``str.split``.
    """
    find = text.find
    last = len(text) - 1
    blocks: list[str] = []
    start = pos = 0
    lines = 0
    deciding = True
    while True:
        end = find("\n", pos)
        if end < 0 or end >= last:
            break
        blank = text[end + 1] == "\n"
        if deciding:
            lines += 1
            if blank or lines == 4:
                if end - start < _HOP_LINE * lines:
                    return text.split("\n\n")
                deciding = False
        if blank:
            blocks.append(text[start:end])
            start = pos = end + 2
        else:
            pos = end + 1
    blocks.append(text[start:])
    return blocks


def _id_and_event(head: str) -> Optional[tuple[str, str]]:
    """``(id, event type)`` of two lines ``id: ...`` and ``event: ...`` in either order (the
    head of a block as sse-starlette and others write it), else None."""
    first, _, second = head.partition("\n")
    if "\n" in second:
        return None
    name1, _, value1 = first.partition(": ")
    name2, _, value2 = second.partition(": ")
    if name1 == "id" and name2 == "event":
        return value1, value2
    if name1 == "event" and name2 == "id":
        return value2, value1
    return None


def _parse_retry(value: str) -> int:
    """Base-ten value of an all-ASCII-digits ``retry:`` field, clamped to ``_MAX_RETRY``."""
    digits = value.lstrip("0")
    if len(digits) > 19:
        return _MAX_RETRY
    return min(int(digits or "0"), _MAX_RETRY)


class SSEParser:
    """Incremental WHATWG event-stream parser: ``feed(bytes) -> list[Event]``.

    ``last_event_id`` is the "last event ID string" (``None`` while empty), updated when an event
    block is dispatched, even one without data; ``retry`` is the last valid ``retry:`` value in
    milliseconds. Both survive :meth:`reset`, which starts a new response (a reconnection).

    ``max_event_bytes`` bounds what is held for one event. An event's size is that of its lines
    as received (field names, values, comments and line ends, up to its blank line), counted in
    decoded characters: each took at least one byte, so an event within the limit in bytes is
    never refused, and the result does not depend on how the stream is cut into chunks. Once the
    event received so far passes the limit, a :class:`~aikit_transports.errors.MessageTooLarge`
    is appended to ``errors``, the events completed before it are returned, and all input is
    ignored until :meth:`reset`; an endless line is refused as soon as it is too long.
    :meth:`feed` never raises on bad input: invalid UTF-8 becomes U+FFFD.

    :param max_event_bytes: the largest event held, as above.
    :param last_event_id: the last event ID to start from (a resumed stream's).
    :param transport_id: put into each event and error (``Event.transport_id``).
    """

    __slots__ = (
        "last_event_id",
        "retry",
        "errors",
        "_limit",
        "_transport_id",
        "_tail",
        "_bom",
        "_cr",
        "_pending",
        "_parts",
        "_raw",
        "_type",
        "_id",
        "_failed",
    )

    def __init__(
        self,
        *,
        max_event_bytes: int = 8 << 20,
        last_event_id: Optional[str] = None,
        transport_id: Optional[str] = None,
    ) -> None:
        if max_event_bytes <= 0:
            raise ValueError(f"max_event_bytes must be positive, got {max_event_bytes!r}")
        self._limit = max_event_bytes
        self._transport_id = transport_id
        self.last_event_id: Optional[str] = last_event_id or None
        self.retry: Optional[int] = None
        self.errors: list[ProtocolError] = []
        self.reset()

    def reset(self) -> None:
        """Start a new stream (a new response): drop the unfinished line and event, the decoder
        state and any recorded error (``errors`` becomes a new empty list), and expect a BOM
        again. ``last_event_id`` and ``retry`` carry over, as over an EventSource reconnection."""
        self._tail = b""  # undecoded bytes: an incomplete UTF-8 sequence at the end of a chunk
        self._bom = True  # no text seen yet in this stream: a leading U+FEFF is still to strip
        self._cr = False  # the last chunk ended with CR: an LF starting the next one is its CRLF
        # Text not applied yet: the unfinished line, after (up to ``_DEFER`` characters of) the
        # complete lines of an event of which nothing has been applied yet.
        self._pending = ""
        self._parts: list[str] = []  # data buffer, one item per ``data`` line
        self._raw = 0  # characters of the complete lines of the event in progress
        self._type = ""  # event type buffer
        # Last event ID buffer. Browsers start a reconnection with the ID in force (not with an
        # empty buffer), so that the events of the new response that carry no ``id:`` keep it.
        self._id = self.last_event_id or ""
        self._failed = False
        self.errors = []

    def feed(self, data: bytes) -> list[Event]:
        """Parse the next chunk of the stream; return the events it completed, in order.

        :param data: the bytes a read returned, cut anywhere.
        """
        if self._failed or not data:
            return []
        if self._tail:
            data = self._tail + data
            self._tail = b""
        text, used = _utf8_decode(data, "replace", False)
        if used != len(data):
            self._tail = bytes(data[used:])  # at most 3 bytes: a character cut by the read
        if not text:
            return []
        if self._bom:
            self._bom = False
            if text[0] == "\ufeff":
                text = text[1:]
                if not text:
                    return []
        if self._cr:
            self._cr = False
            if text[0] == "\n":
                text = text[1:]
                if not text:
                    return []
        if "\r" in text:
            # A CR ends its line at once (so a blank line dispatches without waiting for more
            # input); an LF that starts the next chunk is then the rest of a CRLF.
            self._cr = text[-1] == "\r"
            text = text.replace("\r\n", "\n").replace("\r", "\n")

        pending = self._pending
        self._pending = ""  # ``pending`` is now the only reference: ``+=`` may grow it in place
        end = text.rfind("\n") + 1
        if not end:
            pending += text
            if len(pending) + self._raw > self._limit:
                self._fail(len(pending) + self._raw)
            else:
                self._pending = pending
            return []

        # Complete lines, each ending in LF. Cut at each blank line: a piece followed by "\n\n"
        # is a whole event block (its lines, then the blank line that dispatches it); the last
        # piece holds the lines of the event still in progress.
        complete = pending + text[:end] if pending else text[:end]
        blocks = _split_blocks(complete)
        last = blocks.pop()
        events: list[Event] = []
        now = _monotonic()
        if blocks and self._blocks(blocks, len(complete), "\0" in complete, events, now):
            return events
        pending = text[end:]
        if last:
            if not self._raw and len(last) <= _DEFER and "retry" not in last:
                # The start of the next event, and nothing applied of it yet: keep these lines
                # as text, so that its whole block takes the fast way once complete. (Lines of
                # an event already under way, and ``retry``, are applied at once.) Blank lines
                # before it would dispatch nothing: drop them, they are not part of the event.
                pending = last.lstrip("\n") + pending
            else:
                lines = last.split("\n")
                lines.pop()
                if self._lines(lines, events, now):
                    return events
        if len(pending) + self._raw > self._limit:
            self._fail(len(pending) + self._raw)
        else:
            self._pending = pending
        return events

    def _blocks(
        self, blocks: list[str], size: int, nul: bool, events: list[Event], now: float
    ) -> bool:
        """Dispatch whole event blocks (``size`` characters in all, ``nul`` if U+0000 is among
        them); the usual shapes are taken whole, others line by line. True if the parser failed.
        """
        if self._raw or size > self._limit:
            # An event is under way: finish it by the general rules. (Text longer than the
            # limit goes that way entirely, to be checked event by event.)
            count = len(blocks) if size > self._limit else 1
            for block in blocks[:count]:
                lines = block.split("\n")
                lines.append("")
                if self._lines(lines, events, now):
                    return True
            del blocks[:count]
        emit = events.append
        idbuf = self._id
        last_id = idbuf or None  # each block here is dispatched, which sets it
        retry = self.retry
        tid = self._transport_id
        for block in blocks:
            # The state is clean here (no data, no type, nothing over the limit). Cheapest
            # tests first: ``in`` costs less than a method call or a slice.
            if "\n" not in block:
                name, _, value = block.partition(": ")
                if name == "data":
                    emit(_tuple_new(Event, (value, "message", last_id, retry, tid, now)))
                    continue
            else:
                head, sep, value = block.partition("\ndata: ")
                if sep and "\n" not in value:
                    if "\n" not in head:
                        name, _, field = head.partition(": ")
                        if name == "event":
                            field = field or "message"
                            emit(_tuple_new(Event, (value, field, last_id, retry, tid, now)))
                            continue
                        if name == "id" and not nul:
                            idbuf = field
                            last_id = field or None
                            emit(_tuple_new(Event, (value, "message", last_id, retry, tid, now)))
                            continue
                    elif not nul:
                        fields = _id_and_event(head)
                        if fields is not None:
                            idbuf, field = fields
                            last_id = idbuf or None
                            field = field or "message"
                            emit(_tuple_new(Event, (value, field, last_id, retry, tid, now)))
                            continue
            # Any other block: line by line.
            self._id = idbuf
            self.last_event_id = last_id
            lines = block.split("\n")
            lines.append("")
            if self._lines(lines, events, now):
                return True
            idbuf = self._id
            last_id = self.last_event_id
            retry = self.retry
        self._id = idbuf
        self.last_event_id = last_id
        return False

    def _lines(self, lines: list[str], events: list[Event], now: float) -> bool:
        """Apply the WHATWG rules to complete lines, appending dispatched events to ``events``.
        Returns True when an event broke the size limit (the parser has then failed)."""
        emit = events.append
        parts = self._parts
        raw = self._raw
        etype = self._type
        idbuf = self._id
        last_id = self.last_event_id
        retry = self.retry
        limit = self._limit
        tid = self._transport_id
        too_large = 0
        for line in lines:
            if not line:
                # Dispatch (the event is within the limit: checked line by line below); a
                # block without data still sets the last event ID.
                raw = 0
                last_id = idbuf or None
                if parts:
                    data = "\n".join(parts)
                    parts = []
                    emit(new_event(data, etype or "message", last_id, retry, tid, now))
                etype = ""
                continue
            raw += len(line) + 1
            if raw > limit:
                # Refused as soon as it passes the limit, before this line is applied: the
                # event's id is not taken, nor a retry from here on, however it was cut.
                too_large = raw
                break
            name, _, value = line.partition(":")
            if value[:1] == " ":
                value = value[1:]
            if name == "data":
                parts.append(value)
            elif name == "id":
                if "\0" not in value:
                    idbuf = value
            elif name == "event":
                etype = value
            elif name == "retry" and value.isdigit() and value.isascii():
                retry = _parse_retry(value)
            # Anything else is a comment (empty name) or an unknown field, and is ignored.

        self.last_event_id = last_id
        self.retry = retry
        if too_large:
            self._fail(too_large)
            return True
        self._parts = parts
        self._raw = raw
        self._type = etype
        self._id = idbuf
        return False

    def _fail(self, size: int) -> None:
        """Record the over-long event and stop: hold nothing more until :meth:`reset`."""
        self._failed = True
        self._pending = ""
        self._parts = []
        self._raw = 0
        self.errors.append(
            MessageTooLarge(
                f"SSE event larger than max_event_bytes={self._limit}: {size} characters "
                "received for one event; the rest of this response is ignored",
                transport_id=self._transport_id,
            )
        )
