"""Sans-I/O parser for newline-delimited JSON (NDJSON / JSON Lines): bytes in, events out.

The parser never reads a socket, starts a thread or raises: :meth:`NDJSONParser.feed` takes
whatever bytes a read returned and hands back the :class:`~aikit_transports.events.Event` of
every line those bytes completed; problems (a malformed line, an over-long line) are recorded in
:attr:`NDJSONParser.errors` for the caller to report.

Framing rules: a line ends at LF, CRLF or a lone CR (a CR that ends one chunk and the LF that
starts the next are one line end); no other character ends a line, so JSON strings holding
U+2028, U+0085 and friends stay whole. Whitespace-only lines are ignored. Invalid UTF-8 is
replaced with U+FFFD, as browsers do, and a byte-order mark at the start of a response is
dropped.
"""

from __future__ import annotations

import codecs
import json
import json.scanner
import re
import time
from typing import Any, List, Optional, Union

from ..errors import MessageTooLarge, ProtocolError
from ..events import Event, new_event
from ..logs import server_text

__all__ = ["NDJSONParser"]

# The C scanner behind ``json.loads``: parses one value at an index and reports where it ended,
# without json.loads' per-call type checks and whitespace regexes. Like the stdlib's own default
# decoder it holds no per-call state, so every parser in every thread may share it.
_scan_once = json.scanner.make_scanner(json.JSONDecoder())  # type: ignore[arg-type]

# Line ends on the raw bytes, used only when a chunk may hold an over-long line.
_LINE_END = re.compile(rb"\r\n|\r|\n")

#: A bad line is shown by at most this many characters: enough to recognise it in a log.
_SNIPPET_CHARS = 60


