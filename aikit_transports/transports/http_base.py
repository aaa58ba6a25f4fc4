"""The HTTP side shared by SSE and HTTP streaming: one request on ``requests``, read as it arrives.

Each read is at most one socket read (``read1``), so an event is handed on as soon as its last
byte arrives, whatever the framing (chunked, close-delimited, gzip) and ``chunk_size``; a
chunked body is de-chunked here (:class:`~aikit_transports.parsers.chunked.ChunkedDecoder`), so
that one read, and the batch of events parsed from it, spans HTTP chunks.
``close()`` from another thread shuts the socket down, which wakes a reader blocked in a read
(``Response.close()`` alone would wait for the read to finish).
"""

from __future__ import annotations

import contextlib
import email.utils
import functools
import http.client
import json as _json
import select
import socket
import ssl
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

import requests
from urllib3.exceptions import ReadTimeoutError

from ..errors import (
    ConnectError,
    HeartbeatTimeout,
    HTTPStatusError,
    NotSupportedError,
    ProtocolError,
    TransportError,
)
from ..events import Event
from ..logs import snippet
from ..parsers.chunked import ChunkedDecoder
from ..redact import describe_exception, redact_headers, redact_url
from ..validate import check_int
from .base import BaseTransport
from .redirects import follow_redirects
from .sessions import close_session, new_session, watch_sockets

__all__ = ["HTTPTransportBase"]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_HTTP_SCHEMES = ("http", "https")


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _response_socket(resp: requests.Response) -> Optional[socket.socket]:
    raw = resp.raw
    conn = getattr(raw, "_connection", None)
    sock = getattr(conn, "sock", None)
    if isinstance(sock, socket.socket):
        return sock
    try:  # urllib3 without _connection: dig through http.client's file object
        found = raw._fp.fp.raw._sock  # type: ignore[union-attr]
    except AttributeError:
        return None
    return found if isinstance(found, socket.socket) else None


def _plain_body(resp: requests.Response) -> Optional[http.client.HTTPResponse]:
    """The ``http.client`` response under ``resp`` when its body is not content-encoded.

    It is read without urllib3's layers, which cost several Python calls per read and copy
    every read shorter than asked through a ``BytesIO``: more than parsing large events.
    An encoded body (gzip ...) keeps urllib3's decoder, so ``None`` for it.
    """
    fp = getattr(resp.raw, "_fp", None)
    if not isinstance(fp, http.client.HTTPResponse) or resp.headers.get("Content-Encoding"):
        return None
    if len(getattr(resp.raw, "_decoded_buffer", ())):  # urllib3 holds bytes already read
        return None
    return fp


#: At most this many more reads join one batch (see ``_read_body``).
_COALESCE_READS = 3

_CUT_IN_BODY = "connection lost: the server closed it in the middle of the response"


def _socket_poll(sock: Optional[socket.socket]) -> Optional[Callable[[], bool]]:
    """A check that bytes (or the end) wait on the socket itself; None without one."""
    if sock is None or not hasattr(select, "poll"):
        return None
    poller = select.poll()
    poller.register(sock, select.POLLIN)
    poll = poller.poll
    return lambda: bool(poll(0))


