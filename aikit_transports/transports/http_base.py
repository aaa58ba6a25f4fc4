"""The HTTP side shared by SSE and HTTP streaming: one request on ``requests``, read as it arrives.

Each read is at most one socket read, so an event is handed on as soon as its last byte
arrives, whatever the framing (chunked, close-delimited, gzip) and ``chunk_size`` (see
:mod:`.http_body`). ``close()`` from another thread shuts the socket down, which wakes a reader
blocked in a read (``Response.close()`` alone would wait for the read to finish).

What is sent again (:meth:`HTTPTransportBase._resend_refused`): a request goes out again only
when that cannot repeat or invent data: it is idempotent, or it certainly never reached the
server, or the answer says it was not processed, or the stream resumes by ``Last-Event-ID``.
"""

from __future__ import annotations

import contextlib
import email.utils
import json as _json
import socket
import textwrap
import time
from collections import deque
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, TypeVar, Union

import requests

from ..errors import (
    ConnectError,
    HeartbeatTimeout,
    HTTPStatusError,
    NotSupportedError,
    ProtocolError,
    StreamInterrupted,
    TransportError,
)
from ..events import Event
from ..logs import server_text, snippet
from ..redact import describe_exception, redact_headers, redact_url
from ..validate import check_int
from .base import DONE, EOF_, BaseTransport
from .delivery import RECENT_IDS
from .failures import request_failure
from .http_body import COALESCE_READS, CUT_IN_BODY, BodyReader, response_socket
from .http_nonblocking import NonBlockingBody
from .redirects import follow_redirects
from .sessions import close_session, new_session, user_agent, watch_sockets

__all__ = ["BodyParser", "HTTPTransportBase", "parse_retry_after", "IDEMPOTENT_METHODS"]

_METHODS = ("GET", "POST", "PUT", "PATCH", "DELETE")
_HTTP_SCHEMES = ("http", "https")
#: Methods whose requests may be sent again without harm (RFC 9110 §9.2.2, as urllib3's Retry).
IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "PUT", "DELETE"})
#: Statuses that say the request was not processed, so even a POST may go out again.
_NOT_PROCESSED = frozenset({408, 425, 429, 503})
#: The most of an error answer's body kept in ``HTTPStatusError.body``.
_ERROR_BODY_BYTES = 4096
#: The longest ``Last-Event-ID`` sent (bytes of UTF-8); a longer id is not used to resume.
MAX_EVENT_ID_BYTES = 1024


#: A wire's parser as the reads use it: its ``feed``, its list of errors, and what publishes a
#: batch (and may return ``"done"``).
BodyParser = tuple[
    Callable[[bytes], Sequence[Event]],
    Callable[[], list[ProtocolError]],
    Callable[[Sequence[Event]], Optional[str]],
]


def parse_retry_after(value: Optional[str]) -> Optional[float]:
    """Seconds from a ``Retry-After`` header (delta-seconds or an HTTP date); ``None`` when it is
    neither. Absurd values stay finite (``max_retry_after`` then refuses them)."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value[:20])  # a float, however many digits: no overflow further on
    try:
        when = email.utils.parsedate_to_datetime(value)
        return max(0.0, when.timestamp() - time.time())
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def carriable_id(event_id: Optional[str]) -> Optional[str]:
    """``event_id`` as it goes into ``Last-Event-ID`` (surrounding whitespace trimmed), or
    ``None`` when it cannot go into a header (CR, LF, NUL, over 1,024 bytes, empty)."""
    if event_id is None:
        return None
    value = event_id.strip()
    if not value or "\r" in value or "\n" in value or "\0" in value:
        return None
    if len(value) > MAX_EVENT_ID_BYTES // 4 and len(value.encode("utf-8")) > MAX_EVENT_ID_BYTES:
        return None
    return value


#: The parameters every HTTP wire shares, appended to each wire's docstring (one text).
HTTP_OPTIONS_DOC = """\
:param url: ``http(s)://`` URL of the stream.
:param method: HTTP method (``GET``, ``POST``, ``PUT``, ``PATCH``, ``DELETE``).
:param headers: request headers (sent on every request, reconnects included).
:param params: query parameters added to the URL.
:param json: a JSON request body.
:param data: a raw request body (not with ``json``).
:param auth: any ``requests`` auth: a ``(user, password)`` pair, ``HTTPBasicAuth``, ...
:param session: a ``requests.Session`` to use (its pools, cookies, adapters).
:param send_url: where :meth:`send` POSTs (JSON), if anywhere.
:param timeout: seconds for connecting and receiving the whole response head.
:param idle_timeout: seconds without a byte (data or comment) before the stream counts as
    stalled and is dropped (``None``: never).
