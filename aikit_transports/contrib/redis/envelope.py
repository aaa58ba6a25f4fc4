"""The envelope: how one upstream event is stored as the fields of a Redis Stream entry.

Pure data conversion (no Redis here), shared by the relay that writes entries and the transport
that reads them. Field names are short, as they are repeated in every entry:

========  ==================================================================================
``v``     envelope version, ``1``; an entry without it is not one of ours
``t``     the event type (``message`` when absent)
``e``     how ``d`` is encoded: ``s`` UTF-8 text (when absent), ``b`` raw bytes, ``j`` JSON
``d``     the data
``u``     the upstream's event id (absent when the upstream gave none)
``r``     the upstream's reconnection time in ms (SSE ``retry:``), when set
``at``    when the relay received the event: Unix time in seconds (a decimal string)
``end``   ``done`` in the end marker, the entry written when the upstream finished for good;
          ``error`` when it failed in a way that must not be retried (``StreamInterrupted``)
``ek``    with ``end`` ``error``: the error's kind (its class name)
``em``    with ``end`` ``error``: the error's message
========  ==================================================================================

Data round-trips exactly: ``str`` (lone surrogates included), ``bytes`` (``bytearray`` and
``memoryview`` come back as ``bytes``) and JSON values (the parsed JSON of HTTP streams).
``pack_entry`` and ``pack_event`` give the fields already packed (RESP) for an append.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any, List, NamedTuple, Optional, Sequence, Tuple, Union

from ...events import Event
from .resp import pack_args

__all__ = [
    "Envelope",
    "encode_envelope",
    "encode_end_marker",
    "decode_envelope",
    "decode_fields",
    "pack_entry",
    "pack_event",
    "PackedEntries",
    "VERSION",
]

VERSION = b"1"

F_VERSION = b"v"
F_TYPE = b"t"
F_ENCODING = b"e"
F_DATA = b"d"
F_UPSTREAM_ID = b"u"
F_RETRY = b"r"
F_AT = b"at"
F_END = b"end"
F_ERROR_KIND = b"ek"
F_ERROR_MESSAGE = b"em"

ENC_TEXT = b"s"
ENC_BYTES = b"b"
ENC_JSON = b"j"
END_DONE = b"done"
END_ERROR = b"error"

_MESSAGE = "message"


class Envelope(NamedTuple):
    """One decoded entry: the event's ``type``, ``data``, ``upstream_id``, ``retry`` (ms),
    ``received_at`` (Unix time at the relay, or ``None``) and ``end`` (the end marker), with
    ``error_kind`` and ``error_message`` when the end marker says the upstream failed."""

    type: str
    data: Any
    upstream_id: Optional[str]
    retry: Optional[int]
    received_at: Optional[float]
    end: bool = False
    error_kind: Optional[str] = None
    error_message: Optional[str] = None


def encode_data(data: Any) -> tuple[bytes, bytes]:
    """How ``data`` is stored: its encoding (``s``, ``b`` or ``j``) and its bytes."""
    if isinstance(data, str):
        return ENC_TEXT, data.encode("utf-8", "surrogatepass")
    if isinstance(data, (bytes, bytearray, memoryview)):
        return ENC_BYTES, bytes(data)
    try:
        text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"event data of type {type(data).__name__} is neither str, bytes nor JSON: {exc}"
        ) from None
    return ENC_JSON, text.encode("utf-8", "surrogatepass")


def encode_envelope(
    data: Any,
    type: str = _MESSAGE,
    upstream_id: Optional[str] = None,
    retry: Optional[int] = None,
    received_at: Optional[float] = None,
) -> List[bytes]:
    """The entry fields for one event, flat (``[name, value, name, value, ...]``) as ``XADD``
    takes them. ``TypeError`` when ``data`` is neither ``str``, bytes nor JSON-serialisable.

    :param data: the event's data: ``str``, bytes, or a value that JSON can encode.
    :param type: the event type (``message``, the default, is not stored).
    :param upstream_id: the upstream's event id (``None``: it gave none).
    :param retry: the upstream's reconnection time (SSE ``retry:``) in milliseconds (``None``:
        not set).
    :param received_at: when the relay received the event, Unix time in seconds (``None``: not
        stored).
    """
    encoding, payload = encode_data(data)
    fields = [F_VERSION, VERSION]
    if type != _MESSAGE:
        fields += (F_TYPE, type.encode("utf-8", "surrogatepass"))
    if encoding != ENC_TEXT:
        fields += (F_ENCODING, encoding)
    fields += (F_DATA, payload)
    if upstream_id is not None:
        fields += (F_UPSTREAM_ID, upstream_id.encode("utf-8", "surrogatepass"))
    if retry is not None:
        fields += (F_RETRY, b"%d" % retry)
    if received_at is not None:
        fields += (F_AT, repr(received_at).encode("ascii"))
    return fields


def encode_end_marker(
    upstream_id: Optional[str] = None,
    received_at: Optional[float] = None,
    error: Optional[tuple[str, str]] = None,
) -> List[bytes]:
    """The fields of the end marker: readers turn it into ``done``, or, with ``error``, fail
    with that error.

    :param upstream_id: the upstream's last event id (``None``: it gave none).
    :param received_at: when the relay saw the end, Unix time in seconds (``None``: not stored).
    :param error: the kind (class name) and the message of the error that ended the stream.
    """
    fields = [F_VERSION, VERSION, F_END, END_DONE if error is None else END_ERROR]
    if error is not None:
        fields += (
            F_ERROR_KIND,
            error[0].encode("utf-8", "surrogatepass"),
            F_ERROR_MESSAGE,
            error[1].encode("utf-8", "surrogatepass"),
        )
    if upstream_id is not None:
        fields += (F_UPSTREAM_ID, upstream_id.encode("utf-8", "surrogatepass"))
    if received_at is not None:
        fields += (F_AT, repr(received_at).encode("ascii"))
    return fields


def _text(value: Union[bytes, str]) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else value


def _raw(value: Union[bytes, str]) -> bytes:
    return value if isinstance(value, bytes) else value.encode("utf-8", "surrogatepass")


def decode_envelope(fields: Mapping[Any, Any]) -> Envelope:
    """The :class:`Envelope` stored in an entry's fields (names and values as ``bytes`` or
    ``str``); ``ValueError`` saying why when the entry is not one of ours.

    :param fields: the entry's fields, by name.
    """
    if fields and not isinstance(next(iter(fields)), bytes):
        fields = {_raw(k): v for k, v in fields.items()}
    get = fields.get
    version = get(F_VERSION)
    if version is None:
        names = ", ".join(sorted(_text(k) for k in fields)[:5])
        raise ValueError(f"not an aikit envelope (no 'v' field; fields: {names or 'none'})")
    if _raw(version) != VERSION:
        raise ValueError(f"unsupported envelope version {_text(version)!r}")
    upstream = get(F_UPSTREAM_ID)
    upstream_id = None if upstream is None else _text(upstream)
    at = get(F_AT)
    retry_raw = get(F_RETRY)
    try:
        received_at = None if at is None else float(at)
        retry = None if retry_raw is None else int(retry_raw)
    except ValueError:
        raise ValueError("malformed envelope: 'at' or 'r' is not a number") from None
    if get(F_END) is not None:
        kind = get(F_ERROR_KIND)
        message = get(F_ERROR_MESSAGE)
        return Envelope(
            "done",
            None,
            upstream_id,
            None,
            received_at,
            True,
            None if kind is None else _text(kind),
            None if message is None else _text(message),
        )
    payload = get(F_DATA)
    if payload is None:
        raise ValueError("malformed envelope: no 'd' (data) field")
    kind = get(F_TYPE)
    event_type = _MESSAGE if kind is None else _text(kind)
    encoding = get(F_ENCODING)
    encoding = ENC_TEXT if encoding is None else _raw(encoding)
    if encoding == ENC_TEXT:
        data: Any = _text(payload)
    elif encoding == ENC_BYTES:
        data = _raw(payload)
    elif encoding == ENC_JSON:
        try:
            data = json.loads(_text(payload))
        except ValueError as exc:
            raise ValueError(f"malformed envelope: 'd' is not JSON ({exc})") from None
    else:
        raise ValueError(f"malformed envelope: unknown encoding {_text(encoding)!r}")
    return Envelope(event_type, data, upstream_id, retry, received_at)


def decode_fields(flat: List[Any]) -> Envelope:
    """:func:`decode_envelope` of the flat ``[name, value, ...]`` list of ``bytes`` that Redis
    replies with (the readers' hot path)."""
    fields = dict(zip(flat[::2], flat[1::2]))
    get = fields.get
    payload = get(F_DATA)
    encoding = get(F_ENCODING)
    if get(F_VERSION) != VERSION or payload is None or get(F_END) is not None:
        return decode_envelope(fields)  # the end marker, or not an envelope: say why
    if encoding is None or encoding == ENC_TEXT:
        data: Any = payload.decode("utf-8", "surrogatepass")
    elif encoding == ENC_BYTES:
        data = payload
    else:
        return decode_envelope(fields)
    kind = get(F_TYPE)
    upstream = get(F_UPSTREAM_ID)
    retry = get(F_RETRY)
    at = get(F_AT)
    try:
        return Envelope(
            _MESSAGE if kind is None else kind.decode("utf-8", "surrogatepass"),
            data,
            None if upstream is None else upstream.decode("utf-8", "surrogatepass"),
            None if retry is None else int(retry),
            None if at is None else float(at),
        )
    except (ValueError, AttributeError):
        return decode_envelope(fields)


# -- packed for an append ---------------------------------------------------------------

#: Entries packed for an append: the RESP bytes and how many arguments they hold.
PackedEntries = Tuple[bytes, int]


def pack_entry(fields: Sequence[bytes]) -> PackedEntries:
    """One entry's fields (a flat list) as an append takes it: their count, then them."""
    packed, count = pack_args(fields)
    return b"$%d\r\n%d\r\n%b" % (len(str(count)), count, packed), count + 1


def _bulk(value: bytes) -> bytes:
    return b"$%d\r\n%b\r\n" % (len(value), value)


_VERSION_FIELD = _bulk(F_VERSION) + _bulk(VERSION)
_TYPE, _ENCODING, _DATA = _bulk(F_TYPE), _bulk(F_ENCODING), _bulk(F_DATA)
_UPSTREAM_ID, _RETRY, _AT = _bulk(F_UPSTREAM_ID), _bulk(F_RETRY), _bulk(F_AT)
_COUNTS = {n: _bulk(b"%d" % n) for n in range(2, 15, 2)}


def pack_event(event: Event, received_at: float) -> PackedEntries:
    """The envelope of ``event`` packed for an append: ``pack_entry(encode_envelope(...))``,
    built directly (the relay's hot path)."""
    encoding, payload = encode_data(event.data)
    parts = [b"", _VERSION_FIELD]
    fields = 2
    if event.type != "message":
        parts += (_TYPE, _bulk(event.type.encode("utf-8", "surrogatepass")))
        fields += 2
    if encoding != ENC_TEXT:
        parts += (_ENCODING, _bulk(encoding))
        fields += 2
    parts += (_DATA, _bulk(payload))
    fields += 2
    if event.id is not None:
        parts += (_UPSTREAM_ID, _bulk(event.id.encode("utf-8", "surrogatepass")))
        fields += 2
    if event.retry is not None:
        parts += (_RETRY, _bulk(b"%d" % event.retry))
        fields += 2
    parts += (_AT, _bulk(repr(received_at).encode("ascii")))
    fields += 2
    parts[0] = _COUNTS[fields]
    return b"".join(parts), fields + 1