class _BodyReader:
    """Reads the body of one response as it arrives: ``read(n)`` returns at most ``n`` bytes of
    body after at most one socket read, and ``b""`` once the body is complete; a body cut short
    raises ``ConnectError``.

    A chunked body without content coding is read straight from the connection and de-chunked
    by :class:`ChunkedDecoder`, so that one read spans HTTP chunks (``http.client`` stops each
    read at a chunk's end); another uncoded body goes through ``http.client``'s ``read1``; an
    encoded one (gzip ...) through urllib3, which decodes it.

    A read blocked in the socket holds a buffer of the size asked for, 64 KiB for each idle
    stream; so when nothing has arrived, the wait happens in ``http.client``'s reader
    (``peek``), which fills its own small buffer, and the read that follows takes that.
    """

    __slots__ = ("read", "_plain", "_decoder", "_ready", "_arrived")

    def __init__(self, resp: requests.Response, sock: Optional[socket.socket]) -> None:
        plain = _plain_body(resp)
        self._plain = plain
        self._decoder: Optional[ChunkedDecoder] = None
        poll = _socket_poll(sock) if plain is not None else None
        # ``_ready``: a read now returns at once, so it may join a batch (never known with TLS:
        # a readable socket may hold only part of a record). ``_arrived``: bytes came, on the
        # socket or already decrypted in the TLS layer, so a read will not wait for long.
        self._ready = self._arrived = poll
        if poll is not None and isinstance(sock, ssl.SSLSocket):
            pending = sock.pending
            self._ready = None
            self._arrived = lambda: pending() > 0 or poll()
        self.read: Callable[[int], bytes]
        if plain is None:
            raw = resp.raw
            self.read = functools.partial(getattr(raw, "read1", raw.read), decode_content=True)
        elif plain.chunked and plain.chunk_left is None and plain.fp is not None:
            self._decoder = ChunkedDecoder()
            self.read = functools.partial(self._read_chunked, plain, self._decoder)
        else:
            self.read = functools.partial(self._read_plain, plain)

    def more_ready(self) -> bool:
        """Whether more of the body waits on the connection, so that a read returns at once."""
        ready = self._ready
        if ready is None:
            return False
        decoder = self._decoder
        if decoder is not None:
            return not decoder.done and ready()
        plain = self._plain
        return plain is not None and not plain.chunked and ready()

    def _wait(self, plain: http.client.HTTPResponse) -> None:
        """Wait for bytes without a read buffer of our own (see the class)."""
        arrived = self._arrived
        if arrived is not None and not arrived():
            plain.fp.peek(1)  # at once if bytes are buffered there; or it waits for them

    def _read_chunked(
        self, plain: http.client.HTTPResponse, decoder: ChunkedDecoder, size: int
    ) -> bytes:
        while not decoder.done:
            if decoder.error is not None:  # raised once the body before it was handed on
                raise decoder.error
            self._wait(plain)
            data = plain.fp.read1(size)
            if not data:
                raise ConnectError(_CUT_IN_BODY, retryable=True)
            body = decoder.feed(data)
            if body:
                return body
        plain.close()  # all read: a kept-alive connection can serve again
        return b""

    def _read_plain(self, plain: http.client.HTTPResponse, size: int) -> bytes:
        if plain.length != 0:  # 0: the whole body is in, no byte is to come
            self._wait(plain)
        data = plain.read1(size)
        if not data:  # what urllib3 does at the end of a body
            if plain.length:
                raise ConnectError(
                    f"connection lost: the body ended {plain.length} bytes short of its "
                    "Content-Length",
                    retryable=True,
                )
            plain.close()
        return data


def cut_in_headers(resp: requests.Response) -> bool:
    """Whether the connection of ``resp`` ended inside its header block.

    ``http.client`` takes an end of stream there for the end of the headers, so a connection
    cut at that moment looks like a complete answer with headers missing (a ``Content-Type``
    of ``"tex"``, or none). Told apart by reading the body: a cut leaves none (or a truncated
    one), while a real answer has a body, declares an empty one, or keeps the connection open.
    Consumes at most one byte of the body: call it only on a response about to be refused.
    """
    try:
        first = resp.raw.read(1, decode_content=False)
    except (socket.timeout, TimeoutError, ReadTimeoutError):
        return False  # the connection is alive, just quiet
    except Exception:  # a truncated body: IncompleteRead, urllib3's ProtocolError, a reset
        return True
    return not first and "Content-Length" not in resp.headers


