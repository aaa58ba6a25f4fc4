"""RESP2, the Redis wire format: commands packed, replies parsed, both sans-I/O and quick.

``redis-py`` opens the connections (TLS, ``AUTH``, ``SELECT``); the commands of the hot paths
(``XREAD`` replies of hundreds of entries, appends of hundreds of events) go through here, which
costs a fraction of ``redis-py``'s pure-Python parser and packer. Replies come back as ``bytes``
(simple and bulk strings), ``int``, ``None`` (null) and lists; an error reply as a
:class:`ReplyError` value, which the caller raises.
"""

from __future__ import annotations

from typing import Any, Iterable, List, Tuple

__all__ = ["ReplyError", "Incomplete", "pack_command", "pack_args", "parse_reply"]

_CRLF = b"\r\n"
_BULK = 36  # $
_ARRAY = 42  # *
_INTEGER = 58  # :
_SIMPLE = 43  # +
_ERROR = 45  # -


class ReplyError:
    """An error reply (``-ERR ...``); ``code`` is its first word."""

    __slots__ = ("code", "message")

    def __init__(self, message: str) -> None:
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
