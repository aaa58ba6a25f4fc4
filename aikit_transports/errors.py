"""The exception tree: every failure the library reports is a :class:`TransportError`.

::

    TransportError                  base; carries transport id, redacted URL and attempt
    ├── ConnectError                the connection could not be made, or was lost (network, TLS)
    │   └── FallbackError           connect(): no wire connected (``errors`` per wire)
    ├── HTTPStatusError             the server answered with a status that is not a stream
    ├── WebSocketClosed             the WebSocket closed with a code (``code``, ``reason``)
    ├── ProtocolError               the peer broke the protocol (bad JSON, too long, wrong type)
    │   ├── MessageTooLarge         an event, line or frame exceeded its size limit
    │   ├── InvalidJSON             Event.json(): the data is not JSON (also a ValueError)
    │   └── RedisReplyError         Redis answered with an error (contrib.redis)
    ├── HeartbeatTimeout            no traffic within the idle or heartbeat time
    ├── ReconnectFailed             reconnection attempts ran out; ``__cause__`` is the last error
    ├── StreamInterrupted           a request that may not be sent again was cut (never re-sent)
    ├── EventsMissed                the source skipped events (a trimmed Redis stream); goes on
    ├── BufferFullError             a bounded queue refused an item (the WebSocket send queue)
    ├── TransportClosedError        the transport (or buffer) is closed (``reason``)
    │   └── UnsentMessagesError     it ended with messages still queued (``unsent``)
    ├── TransportLimitError         a manager holds ``max_transports`` already
    └── NotSupportedError           the wire cannot do this (``send()`` on SSE without ``send_url``)

``ConnectError`` is the network failing (refused, DNS, a timeout, a cut, TLS): ``except
ConnectError`` is the place for "try again later". A status (``HTTPStatusError``) or a close
code (``WebSocketClosed``) is the server's own answer, which may say "never" (401, 404, close
code 4000): they are not ``ConnectError`` s, and their ``retryable`` tells which they are.
(``tests/test_errors.py`` checks this tree against the classes.)
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, List, Optional, Sequence, Union

__all__ = [
    "TransportError",
    "ConnectError",
    "HTTPStatusError",
    "WebSocketClosed",
    "UnsentMessagesError",
    "ProtocolError",
    "MessageTooLarge",
    "InvalidJSON",
    "HeartbeatTimeout",
    "ReconnectFailed",
    "StreamInterrupted",
    "EventsMissed",
    "BufferFullError",
    "TransportClosedError",
    "TransportLimitError",
    "NotSupportedError",
]


class TransportError(Exception):
    """Base of every error of the library, with the context needed to act on it.

    ``retryable`` tells the reconnection policy whether trying again may help.
    The URL is always stored redacted (see :func:`aikit_transports.redact.redact_url`).

    :param message: what happened, in one sentence (``error.message``).
    :param transport_id: the id of the transport it happened to.
    :param url: the URL it was connected or connecting to, stored redacted.
    :param attempt: the connection attempt it happened in (1-based).
    :param retryable: whether trying again may help (``None``: the class's default).
    """

    retryable: bool = False

    def __init__(
        self,
        message: str,
        *,
        transport_id: Optional[str] = None,
        url: Optional[str] = None,
        attempt: Optional[int] = None,
        retryable: Optional[bool] = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.transport_id = transport_id
        self.url = url
        self.attempt = attempt
        if retryable is not None:
            self.retryable = retryable

    def with_context(
        self, *, transport_id: Optional[str], url: Optional[str], attempt: Optional[int]
    ) -> TransportError:
        """Fill in the context fields that are still empty; returns ``self``.

        :param transport_id: the transport's id.
        :param url: its URL (redacted here).
        :param attempt: the attempt.
        """
        if self.transport_id is None:
            self.transport_id = transport_id
        if self.url is None:
            self.url = url
        if self.attempt is None:
            self.attempt = attempt
        return self

    def __str__(self) -> str:
        parts = []
        if self.transport_id is not None:
            parts.append(f"transport={self.transport_id}")
        if self.url is not None:
            parts.append(f"url={self.url}")
        if self.attempt is not None:
            parts.append(f"attempt={self.attempt}")
        return f"{self.message} [{' '.join(parts)}]" if parts else self.message

    def __reduce__(self) -> Any:
        # Keep the context when an error crosses a process boundary (multiprocessing, pickle).
        return (_rebuild, (type(self), self.message, dict(self.__dict__)))


def _rebuild(cls: type[TransportError], message: str, state: dict[str, Any]) -> TransportError:
    err = cls.__new__(cls)
    Exception.__init__(err, message)
    err.__dict__.update(state)
    return err


class ConnectError(TransportError):
    """The connection could not be opened: refused, unreachable, timed out, or TLS failed.

    ``request_sent`` is ``False`` when the request certainly never reached the server (refused,
    DNS, TLS, a proxy that refused the tunnel), ``None`` when that is not known.
    """

    retryable = True
    request_sent: Optional[bool] = None


class HTTPStatusError(TransportError):
    """The server answered with an HTTP status that does not start a stream.

    ``retryable`` agrees with the default :class:`~aikit_transports.ReconnectPolicy`: true for
    its ``retry_statuses`` (408, 425, 429, 500, 502, 503, 504), false for any other status (a
    400, 401, 403, 404 or 422 is never retried), unless given explicitly.

    :param status_code: the HTTP status the server answered with.
    :param retry_after: the wait its ``Retry-After`` header asked for, in seconds (``None``:
        none, or not a delay or a date).
    :param context: ``transport_id``, ``url``, ``attempt`` and ``retryable``, as for every
        error.
    """

    _retryable: Optional[bool] = None

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        retry_after: Optional[float] = None,
        headers: Optional[Mapping[str, str]] = None,
        body: Union[str, bytes, None] = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.status_code = status_code
        self.retry_after = retry_after
        #: the response headers (a plain dict; credential headers are not redacted here)
        self.headers: dict[str, str] = dict(headers or {})
        #: the first 4 KiB of the body: ``str`` when it decodes as text, else ``bytes``
        self.body = body

    @property
    def retryable(self) -> bool:
        """Whether the default policy retries this status (unless set explicitly)."""
        if self._retryable is not None:
            return self._retryable
        from .config import ReconnectPolicy  # config imports this module

        return self.status_code in ReconnectPolicy.retry_statuses

    @retryable.setter
    def retryable(self, value: bool) -> None:
        self._retryable = value


class WebSocketClosed(TransportError):
    """The WebSocket ended with a close code (1006 when it was lost without a close frame).

    ``code`` and ``reason`` are the server's; ``retryable`` follows the code (1001, 1006, 1011,
    1012, 1013 and 1014 reconnect; other codes fail the transport).

    :param code: the close code (1006: the connection was lost without a close frame).
    :param reason: the close reason the server gave (``""``: none).
    :param context: ``transport_id``, ``url``, ``attempt`` and ``retryable``, as for every
        error.
    """

    def __init__(self, message: str, *, code: int, reason: str = "", **context: Any) -> None:
        super().__init__(message, **context)
        self.code = code
        self.reason = reason


class ProtocolError(TransportError):
    """The peer broke the protocol: wrong content type, malformed or over-long data."""


class InvalidJSON(ProtocolError, ValueError):
    """:meth:`Event.json() <aikit_transports.Event.json>` found data that is not JSON. Also a
    ``ValueError``, so ``except ValueError`` (the ``requests`` and ``json`` habit) catches it."""


class MessageTooLarge(ProtocolError):
    """An event, line or frame exceeded its configured size limit; the connection is dropped
    (and retried by the policy) rather than buffering without bound."""

    retryable = True


class HeartbeatTimeout(TransportError):
    """No traffic (data, comment or pong) arrived within the deadline: the stream stalled."""

    retryable = True


class ReconnectFailed(TransportError):
    """Reconnection attempts ran out; ``__cause__`` holds the last error."""


class StreamInterrupted(TransportError):
    """A request that may not be sent again (a POST without resumable ids) was cut after it
    reached the server: sending it again could repeat or invent output, so the transport ends.

    ``__cause__`` is what happened (the cut, the stall, the ``HTTPStatusError``).

    :param events_delivered: the events of this transport handed on before the cut.
    :param last_event_id: the last event id seen (``None`` without ids).
    :param context: ``transport_id``, ``url`` and ``attempt``, as for every error.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        events_delivered: int = 0,
        last_event_id: Optional[str] = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.events_delivered = events_delivered
        self.last_event_id = last_event_id