class HTTPTransportBase(BaseTransport):
    """A transport whose stream is the body of one HTTP response (SSE, NDJSON, long-poll)."""

    schemes = _HTTP_SCHEMES

    def __init__(
        self,
        url: str,
        *,
        method: str = "GET",
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        data: Any = None,
        session: Optional[requests.Session] = None,
        send_url: Optional[str] = None,
        reconnect_on_eof: bool = True,
        chunk_size: int = 65536,
        **options: Any,
    ) -> None:
        super().__init__(url, **options)
        method = str(method).upper()
        if method not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(_METHODS)}, not {method!r}")
        if json is not None and data is not None:
            raise ValueError("json and data cannot both be given")
        if session is not None and not isinstance(session, requests.Session):
            raise ValueError("session must be a requests.Session")
        if send_url is not None and not str(send_url).lower().startswith(("http://", "https://")):
            raise ValueError("send_url must be an http:// or https:// URL")
        check_int("chunk_size", chunk_size)
        self.method = method
        self.params = dict(params) if params else None
        self.json_body = json
        self.data_body = data
        self.send_url = send_url
        self.reconnect_on_eof = bool(reconnect_on_eof)
        self.chunk_size = chunk_size
        self._own_session = session is None
        self._session = session if session is not None else new_session(2)
        self._resp: Optional[requests.Response] = None
        self._sock: Optional[socket.socket] = None

    # -- building and sending requests -------------------------------------------------

    def _default_headers(self) -> dict[str, str]:
        """Headers the wire sends unless the user gave their own."""
        return {}

    def _request_headers(self) -> dict[str, str]:
        headers = self._default_headers()
        headers.update(self.headers)
        if self.last_event_id:
            headers["Last-Event-ID"] = self.last_event_id
        return headers

    def _request(self, stream: bool = True) -> requests.Response:
        """Make the stream request; a typed error for anything but a 2xx answer."""
        if self.debug:
            self.log.debug(
                "%s: %s %s headers=%s",
                self.id,
                self.method,
                self.safe_url,
                redact_headers(self._request_headers()),
            )
        try:
            with watch_sockets(self._watch_socket):
                resp = self._http(
                    self.method,
                    self.url,
                    timeout=(self.timeout, self._read_timeout()),
                    stream=stream,
                    params=self.params,
                    json=self.json_body,
                    data=self.data_body,
                    headers=self._request_headers(),
                )
        except requests.RequestException as exc:
            raise self._request_failed(exc) from None
        if self.debug:
            self.log.debug(
                "%s: HTTP %d %s headers=%s",
                self.id,
                resp.status_code,
                resp.reason,
                redact_headers(resp.headers),
            )
        if resp.status_code >= 300:
            self._raise_status(resp)
        return resp

    def _http(
        self,
        method: str,
        url: str,
        *,
        timeout: Union[float, tuple[float, Optional[float]]],
        stream: bool = False,
        **request: Any,
    ) -> requests.Response:
        """One request with the transport's TLS and proxy options, redirects followed by the
        rules of :func:`~.redirects.follow_redirects` (no downgrade, no other scheme, only the
        safe headers and ``redirect_headers`` to another origin)."""
        options: dict[str, Any] = {
            "stream": stream,
            "timeout": timeout,
            "verify": self.verify,
            "cert": self.cert,
            "proxies": self.proxies,
        }
        resp = self._session.request(method, url, allow_redirects=False, **request, **options)
        return follow_redirects(self._session, resp, keep_headers=self.redirect_headers, **options)

    def _read_timeout(self) -> Optional[float]:
        """Seconds to wait for the response to begin (a long poll waits longer than ``timeout``)."""
        return self.timeout

    def _watch_socket(self, sock: socket.socket) -> None:
        """Remember the socket of the request under way, so that ``close()`` can cut it."""
        self._sock = sock
        if self._stop.is_set():
            self._interrupt()

    def _request_failed(self, exc: requests.RequestException) -> TransportError:
        """A typed, credential-free error for a failed request."""
        if isinstance(exc, requests.exceptions.SSLError) or _is_tls_error(exc):
            error: TransportError = ConnectError(
                f"TLS failed (certificate not trusted or wrong host; nothing is sent without "
                f"verification): {describe_exception(exc)}",
                retryable=False,
            )
        elif isinstance(exc, requests.exceptions.Timeout):
            error = ConnectError(
                f"timed out after {self.timeout} s: {describe_exception(exc)}", retryable=True
            )
        elif isinstance(exc, requests.exceptions.InvalidURL):
            error = ConnectError(f"invalid URL: {describe_exception(exc)}", retryable=False)
        else:
            error = ConnectError(f"connection failed: {describe_exception(exc)}", retryable=True)
        error.__cause__ = None
        return error

    def _raise_status(self, resp: requests.Response) -> None:
        status = resp.status_code
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        reason = resp.reason or ""
        resp.close()
        raise HTTPStatusError(
            f"HTTP {status} {reason}".rstrip(), status_code=status, retry_after=retry_after
        )

    def _attach(self, resp: requests.Response) -> None:
        """Keep ``resp`` as the current stream and arm the idle timeout on its socket."""
        self._resp = resp
        self._sock = sock = _response_socket(resp)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(self.idle_timeout)
        if self._stop.is_set():  # closed while the request was under way
            self._release()

    def _release(self) -> None:
        """Close the response and its socket: a stream's connection is never handed back to
        the pool half-read, and the socket goes even if something still holds the response.
        A body read to its end was already handed back by urllib3: its socket is left open."""
        resp, self._resp = self._resp, None
        sock, self._sock = self._sock, None
        if resp is not None:
            if getattr(resp.raw, "connection", True) is None:  # back in the pool
                sock = None
            try:
                resp.close()
            except Exception:
                self.log.debug("%s: closing the response failed", self.id, exc_info=True)
        if sock is not None:
            sock.close()

    def _interrupt(self) -> None:
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def _reconnect_on_eof(self) -> bool:
        return self.reconnect_on_eof

    def _on_stopped(self) -> None:
        if self._own_session:
            close_session(self._session)

    # -- reading -----------------------------------------------------------------------

    def _read_body(
        self,
        feed: Callable[[bytes], Sequence[Event]],
        errors: Callable[[], list[ProtocolError]],
        on_events: Callable[[Sequence[Event]], Optional[str]],
    ) -> str:
        """Read the response as it arrives, feed the parser, hand events on; ``"eof"`` at the end.

        ``errors()`` returns the parser's error list (checked by truthiness after each read),
        ``on_events`` publishes a batch and may return ``"done"`` to end the stream.
        """
        resp = self._resp
        if resp is None:
            return "eof"
        body = _BodyReader(resp, self._sock)
        read = self._logged(body.read) if self.debug else body.read
        # A batch that fills a quarter of the consumers' buffers is big enough: joining more
        # would only make the reader wait for room.
        join_below = self.buffer_config.max_size // 4
        size = self.chunk_size
        m = self._m
        stop = self._stop
        monotonic = time.monotonic
        try:
            while not stop.is_set():
                chunk = read(size)
                if not chunk:
                    return "eof"
                m.bytes_received += len(chunk)
                m.last_traffic_at = monotonic()
                events = feed(chunk)
                # More of the body already here (a read returns at once) joins this batch: one
                # hand-off to the consumers instead of several, never a wait for bytes to come.
                joined = 0
                while (
                    events
                    and joined < _COALESCE_READS
                    and len(events) < join_below
                    and body.more_ready()
                    and not errors()
                ):
                    try:
                        chunk = read(size)
                    except Exception:  # what was read before the failure goes out first
                        outcome = on_events(events)
                        if outcome is not None:
                            return outcome
                        raise
                    if not chunk:
                        break  # the end: the next read says so again
                    joined += 1
                    m.bytes_received += len(chunk)
                    events = [*events, *feed(chunk)]
                if events:
                    outcome = on_events(events)
                    if outcome is not None:
                        return outcome
                if errors():
                    self._parser_errors(errors())
        except (socket.timeout, TimeoutError) as exc:
            raise self._stalled(exc) from None
        except requests.RequestException as exc:
            raise self._read_failed(exc) from None
        except Exception as exc:
            if "timed out" in str(exc).lower():
                raise self._stalled(exc) from None
            if isinstance(exc, TransportError):
                raise
            raise self._read_failed(exc) from None
        return "eof"

    def _logged(self, read: Callable[[int], bytes]) -> Callable[[int], bytes]:
        """``read``, logging what each read returned (``debug=True``)."""

        def logged(size: int) -> bytes:
            chunk = read(size)
            self.log.debug("%s: read %d bytes: %s", self.id, len(chunk), snippet(chunk))
            return chunk

        return logged

    def _parser_errors(self, errors: list[ProtocolError]) -> None:
        """Report the parser's errors: a fatal one (over-long) ends the connection."""
        taken = list(errors)
        errors.clear()
        for error in taken:
            if error.retryable:
                raise error
            self._error(error)

    def _stalled(self, exc: BaseException) -> HeartbeatTimeout:
        return HeartbeatTimeout(f"no data for {self.idle_timeout} s (idle_timeout): stream stalled")

    def _read_failed(self, exc: BaseException) -> TransportError:
        if self._stop.is_set():
            return ConnectError("closed", retryable=False)
        if "IncompleteRead" in str(exc) or "InvalidChunkLength" in str(exc):
            return ConnectError(_CUT_IN_BODY, retryable=True)
        return ConnectError(f"connection lost: {describe_exception(exc)}", retryable=True)

    # -- sending -----------------------------------------------------------------------

    def send(self, data: Any, timeout: Optional[float] = None) -> None:
        """POST ``data`` as JSON to ``send_url`` (``NotSupportedError`` without one)."""
        if self.send_url is None:
            raise NotSupportedError(
                f"{type(self).__name__}.send() needs send_url",
                transport_id=self.id,
                url=self.safe_url,
            )
        if isinstance(data, (bytes, bytearray, memoryview)):
            body: Union[bytes, str] = bytes(data)
            content_type = "application/octet-stream"
        else:
            body = _json.dumps(data)
            content_type = "application/json"
        headers = dict(self.headers)
        headers["Content-Type"] = content_type
        try:
            resp = self._http(
                "POST", self.send_url, timeout=timeout or self.timeout, data=body, headers=headers
            )
        except requests.RequestException as exc:
            error = self._request_failed(exc)
            raise error.with_context(
                transport_id=self.id, url=redact_url(self.send_url), attempt=None
            ) from None
        with resp:
            if resp.status_code >= 300:
                raise HTTPStatusError(
                    f"send failed: HTTP {resp.status_code} {resp.reason or ''}".rstrip(),
                    status_code=resp.status_code,
                    transport_id=self.id,
                    url=redact_url(self.send_url),
                )
        self._m.messages_sent += 1
        self._m.bytes_sent += len(body)


def _is_tls_error(exc: BaseException) -> bool:
    seen = set()
    current: Optional[BaseException] = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ssl.SSLError):
            return True
        current = current.__cause__ or current.__context__
    return "CERTIFICATE_VERIFY_FAILED" in str(exc) or "SSLError" in str(exc)
