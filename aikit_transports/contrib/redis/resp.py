"""RESP2, the Redis wire format: commands packed, replies parsed, both sans-I/O and quick.

``redis-py`` opens the connections (TLS, ``AUTH``, ``SELECT``); the commands of the hot paths
(``XREAD`` replies of hundreds of entries, appends of hundreds of events) go through here.
Replies are parsed by ``hiredis`` (C; the ``redis`` extra installs it), 3 to 19 times faster
than :func:`parse_reply` on them and without its re-parse of a reply cut by a read
(``bench/resp_parsers.py``); :func:`new_reader` falls back to :class:`Reader`, over
:func:`parse_reply`, where ``hiredis`` is not installed. Replies come back as ``bytes`` (simple
and bulk strings), ``int``, ``None`` (null) and lists; an error reply as a :class:`ReplyError`
value, which the caller raises.
"""

from __future__ import annotations

import logging
from types import ModuleType
from typing import Any, Iterable, List, Optional, Protocol, Tuple


def _import_hiredis() -> Optional[ModuleType]:
    try:
        import hiredis
    except ImportError:  # pragma: no cover - the redis extra installs it
        return None
    return hiredis


#: The ``hiredis`` module, or ``None`` where it is not installed.
hiredis = _import_hiredis()

__all__ = [
    "ReplyError",
    "Incomplete",
    "Reader",
    "ReplyReader",
    "new_reader",
    "hiredis_reader",
    "pack_command",
    "pack_args",
    "parse_reply",
]

log = logging.getLogger("aikit_transports.redis")

_CRLF = b"\r\n"
_BULK = 36  # $
_ARRAY = 42  # *
_INTEGER = 58  # :
_SIMPLE = 43  # +
_ERROR = 45  # -


class ReplyError(Exception):
    """An error reply (``-ERR ...``); ``code`` is its first word. Returned as a value, not
    raised (an exception class so that ``hiredis`` can make it)."""

    __slots__ = ("code", "message")

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message
        first = message.split(" ", 1)[0]
        self.code = first if first.isupper() else "ERR"


class Incomplete(Exception):
    """The buffer does not hold a whole reply yet."""


def _arg(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, int):
        return b"%d" % value
    if isinstance(value, float):
        return repr(value).encode("ascii")
    raise TypeError(
        f"a Redis argument must be bytes, str, int or float, not {type(value).__name__}"
    )


def pack_args(args: Iterable[Any]) -> Tuple[bytes, int]:
    """The arguments as RESP bulk strings, and how many there are (no ``*`` header)."""
    parts = [b"$%d\r\n%b\r\n" % (len(a), a) for a in map(_arg, args)]
    return b"".join(parts), len(parts)


def pack_command(args: Iterable[Any], tail: bytes = b"", tail_count: int = 0) -> bytes:
    """One command: ``args`` then an already packed ``tail`` of ``tail_count`` arguments."""
    head, count = pack_args(args)
    return b"*%d\r\n%b%b" % (count + tail_count, head, tail)


def parse_reply(buf: bytes, pos: int = 0) -> Tuple[Any, int]:
    """The reply starting at ``pos``, and where the next one starts; :class:`Incomplete` when
    ``buf`` ends before it does, ``ValueError`` when it is not RESP2."""
    find = buf.find

    def parse(pos: int) -> Tuple[Any, int]:
        end = find(_CRLF, pos)
        if end < 0:
            raise Incomplete
        kind = buf[pos]
        if kind == _BULK:
            size = int(buf[pos + 1 : end])
            if size < 0:
                return None, end + 2
            return buf[end + 2 : end + 2 + size], end + 4 + size
        if kind == _ARRAY:
            count = int(buf[pos + 1 : end])
            if count < 0:
                return None, end + 2
            pos = end + 2
            items: List[Any] = [None] * count
            for k in range(count):
                if buf[pos] == _BULK:  # inline: most elements are bulk strings
                    end = find(_CRLF, pos)
                    if end < 0:
                        raise Incomplete
                    size = int(buf[pos + 1 : end])
                    if size < 0:
                        pos = end + 2
                        continue
                    pos = end + 4 + size
                    items[k] = buf[end + 2 : pos - 2]
                else:
                    items[k], pos = parse(pos)
            return items, pos
        if kind == _INTEGER:
            return int(buf[pos + 1 : end]), end + 2
        if kind == _SIMPLE:
            return buf[pos + 1 : end], end + 2
        if kind == _ERROR:
            return ReplyError(buf[pos + 1 : end].decode("utf-8", "replace")), end + 2
        raise ValueError(f"not a RESP2 reply: {buf[pos : pos + 20]!r}")

    try:
        reply, pos = parse(pos)
    except IndexError:  # ran past the end of what was received
        raise Incomplete from None
    if pos > len(buf):  # the last bulk string is cut short
        raise Incomplete
    return reply, pos


class Reader:
    """Replies parsed from bytes fed as they arrive, with :func:`parse_reply`: the interface of
    ``hiredis.Reader`` (:meth:`gets` is ``False`` until a whole reply is there), its fallback."""

    __slots__ = ("_buffer",)

    def __init__(self) -> None:
        self._buffer = b""

    def feed(self, data: bytes) -> None:
        """Add bytes received."""
        self._buffer = self._buffer + data if self._buffer else data

    def gets(self) -> Any:
        """The next whole reply, or ``False`` when more bytes are needed (a reply cut short is
        parsed again from its start once more arrive)."""
        buffer = self._buffer
        if not buffer:
            return False
        try:
            reply, used = parse_reply(buffer)
        except Incomplete:
            return False
        self._buffer = buffer[used:]
        return reply

    def has_data(self) -> bool:
        """Whether bytes fed are not parsed yet."""
        return bool(self._buffer)


class ReplyReader(Protocol):
    """What :func:`new_reader` returns: a ``hiredis.Reader`` or a :class:`Reader`."""

    def feed(self, __data: bytes) -> None: ...

    def gets(self) -> Any: ...

    def has_data(self) -> bool: ...


def hiredis_reader() -> ReplyReader:
    """A ``hiredis.Reader`` giving what :func:`parse_reply` gives: ``bytes``, error replies as
    :class:`ReplyError` values, ``ValueError`` for what is not RESP."""
    if hiredis is None:
        raise ImportError("hiredis is not installed: pip install 'aikit-transports[redis]'")
    reader: ReplyReader = hiredis.Reader(replyError=ReplyError, protocolError=ValueError)
    return reader


_fallback_told = False


def new_reader() -> ReplyReader:
    """A reader for one connection's replies: ``hiredis``' when it is installed, else
    :class:`Reader` (said once in the log)."""
    global _fallback_told
    if hiredis is not None:
        return hiredis_reader()
    if not _fallback_told:
        _fallback_told = True
        log.info(
            "hiredis is not installed: Redis replies are parsed in pure Python, several times "
            "slower (pip install 'aikit-transports[redis]' brings it)"
        )
    return Reader()