class EventsMissed(TransportError):
    """The source skipped events this reader never saw (a Redis stream trimmed past it).

    Emitted as an ``error`` event before the first event after the gap; the stream goes on.

    :param last_delivered_id: the id of the last event delivered before the gap.
    :param first_available_id: the id of the first event after it.
    :param context: ``transport_id``, ``url`` and ``attempt``, as for every error.
    """

    def __init__(
        self,
        message: str,
        *,
        last_delivered_id: Optional[str] = None,
        first_available_id: Optional[str] = None,
        **context: Any,
    ) -> None:
        super().__init__(message, **context)
        self.last_delivered_id = last_delivered_id
        self.first_available_id = first_available_id


class BufferFullError(TransportError):
    """A bounded queue is full and its policy is to refuse (e.g. the WebSocket send queue)."""


class TransportClosedError(TransportError):
    """The transport or buffer is closed.

    :param reason: the transport's ``closed`` reason (``"done"``, ``"failed"``, ``"user"``, ...)
        when it is about a transport that ended.
    :param context: ``transport_id``, ``url`` and ``attempt``, as for every error.
    """

    def __init__(self, message: str, *, reason: Optional[str] = None, **context: Any) -> None:
        super().__init__(message, **context)
        self.reason = reason


class UnsentMessagesError(TransportClosedError):
    """The transport ended while messages still waited in the send queue.

    ``unsent`` holds them, oldest first, exactly as they were given to ``send()``.

    :param unsent: the messages still queued, oldest first.
    """

    def __init__(self, message: str, *, unsent: Sequence[Any], **context: Any) -> None:
        super().__init__(message, **context)
        self.unsent: List[Any] = list(unsent)


class TransportLimitError(TransportError):
    """The manager already holds ``max_transports`` open transports."""


class NotSupportedError(TransportError):
    """The operation is not available on this wire or with these options."""