:param reconnect: a :class:`ReconnectPolicy`; ``None`` the default, ``False`` never.
:param buffer: a :class:`BufferConfig` for each consumer's buffer.
:param last_event_id: the id to resume from on the first request.
:param idempotent: whether sending the request again is harmless (``None``: GET, HEAD,
    OPTIONS, PUT and DELETE are, POST and PATCH are not).
:param reconnect_on_eof: whether the end of a response is a drop to reconnect from
    (``None``: the wire's rule above).
:param done_when: ``done_when(event) -> bool``: the first event it accepts is delivered,
    then the stream is ``done`` (``lambda e: e.type == "message_stop"``).
:param chunk_size: the most bytes taken by one read.
:param redirect_headers: header names that follow a redirect to another origin.
:param verify: verify TLS certificates (``True``), or a CA bundle path.
:param cert: a client certificate: a PEM path or a ``(cert, key)`` pair.
:param proxies: ``requests``-style proxies (environment variables apply otherwise).
:param debug: log this transport's wire-level lines whatever the logger's level.
:param id: the transport's id (a short uuid by default).
:param scheduler: the timer scheduler (a manager passes its own).
"""

_T = TypeVar("_T", bound=type)


def with_http_options_doc(cls: _T) -> _T:
    """Append :data:`HTTP_OPTIONS_DOC` to the docstring of the wire ``cls``."""
    doc = (cls.__doc__ or "").rstrip()
    cls.__doc__ = doc + "\n\n" + textwrap.indent(HTTP_OPTIONS_DOC, "    ")
    return cls


class HTTPTransportBase(BaseTransport):
    """A transport whose stream is the body of one HTTP response (SSE, NDJSON, long-poll).

    ``idempotent`` (``None``: decided by the method) says whether the request may be sent again;
    ``reconnect_on_eof`` (``None``: the wire decides) whether the end of a response is a drop.
    """

    schemes = _HTTP_SCHEMES
    shared_io = True

    def __init__(
        self,
        url: str,
        *,
        method: str,
        params: Optional[Mapping[str, Any]],
        json: Any,
        data: Any,
        auth: Any,
        session: Optional[requests.Session],
        send_url: Optional[str],
        idempotent: Optional[bool],
        reconnect_on_eof: Optional[bool],
        done_when: Optional[Callable[[Event], Any]],
        chunk_size: int,
        **base: Any,
    ) -> None:
        super().__init__(url, **base)
        method = str(method).upper()
        if method not in _METHODS:
            raise ValueError(f"method must be one of {', '.join(_METHODS)}, not {method!r}")
        if json is not None and data is not None:
            raise ValueError("json and data cannot both be given")
        if session is not None and not isinstance(session, requests.Session):
            raise ValueError("session must be a requests.Session")
        if send_url is not None and not str(send_url).lower().startswith(("http://", "https://")):
            raise ValueError("send_url must be an http:// or https:// URL")
        for name, flag in (("idempotent", idempotent), ("reconnect_on_eof", reconnect_on_eof)):
            if flag is not None and not isinstance(flag, bool):
                raise ValueError(f"{name} must be True, False or None, not {flag!r}")
        if done_when is not None and not callable(done_when):
            raise ValueError("done_when must be a callable taking an Event, or None")
        if auth is not None and not (callable(auth) or _is_pair(auth)):
            raise ValueError("auth must be a requests auth object or a (user, password) pair")
        check_int("chunk_size", chunk_size)
        self.method = method
        self.params = dict(params) if params else None
        self.json_body = json
        self.data_body = data
        self.auth = tuple(auth) if _is_pair(auth) else auth
        self.send_url = send_url
        self.idempotent: bool = method in IDEMPOTENT_METHODS if idempotent is None else idempotent
        self.reconnect_on_eof = reconnect_on_eof
        self.done_when = done_when
        self.chunk_size = chunk_size
        self._own_session = session is None
        self._session = session if session is not None else new_session(2)
        self._resp: Optional[requests.Response] = None
        self._sock: Optional[socket.socket] = None
        self._ready_body: Optional[NonBlockingBody] = None
        self._parse: BodyParser  # the wire's parser, for the read under way
        self._head_expired = False
        self._sent_event_id: Optional[str] = None
        self._bad_id_reported: Optional[str] = None
        self._recent_ids = deque(maxlen=RECENT_IDS)

    # -- building and sending requests -------------------------------------------------

    def _default_headers(self) -> dict[str, str]:
        """Headers the wire sends unless the user gave their own."""
        return {}

    def _request_headers(self) -> dict[str, Union[str, bytes]]:
        headers: dict[str, Union[str, bytes]] = dict(self._default_headers())
        if self._session.headers.get("User-Agent") == requests.utils.default_user_agent():
            headers["User-Agent"] = user_agent()  # a user's own session, as requests made it
        headers.update(self.headers)
        resume = self._resume_id(report=True)
        self._sent_event_id = resume
        if resume is not None:
            # UTF-8, as browsers send it (``http.client`` would encode a str as Latin-1)
            headers["Last-Event-ID"] = resume if resume.isascii() else resume.encode("utf-8")
        return headers

    def _resume_id(self, *, report: bool = False) -> Optional[str]:
        """The id the next request resumes from: the last one seen, or when it cannot go in a
        header, the last one that could (``report``: one ``error`` event says so)."""
        current = self._current_event_id()
        if current is None:
            return None
        carried = carriable_id(current)
        if carried is not None:
            return carried
        if report and current != self._bad_id_reported:
            self._bad_id_reported = current
            self._error(
                ProtocolError(
                    f"event id {server_text(current, 60)!r} cannot be sent in Last-Event-ID "
                    f"(CR, LF, NUL or over {MAX_EVENT_ID_BYTES} bytes): a reconnect resumes from "
                    "the last id that can be sent, if any"
                )
            )
        for older in reversed(self._recent_ids or ()):
            carried = carriable_id(older)
            if carried is not None:
                return carried
        return carriable_id(self._initial_event_id)

    def _request(self, stream: bool = True) -> requests.Response:
        """Make the stream request; a typed error for anything but a 2xx answer.

        The whole response head must arrive within the head deadline (``timeout``; for a long
        poll ``idle_timeout``), however slowly the server sends it: at the deadline the
        connection is cut (the reader is woken by shutting its socket down).
        """
        headers = self._request_headers()
        if self.debug:
            self.log.debug(
                "%s: %s %s headers=%s",
                self.id,
                self.method,
                self.safe_url,
                redact_headers(headers),  # type: ignore[arg-type]
            )
        head_timeout = self._head_timeout()
        self._head_expired = False
        timer = (
            self._scheduler_or_default().call_later(head_timeout, self._head_deadline)
            if head_timeout is not None
            else None
        )
        try:
            try:
                with watch_sockets(self._watch_socket):
                    resp = self._http(
                        self.method,
                        self.url,
                        timeout=(self.timeout, head_timeout),
                        stream=stream,
                        params=self.params,
                        json=self.json_body,
                        data=self.data_body,
                        headers=headers,
                        auth=self.auth,
                    )
            except requests.RequestException as exc:
                raise self._request_failed(exc) from exc.__cause__
            if self.debug:
                self.log.debug(
                    "%s: HTTP %d %s headers=%s",
                    self.id,
                    resp.status_code,
                    server_text(resp.reason),
                    redact_headers(resp.headers),
                )
            if resp.status_code >= 300:
                self._raise_status(resp)  # its body is read within the deadline too
        finally:
            if timer is not None:
                timer.cancel()
        if self._head_expired:  # the deadline struck just as the head arrived
            resp.close()
            raise self._request_failed(requests.exceptions.ReadTimeout("response head"))
        return resp

    def _head_deadline(self) -> None:
        """The response head did not arrive in time: cut the connection (timer thread)."""
        self._head_expired = True
        self._interrupt()

    def _head_timeout(self) -> Optional[float]:
        """Seconds for connecting and receiving the whole response head."""
        return self.timeout

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

    def _watch_socket(self, sock: socket.socket) -> None:
        """Remember the socket of the request under way, so that ``close()`` can cut it."""
        self._sock = sock
        if self._stop.is_set() or self._head_expired:
            self._interrupt()

    def _request_failed(self, exc: requests.RequestException) -> TransportError:
        """A typed, credential-free error in our words for a failed request."""
        return request_failure(
            exc,
            self.url,
            timeout=self._head_timeout() or self.timeout,
            head_expired=self._head_expired,
        )

    def _raise_status(self, resp: requests.Response) -> None:
        """Raise ``HTTPStatusError`` for ``resp``, with its headers and the start of its body."""
        status = resp.status_code
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(resp.headers.get("Retry-After"))
        body = _error_body(resp)
        if getattr(resp.raw, "connection", True) is None:
            self._sock = None  # read to its end: the connection went back to the pool
        reason = server_text(resp.reason or "")
        resp.close()
        raise HTTPStatusError(
            f"HTTP {status} {reason}".rstrip(),
            status_code=status,
            retry_after=retry_after,
            headers=dict(resp.headers),
            body=body,
            retryable=status in self.policy.retry_statuses,
        )

    def _attach(self, resp: requests.Response) -> None:
        """Keep ``resp`` as the current stream and arm the idle timeout on its socket. When the
        request resumed (``Last-Event-ID``), its first events are checked for a replay."""
        self._resp = resp
        self._sock = sock = response_socket(resp)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.settimeout(self.idle_timeout)
        recent = self._recent_ids
        self._replay_ids = set(recent) if self._sent_event_id is not None and recent else None
        if self._stop.is_set():  # closed while the request was under way
            self._release()

    def _release(self) -> None:
        """Close the response and its socket: a stream's connection is never handed back to
        the pool half-read, and the socket goes even if something still holds the response.
        A body read to its end was already handed back by urllib3: its socket is left open."""
        resp, self._resp = self._resp, None
        sock, self._sock = self._sock, None
        self._ready_body = None
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

    # -- what is sent again ------------------------------------------------------------

    def _resumable(self) -> bool:
        """Whether a new request would resume the stream: it carries a ``Last-Event-ID``."""
        return self._resume_id() is not None

    def _reconnect_on_eof(self) -> bool:
        """Whether the end of a response is a drop to reconnect from (see each wire's default);
        an explicit ``True`` makes it a drop, which a non-resendable request cannot recover."""
        if self.reconnect_on_eof is not None:
            return self.reconnect_on_eof
        return self._eof_reconnects()

    def _eof_reconnects(self) -> bool:
        return self.idempotent

    def _resend_refused(self, error: TransportError, *, ended: bool) -> Optional[TransportError]:
        if self.idempotent or self._resumable():
            return None
        if not ended and (
            (isinstance(error, ConnectError) and error.request_sent is False)
            or (isinstance(error, HTTPStatusError) and error.status_code in _NOT_PROCESSED)
        ):
            return None  # it never reached the server, or the server says it did nothing
        delivered = self._m.messages_received
        interrupted = StreamInterrupted(
            f"{self.method} stream interrupted after {delivered} events and not sent again "
            f"(not idempotent, no event id to resume from): {error.message}",
            events_delivered=delivered,
            last_event_id=self._current_event_id(),
            transport_id=self.id,
            url=self.safe_url,
            attempt=self._attempt,
        )
        interrupted.__cause__ = error
        return interrupted

    def _on_stopped(self) -> None:
        if self._own_session:
            close_session(self._session)

    def _on_events(self, events: Sequence[Event]) -> Optional[str]:
        """Publish ``events``; with ``done_when``, up to the first it accepts, then ``"done"``."""
        done_when = self.done_when
        if done_when is not None:
            for index, event in enumerate(events):
                try:
                    hit = done_when(event)
                except Exception as exc:  # like a listener's: reported, the stream goes on
                    self._listener_failed(exc, "done_when")
                    continue
                if hit:
                    self._publish(events[: index + 1])
                    return DONE
        self._publish(events)
        return None

    # -- reading -----------------------------------------------------------------------

    def _body_parser(self) -> BodyParser:
        """The wire's parser: its ``feed``, its error list, and what publishes a batch."""
        raise NotImplementedError

    def _body_ended(self, outcome: str) -> str:
        """The outcome of a read once the body ended (NDJSON flushes a last line here)."""
        return outcome

    def _read_blocking(self) -> str:
        # a body only urllib3 decodes (br, zstd), or no socket of http.client's to read
        return self._body_ended(self._read_body(*self._body_parser()))

    def _read_start(self) -> Optional[socket.socket]:
        body = NonBlockingBody.open(self._resp, self._sock) if self._resp is not None else None
        self._ready_body = body
        self._parse = self._body_parser()
        return None if body is None else self._sock

    def _read_ready(self) -> Optional[str]:
        body = self._ready_body
        if body is None:
            return EOF_
        feed, errors, on_events = self._parse
        m = self._m
        size = self.chunk_size
        io = self._io
        try:
            while True:
                chunk = body.read(size)
                if chunk is None:
                    return None
                if not chunk:
                    return self._body_ended(EOF_)
                if self.debug:
                    self.log.debug("%s: read %d bytes: %s", self.id, len(chunk), snippet(chunk))
                m.bytes_received += len(chunk)
                m.last_traffic_at = time.monotonic()
                outcome = self._hand_on(feed(chunk), on_events, errors)
                if outcome is not None:
                    return outcome
                if (io is not None and io.holding()) or not body.more():
                    return None
        except TransportError:
            raise
        except Exception as exc:
            raise self._read_failed(exc) from None

    def _stall_limit(self) -> Optional[float]:
        return self.idle_timeout

    def _stall_error(self) -> TransportError:
        return self._stalled(None)

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
        body = BodyReader(resp, self._sock)
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
                    and joined < COALESCE_READS
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
                outcome = self._hand_on(events, on_events, errors)
                if outcome is not None:
                    return outcome
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

    def _hand_on(
        self,
        events: Sequence[Event],
        on_events: Callable[[Sequence[Event]], Optional[str]],
        errors: Callable[[], list[ProtocolError]],
    ) -> Optional[str]:
        """Publish what a read parsed, then report the parser's errors (a fatal one raises);
        ``"done"`` when the batch ended the stream."""
        if events:
            outcome = on_events(events)
            if outcome is not None:
                return outcome
        if errors():
            self._parser_errors(errors())
        return None

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

    def _stalled(self, exc: Optional[BaseException]) -> HeartbeatTimeout:
        return HeartbeatTimeout(f"no data for {self.idle_timeout} s (idle_timeout): stream stalled")

    def _read_failed(self, exc: BaseException) -> TransportError:
        if self._stop.is_set():
            return ConnectError("closed", retryable=False)
        if "IncompleteRead" in str(exc) or "InvalidChunkLength" in str(exc):
            return ConnectError(CUT_IN_BODY, retryable=True)
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
                reason = server_text(resp.reason or "")
                raise HTTPStatusError(
                    f"send failed: HTTP {resp.status_code} {reason}".rstrip(),
                    status_code=resp.status_code,
                    transport_id=self.id,
                    url=redact_url(self.send_url),
                )
        self._m.messages_sent += 1
        self._m.bytes_sent += len(body)


def _is_pair(value: Any) -> bool:
    return isinstance(value, (tuple, list)) and len(value) == 2


def _error_body(resp: requests.Response) -> Union[str, bytes, None]:
    """The first 4 KiB of an error answer's body: text when it decodes, else bytes."""
    try:
        raw = resp.raw.read(_ERROR_BODY_BYTES, decode_content=True)
    except Exception:  # a cut, a bad encoding: the status says enough
        return None
    if not raw:
        return None
    raw = raw[:_ERROR_BODY_BYTES]
    try:
        return raw.decode(resp.encoding or "utf-8")
    except (UnicodeDecodeError, LookupError):
        return raw