class NDJSONParser:
    """Turns an NDJSON byte stream into one ``Event`` per JSON line.

    ``Event.data`` is the parsed value and ``Event.id`` is ``str()`` of the ``id_field`` member
    when the value is an object holding it with a non-null value (``id_field=None`` turns ids
    off). :attr:`last_id` keeps the last such id across :meth:`reset`, for ``Last-Event-ID``.

    A malformed line adds a :class:`ProtocolError` naming its 1-based line number within the
    response to :attr:`errors` and parsing goes on. A line longer than ``max_line_bytes`` adds a
    :class:`MessageTooLarge`; the lines before it are returned and all further input is ignored
    until :meth:`reset` (the connection is expected to be dropped). At most about
    ``max_line_bytes`` of a pending line is ever held.

    :param max_line_bytes: the longest line held, as above.
    :param id_field: the member of a JSON object that holds its id (``None``: no ids).
    :param transport_id: put into each event and error (``Event.transport_id``).
    """

    __slots__ = (
        "errors",
        "line_number",
        "last_id",
        "_max_line_bytes",
        "_id_field",
        "_transport_id",
        "_decode",
        "_decoder",
        "_parts",
        "_partial_bytes",
        "_pending_cr",
        "_at_start",
        "_discarding",
    )

    def __init__(
        self,
        *,
        max_line_bytes: int = 8 << 20,
        id_field: Optional[str] = "id",
        transport_id: Optional[str] = None,
    ) -> None:
        if max_line_bytes <= 0:
            raise ValueError(f"max_line_bytes must be a positive integer, not {max_line_bytes!r}")
        #: The problems of the current response (malformed or over-long lines), in order.
        self.errors: List[ProtocolError] = []
        #: Lines seen in the current response.
        self.line_number = 0
        #: The last id seen, kept across :meth:`reset`: the ``Last-Event-ID`` to resume from.
        self.last_id: Optional[str] = None
        self._max_line_bytes = max_line_bytes
        self._id_field = id_field
        self._transport_id = transport_id
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._decode = self._decoder.decode
        self._parts: List[str] = []  # decoded pieces of the line still waiting for its end
        self._partial_bytes = 0  # raw size of that pending line (undecoded tail included)
        self._pending_cr = False  # the last chunk ended with CR: an LF next is not a new line
        self._at_start = True  # nothing decoded yet in this response (BOM check pending)
        self._discarding = False  # an over-long line was seen: ignore input until reset()

    def reset(self) -> None:
        """Start a new response: drop the partial line and decoder state, restart line numbers.

        :attr:`last_id` is kept (it is what a reconnect resumes from); :attr:`errors` not yet
        taken by the caller are kept too.
        """
        self._decoder.reset()
        self._parts = []
        self._partial_bytes = 0
        self._pending_cr = False
        self._at_start = True
        self._discarding = False
        self.line_number = 0

    def feed(self, data: Union[bytes, bytearray, memoryview]) -> List[Event]:
        """Consume the next bytes of the response; return the events of the lines they complete.

        :param data: the bytes a read returned, cut anywhere.
        """
        if self._discarding or not data:
            return []
        if type(data) is not bytes:
            data = bytes(data)
        if self._partial_bytes + len(data) > self._max_line_bytes:
            return self._feed_checking_limit(data)
        return self._feed(data)

    def flush(self) -> List[Event]:
        """At a clean end of the body, parse a last line that lacks its line end.

        Servers often omit the final newline; call this once the response body is complete
        (not after a dropped connection, whose last line is likely cut short).
        """
        if self._discarding:
            return []
        tail = self._decode(b"", True)
        if tail:
            self._parts.append(tail)
        if not self._parts:
            return []
        line = "".join(self._parts)
        self._parts = []
        self._partial_bytes = 0
        events: List[Event] = []
        self._parse_careful([line], 0, events, time.monotonic())
        return events

    # -- internals -------------------------------------------------------------------------

    def _feed(self, data: bytes) -> List[Event]:
        """The hot path: decode once, split with str methods, parse each complete line."""
        cut = max(data.rfind(b"\n"), data.rfind(b"\r"))
        if cut < 0:
            self._partial_bytes += len(data)
        else:
            self._partial_bytes = len(data) - cut - 1

        text = self._decode(data)
        if self._pending_cr and text[:1] == "\n":
            text = text[1:]  # second half of a CRLF split across chunks
        self._pending_cr = data[-1] == 13  # b"\r"
        if self._at_start and text:
            self._at_start = False
            if text[0] == "\ufeff":
                text = text[1:]
        if "\r" in text:
            text = text.replace("\r\n", "\n").replace("\r", "\n")

        end = text.rfind("\n")
        if end < 0:
            if text:
                self._parts.append(text)
            return []
        parts = self._parts
        if parts:
            parts.append(text[:end])
            block = "".join(parts)
            rest = text[end + 1 :]
            self._parts = [rest] if rest else []
        else:
            block = text[:end]
            if end + 1 < len(text):
                parts.append(text[end + 1 :])
        lines = block.split("\n")
        events: List[Event] = []
        self._parse(lines, events)
        return events

    def _parse(self, lines: List[str], events: List[Event]) -> None:
        """Parse complete lines into ``events``; the first unusual line hands over to
        :meth:`_parse_careful`, so the common case pays for no blank or error checks."""
        append = events.append
        scan = _scan_once
        id_field = self._id_field
        transport_id = self._transport_id
        now = time.monotonic()
        last_id = None
        base = self.line_number
        first = len(events)
        try:
            for line in lines:
                value, end = scan(line, 0)
                if end != len(line):
                    raise ValueError  # trailing text: let the careful path judge it
                ident: Any = None
                if id_field is not None and type(value) is dict:
                    ident = value.get(id_field)
                    if ident is not None:
                        if type(ident) is not str:
                            ident = str(ident)
                        last_id = ident
                append(new_event(value, "message", ident, None, transport_id, now))
        except (ValueError, StopIteration, RecursionError):
            # Every line before this one produced exactly one event.
            if last_id is not None:
                self.last_id = last_id
            self.line_number = base
            self._parse_careful(lines, len(events) - first, events, now)
            return
        if last_id is not None:
            self.last_id = last_id
        self.line_number = base + len(lines)

    def _parse_careful(self, lines: List[str], start: int, events: List[Event], now: float) -> None:
        """Parse ``lines[start:]`` one by one: skip blank lines, record malformed ones."""
        base = self.line_number
        scan = _scan_once
        id_field = self._id_field
        transport_id = self._transport_id
        for index in range(start, len(lines)):
            line = lines[index]
            try:
                value, end = scan(line, 0)
                if end != len(line):
                    raise ValueError
            except (ValueError, StopIteration, RecursionError):
                # Blank, padded with whitespace, or bad: json.loads decides and explains.
                if not line or line.isspace():
                    continue
                try:
                    value = json.loads(line)
                except RecursionError:
                    self._error(base + index + 1, "JSON nested too deeply", line)
                    continue
                except ValueError as exc:
                    if isinstance(exc, json.JSONDecodeError):
                        reason = f"{exc.msg} at column {exc.colno}"
                    else:
                        reason = str(exc)
                    self._error(base + index + 1, f"invalid JSON ({reason})", line)
                    continue
            ident: Any = None
            if id_field is not None and type(value) is dict:
                ident = value.get(id_field)
                if ident is not None:
                    try:
                        ident = str(ident)
                    except (ValueError, RecursionError):  # an id too deeply nested to print
                        ident = None
                    else:
                        self.last_id = ident
            events.append(new_event(value, "message", ident, None, transport_id, now))
        self.line_number = base + len(lines)

    def _error(self, line_number: int, reason: str, line: str) -> None:
        self.errors.append(
            ProtocolError(
                f"NDJSON line {line_number}: {reason}: "
                f"'{server_text(line.strip(), _SNIPPET_CHARS)}'",
                transport_id=self._transport_id,
            )
        )

    def _feed_checking_limit(self, data: bytes) -> List[Event]:
        """The slow path for a chunk that may complete or extend an over-long line.

        Walks the raw line ends of ``data`` to find the first line over the limit, parses
        everything before it normally, then records ``MessageTooLarge`` and stops the parser.
        """
        limit = self._max_line_bytes
        pos = 1 if self._pending_cr and data[:1] == b"\n" else 0
        length = self._partial_bytes  # bytes of the line in progress before ``pos``
        for match in _LINE_END.finditer(data, pos):
            if length + match.start() - pos > limit:
                break
            length = 0
            pos = match.end()
        else:
            if length + len(data) - pos <= limit:
                return self._feed(data)  # many short lines, none too long
        # The line starting at ``pos`` (and including any pending part) is too long.
        events = self._feed(data[:pos]) if pos else []
        self._parts = []
        self._partial_bytes = 0
        self._discarding = True
        self.errors.append(
            MessageTooLarge(
                f"NDJSON line {self.line_number + 1} is longer than the limit of {limit} bytes"
                " (max_line_bytes); the rest of the response is ignored",
                transport_id=self._transport_id,
            )
        )
        return events
