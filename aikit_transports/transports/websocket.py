"""WebSocket over ``websocket-client``'s low-level ``WebSocket`` object, on the shared base.

``websocket-client`` opens the connection (TCP, HTTP proxy, TLS, the upgrade handshake) and
formats outgoing frames; incoming frames are parsed here by :class:`FrameParser`, a sans-I/O
parser fed with whole socket reads. Reading 64 KiB at a time (rather than the library's
header-then-payload reads) hands every message already received to consumers as one batch,
checks ``max_message_bytes`` from the frame header before the payload is buffered, and
validates UTF-8 with ``bytes.decode`` (in C).

Locks and queues, each named for its job:

``_frame_write_lock``   one whole frame at a time goes onto the socket; it also guards the
                        send queue and ``_writable`` (the socket application frames may use)
``_pending_sends``      messages sent while no connection could take them, flushed in order
                        when the next connection opens, before any newer send
``_sends_flushed``      a condition on ``_frame_write_lock``: ``close()`` waits on it for the
                        queue to drain
``_heartbeat_lock``     the ping bookkeeping shared by the heartbeat timers
"""

from __future__ import annotations

import collections
import contextlib
import functools
import json as _json
import os
import select
import socket
import ssl
import threading
import time
from typing import Any, Deque, List, NamedTuple, Optional, Sequence, Tuple
from urllib.parse import unquote, urljoin, urlsplit

import websocket
from websocket import ABNF

from ..errors import (
    BufferFullError,
    ConnectError,
    HeartbeatTimeout,
    HTTPStatusError,
    MessageTooLarge,
    ProtocolError,
    TransportClosedError,
    TransportError,
    UnsentMessagesError,
    WebSocketClosed,
)
from ..events import TransportType
from ..logs import snippet
from ..parsers.websocket import (
    NORMAL_CLOSE_CODES,
    OP_BINARY,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    OP_TEXT,
    RECONNECT_CLOSE_CODES,
    FrameError,
    FrameParser,
    close_code_name,
)
from ..redact import describe_exception, is_secret_header, redact_headers, redact_url
from ..timers import TimerHandle
from ..validate import check_int, check_seconds
from .base import DONE, EOF_, BaseTransport
from .http_base import parse_retry_after
from .sessions import user_agent

__all__ = ["WebSocketTransport"]

_READ_SIZE = 65536
#: How long ``close()`` waits for the server's reply to its close frame.
_CLOSE_REPLY_WAIT = 1.0
#: Redirects a handshake may follow (as ``websocket-client`` allows by default).
_MAX_REDIRECTS = 3
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)


class _Outgoing(NamedTuple):
    """A message waiting for a connection: what the user gave, and its frame on the wire."""

    data: Any
    frame: bytes


def _encode(data: Any) -> Tuple[bytes, int]:
    """The payload and opcode for ``data`` (str → text, bytes-like → binary, dict/list → JSON)."""
    if isinstance(data, str):
        return data.encode("utf-8"), OP_TEXT
    if isinstance(data, (bytes, bytearray, memoryview)):
        return bytes(data), OP_BINARY
    if isinstance(data, (dict, list)):
        try:
            return _json.dumps(data).encode("utf-8"), OP_TEXT
        except (TypeError, ValueError) as exc:
            raise TypeError(
                f"send(): the {type(data).__name__} is not JSON serializable: {exc}"
            ) from None
    raise TypeError(
        f"send() takes str, bytes, bytearray, memoryview, dict or list, not {type(data).__name__}"
    )


def _frame(payload: bytes, opcode: int) -> bytes:
    """A masked client frame (RFC 6455 §5.3), formatted by websocket-client."""
    return ABNF.create_frame(payload, opcode).format()


_CLOSE_NORMAL_FRAME_PAYLOAD = (1000).to_bytes(2, "big")

if hasattr(select, "poll"):

    def _can_write(sock: socket.socket) -> bool:
        poller = select.poll()
        poller.register(sock, select.POLLOUT)
        return bool(poller.poll(0))

else:  # pragma: no cover - Windows

    def _can_write(sock: socket.socket) -> bool:
        return bool(select.select([], [sock], [], 0)[1])


def _closed(code: int, reason: str = "", detail: str = "") -> WebSocketClosed:
    """The error for a connection that ended with ``code``."""
    message = f"connection closed with code {code} ({close_code_name(code)})"
    if reason or detail:
        message += f": {(reason or detail)[:200]}"
    return WebSocketClosed(
        message, code=code, reason=reason, retryable=code in RECONNECT_CLOSE_CODES
    )


def _default_ca_bundle() -> str:
    """The CA bundle ``requests`` uses: ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, else certifi."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name)
        if value:
            return value
    from requests.utils import DEFAULT_CA_BUNDLE_PATH

    return str(DEFAULT_CA_BUNDLE_PATH)


class WebSocketTransport(BaseTransport):
    """A WebSocket connection that reconnects, queues sends while disconnected and pings.

    Messages: a text frame becomes ``Event(type="message", data=str)``, a binary frame
    ``Event(type="binary", data=bytes)``; fragmented messages are reassembled. A message over
    ``max_message_bytes`` closes the connection with 1009 and raises ``MessageTooLarge`` (a
    ``ProtocolError``); invalid UTF-8 in a text message closes it with 1007 and a
    ``ProtocolError``; a malformed frame closes it with 1002. These three are retryable: the
    messages received before them are delivered, and the transport reconnects by its policy.

    Close codes: 1000, or a close frame without a code, ends the stream (``done``);
    1001, 1006 (lost), 1011, 1012, 1013 and 1014 reconnect; any other code fails the transport
    with :class:`WebSocketClosed` (``code``, ``reason``). ``close()`` sends 1000 and waits up to
    a second for the server's reply.

    Heartbeat: a ping every ``heartbeat_interval`` seconds (``None`` turns it off) on the
    shared scheduler (the manager's pool when a manager owns the transport), never a thread per
    transport. When nothing at all (pong or other frame) arrives within ``heartbeat_timeout``
    of a ping, the connection is dropped with ``HeartbeatTimeout`` and reconnected. The
    deadline only runs while the reader waits on the socket: a reader stopped by the ``block``
    buffer strategy, or busy in a listener, never causes it. ``metrics.ping_rtt_ms`` is the
    last ping's round trip. Without heartbeats, ``idle_timeout`` of silence drops the connection
    the same way.

    Sending: ``send()`` is thread-safe; each frame is written whole under one lock, so frames of
    concurrent sends never interleave. Before ``connect()``, and while the transport reconnects,
    sends wait in a bounded queue (``send_queue_size``; ``BufferFullError`` at once when full)
    and are flushed in order when the next connection opens, before any newer send goes out
    (the state becomes ``connected`` only after the flush). ``close()`` waits up to its
    ``timeout`` for the queue to drain.

    Which sends can be lost when a connection dies:

    * A send whose write *fails* (an error or a write timeout part-way through the frame) is
      never lost: the frame cannot have reached the server whole, so the message goes back to
      the head of the queue and is sent again on the next connection; ``send()`` returns as for
      a queued message.
    * A send whose write *succeeded* (``send()`` returned without queueing) went to the
      kernel's buffer. If the connection dies before the server reads it, it is lost, and no
      client can tell: WebSocket has no acknowledgements. This includes sends made after the
      server went away but before the transport noticed (the kernel accepts bytes until the
      peer's reset comes back). Use application-level acks where that matters.
    * Messages still queued when the transport ends (attempts exhausted, a close code that is
      not retried, ``done``, or ``close()`` whose timeout ran out before a connection took them)
      are reported, never dropped silently: one ``error`` event carrying an
      :class:`UnsentMessagesError` whose ``unsent`` lists them in order.

    Options: ``headers`` go with the handshake (never logged), as do ``subprotocols`` (the one
    the server chose is ``subprotocol``) and ``origin``; ``last_event_id``, when given, is sent
    as a ``Last-Event-ID`` header. ``verify``, ``cert`` and ``proxies`` take the ``requests``
    forms (an HTTP CONNECT proxy under the ``ws``/``wss``, ``http``/``https`` or ``all`` key;
    ``http_proxy`` / ``https_proxy`` from the environment otherwise). ``timeout`` bounds the
    connect, the handshake and the writing of each frame.
    """

    type = TransportType.WEBSOCKET
    schemes = ("ws", "wss")
    logger_name = "aikit_transports.websocket"

    def __init__(
        self,
        url: str,
        *,
        headers: Optional[dict[str, str]] = None,
        subprotocols: Optional[Sequence[str]] = None,
        origin: Optional[str] = None,
        heartbeat_interval: Optional[float] = 30.0,
        heartbeat_timeout: float = 10.0,
        send_queue_size: int = 1000,
        max_message_bytes: int = 16 << 20,
        **options: Any,
    ) -> None:
        super().__init__(url, headers=headers, **options)
        if subprotocols is not None and (
            isinstance(subprotocols, (str, bytes))
            or not all(isinstance(p, str) and p for p in subprotocols)
        ):
            raise ValueError("subprotocols must be a list of non-empty strings")
        if origin is not None and not isinstance(origin, str):
            raise ValueError("origin must be a string")
        check_seconds("heartbeat_interval", heartbeat_interval)
        check_seconds("heartbeat_timeout", heartbeat_timeout, allow_none=False)
        check_int("send_queue_size", send_queue_size, minimum=0)
        check_int("max_message_bytes", max_message_bytes)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.headers.items()):
            raise ValueError("headers must map strings to strings")
        self.subprotocols: Optional[List[str]] = list(subprotocols) if subprotocols else None
        self.origin = origin
        self.heartbeat_interval = heartbeat_interval
        self.heartbeat_timeout = float(heartbeat_timeout)
        self.send_queue_size = send_queue_size
        self.max_message_bytes = max_message_bytes
        #: The subprotocol the server chose on the current (or last) connection.
        self.subprotocol: Optional[str] = None
        self._connect_options = self._build_connect_options()
        self._sslopt = self._build_sslopt()
        # Without heartbeats, reads wake up often enough to notice idle_timeout of silence.
        idle = self.idle_timeout
        self._io_timeout = (
            self.timeout if heartbeat_interval or not idle else min(self.timeout, idle)
        )

        self._parser = FrameParser(max_message_bytes, self.id)
        self._ws: Optional[websocket.WebSocket] = None
        self._sock: Optional[socket.socket] = None
        self._recv_since: Optional[float] = None  # set while the reader waits on the socket
        self._heartbeat_error: Optional[HeartbeatTimeout] = None
        self._write_error: Optional[BaseException] = None
        self._pong_due: Optional[bytes] = None
        self._closing = False  # our close frame went out on this connection
        self._close_reply = threading.Event()

        self._frame_write_lock = threading.Lock()
        self._sends_flushed = threading.Condition(self._frame_write_lock)
        self._pending_sends: Deque[_Outgoing] = collections.deque()
        self._writable: Optional[socket.socket] = None
        self._sending_closed = False

        self._heartbeat_lock = threading.Lock()
        self._heartbeat_timer: Optional[TimerHandle] = None
        self._heartbeat_check: Optional[TimerHandle] = None
        self._heartbeat_sock: Optional[socket.socket] = None
        self._ping_sent_at: Optional[float] = None
        self._ping_payload: Optional[bytes] = None
        self._ping_count = 0

    # -- options ------------------------------------------------------------------------

    def _build_connect_options(self) -> dict[str, Any]:
        headers = dict(self.headers)
        if self._initial_event_id is not None and not any(
            k.lower() == "last-event-id" for k in headers
        ):
            headers["Last-Event-ID"] = self._initial_event_id
        if not any(k.lower() == "user-agent" for k in headers):
            headers["User-Agent"] = user_agent("websocket-client")
        options: dict[str, Any] = {"header": headers, "timeout": self.timeout}
        if self.subprotocols:
            options["subprotocols"] = self.subprotocols
        if self.origin is not None:
            options["origin"] = self.origin
        options.update(self._proxy_options())
        return options

    def _proxy_options(self) -> dict[str, Any]:
        proxies = self.proxies
        if not proxies:
            return {}
        if not hasattr(proxies, "get"):
            raise ValueError("proxies must be a mapping of schemes to proxy URLs")
        secure = self.url.lower().startswith("wss:")
        proxy_url = (
            proxies.get("wss" if secure else "ws")
            or proxies.get("https" if secure else "http")
            or proxies.get("all")
        )
        if not proxy_url:
            return {}
        if not isinstance(proxy_url, str):
            raise ValueError("proxies must map schemes to proxy URL strings")
        parts = urlsplit(proxy_url if "://" in proxy_url else f"http://{proxy_url}")
        kind = parts.scheme.lower()
        if kind == "https":
            kind = "http"
        if kind not in ("http", "socks4", "socks4a", "socks5", "socks5h"):
            raise ValueError(f"proxies: unsupported proxy scheme {parts.scheme!r}")
        if not parts.hostname:
            raise ValueError("proxies: a proxy URL needs a host")
        try:
            port = parts.port or 80
        except ValueError:
            raise ValueError("proxies: bad proxy port") from None
        options: dict[str, Any] = {
            "http_proxy_host": parts.hostname,
            "http_proxy_port": port,
            "proxy_type": kind,
            "http_proxy_timeout": self.timeout,
        }
        if parts.username:
            options["http_proxy_auth"] = (unquote(parts.username), unquote(parts.password or ""))
        return options

    def _build_sslopt(self) -> dict[str, Any]:
        opt: dict[str, Any] = {}
        if self.verify is False:
            opt["cert_reqs"] = ssl.CERT_NONE
            opt["check_hostname"] = False
        else:
            opt["cert_reqs"] = ssl.CERT_REQUIRED
            path = self.verify if isinstance(self.verify, str) else _default_ca_bundle()
            opt["ca_cert_path" if os.path.isdir(path) else "ca_certs"] = path
        cert = self.cert
        if cert is not None:
            if isinstance(cert, str):
                opt["certfile"] = cert
            elif (
                isinstance(cert, tuple)
                and len(cert) == 2
                and all(isinstance(part, str) for part in cert)
            ):
                opt["certfile"], opt["keyfile"] = cert
            else:
                raise ValueError("cert must be a PEM path or a (cert, key) pair of paths")
        return opt

    # -- sending ------------------------------------------------------------------------

    def send(self, data: Any, timeout: Optional[float] = None) -> None:
        """Send ``data`` (str → text, bytes-like → binary, dict/list → JSON text).

        Returns once the frame is written, or queued while there is no connection
        (``BufferFullError`` when the queue is full). ``timeout`` bounds the wait for other
        sends to finish their frames (then ``TimeoutError``, and nothing is sent).
        """
        if timeout is not None:
            check_seconds("timeout", timeout)
        payload, opcode = _encode(data)
        frame = _frame(payload, opcode)
        lock = self._frame_write_lock
        if not lock.acquire(timeout=-1 if timeout is None else timeout):
            raise TimeoutError(f"send(): other sends held the connection for {timeout} s")
        try:
            if self._sending_closed:
                raise TransportClosedError(
                    "cannot send: the transport is closed", transport_id=self.id, url=self.safe_url
                )
            sock = self._writable
            if sock is None:
                if len(self._pending_sends) >= self.send_queue_size:
                    raise BufferFullError(
                        f"send queue is full ({self.send_queue_size} messages wait for a "
                        f"connection)",
                        transport_id=self.id,
                        url=self.safe_url,
                    )
                self._pending_sends.append(_Outgoing(data, frame))
                return
            try:
                sock.sendall(frame)
            except OSError as exc:
                # The frame did not go out whole, so the server cannot have it: it goes first
                # in the queue for the next connection, and the connection is dropped.
                self._pending_sends.appendleft(_Outgoing(data, frame))
                self._writable = None
                self._write_error = exc
                _shutdown(sock)
                return
            m = self._m
            m.messages_sent += 1
            m.bytes_sent += len(frame)
        finally:
            lock.release()

    def _flush_pending(self, sock: socket.socket) -> None:
        """Send what waited for a connection, in order, then open the socket to ``send()``."""
        with self._frame_write_lock:
            pending = self._pending_sends
            m = self._m
            while pending:
                frame = pending[0].frame
                sock.sendall(frame)  # a failure leaves the message at the head of the queue
                pending.popleft()
                m.messages_sent += 1
                m.bytes_sent += len(frame)
            self._writable = sock
            self._sends_flushed.notify_all()

    def _write_control(self, sock: socket.socket, opcode: int, payload: bytes, wait: bool) -> bool:
        """Write a ping, pong or close frame if the socket can take it now; whether it went.

        ``wait=False`` gives up at once when a send holds the lock (timers and the reader
        must not block on a stalled peer); a close frame also ends application sends.
        """
        lock = self._frame_write_lock
        if not lock.acquire(timeout=self.timeout if wait else 0):
            return False
        try:
            if self._writable is not sock:
                return False
            if opcode == OP_CLOSE:
                self._writable = None
            if not _can_write(sock):
                return False
            sock.sendall(_frame(payload, opcode))
            return True
        except OSError:
            return False
        finally:
            lock.release()

    # -- connection ---------------------------------------------------------------------

    def _open(self) -> None:
        self._parser.reset()
        self._heartbeat_error = None
        self._write_error = None
        self._pong_due = None
        self._closing = False
        self._close_reply.clear()
        if self.debug:
            self.log.debug(
                "%s: connecting to %s headers=%s",
                self.id,
                self.safe_url,
                redact_headers(self._connect_options.get("header")),
            )
        ws, sock = self._handshake()
        self._sock = sock
        self.subprotocol = ws.subprotocol
        if self.debug:
            self.log.debug(
                "%s: handshake done: HTTP %s subprotocol=%s headers=%s",
                self.id,
                ws.getstatus(),
                ws.subprotocol,
                redact_headers(ws.getheaders()),
            )
        try:
            if self._stop.is_set():
                raise ConnectError("closed", retryable=False)
            sock.settimeout(self._io_timeout)
            self._flush_pending(sock)
        except OSError as exc:
            self._release()
            raise ConnectError(
                f"connection lost while sending queued messages: {describe_exception(exc)}",
                retryable=True,
            ) from None
        except BaseException:
            self._release()
            raise

    def _handshake(self) -> Tuple[websocket.WebSocket, socket.socket]:
        """Connect and upgrade, following up to ``_MAX_REDIRECTS`` redirects ourselves:
        never from ``wss`` to ``ws``, and without credential headers once the origin changes
        (``websocket-client``'s own redirects would send every header anywhere)."""
        url = self.url
        options = self._connect_options
        hops = 0
        while True:
            ws = websocket.WebSocket(
                sslopt=self._sslopt, skip_utf8_validation=True, enable_multithread=False
            )
            self._ws = ws  # from here on, _interrupt() can shut the socket during the handshake
            try:
                ws.connect(url, redirect_limit=0, **options)  # type: ignore[no-untyped-call]
                if _redirect_target(ws, url) is not None:  # websocket-client < 1.9.1: no error
                    raise websocket.WebSocketException("redirected")
                sock = ws.sock
                if sock is None:
                    raise ConnectError("connection failed: no socket after the handshake")
                return ws, sock
            except Exception as exc:
                self._ws = None
                ws.shutdown()  # type: ignore[no-untyped-call]
                if self._stop.is_set():
                    raise ConnectError("closed", retryable=False) from None
                target = _redirect_target(ws, url)
                if target is None:
                    raise self._connect_failed(exc) from None
            hops += 1
            if hops > _MAX_REDIRECTS:
                raise ConnectError(f"more than {_MAX_REDIRECTS} redirects", retryable=False)
            if url.lower().startswith("wss:") and not target.lower().startswith("wss:"):
                raise ConnectError(
                    f"refused to follow a redirect from wss to {redact_url(target)}: the "
                    "connection would be in plain text",
                    retryable=False,
                )
            if _origin(target) != _origin(url):
                headers = options.get("header") or {}
                options = dict(options)
                options["header"] = {k: v for k, v in headers.items() if not is_secret_header(k)}
            url = target

    def _connect_failed(self, exc: BaseException) -> TransportError:
        """A typed, credential-free error for a failed connect or handshake."""
        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, websocket.WebSocketBadStatusException):
            status = exc.status_code
            headers = exc.resp_headers or {}
            retry_after = None
            if status in (429, 503):
                retry_after = parse_retry_after(headers.get("retry-after"))
            reason = getattr(exc, "status_message", None) or ""  # websocket-client < 1.9.1 has none
            return HTTPStatusError(
                f"WebSocket handshake refused: HTTP {status} {reason}".rstrip(),
                status_code=status,
                retry_after=retry_after,
            )
        if isinstance(exc, ssl.SSLCertVerificationError):
            return ConnectError(
                f"TLS failed: the server's certificate did not verify ({exc.verify_message}); "
                "nothing is sent without verification: pass verify=<CA bundle path> to trust "
                "a private CA",
                retryable=False,
            )
        if isinstance(exc, ssl.SSLError):
            return ConnectError(f"TLS handshake failed: {describe_exception(exc)}", retryable=True)
        if isinstance(exc, (websocket.WebSocketTimeoutException, socket.timeout)):
            return ConnectError(
                f"timed out after {self.timeout} s: {describe_exception(exc)}", retryable=True
            )
        if isinstance(exc, websocket.WebSocketProxyException):
            return ConnectError(f"proxy failed: {describe_exception(exc)}", retryable=True)
        if isinstance(exc, websocket.WebSocketAddressException):
            return ConnectError(
                f"could not resolve the host: {describe_exception(exc)}", retryable=True
            )
        if isinstance(exc, (websocket.WebSocketConnectionClosedException, OSError)):
            return ConnectError(f"connection failed: {describe_exception(exc)}", retryable=True)
        text = str(exc)
        if "SSL" in text and ("certificate" in text or "loading failed" in text):
            return ConnectError(
                f"TLS configuration failed: {describe_exception(exc)}", retryable=False
            )
        if "Invalid WebSocket Header" in text:
            offered = (
                f" (none of the subprotocols {self.subprotocols} was accepted?)"
                if self.subprotocols
                else ""
            )
            return ProtocolError(
                f"WebSocket handshake failed: the server's upgrade response is not valid{offered}",
                retryable=False,
            )
        return ConnectError(
            f"WebSocket handshake failed: {describe_exception(exc)}", retryable=True
        )

    def _release(self) -> None:
        self._stop_heartbeat()
        ws, self._ws = self._ws, None
        sock, self._sock = self._sock, None
        self._recv_since = None
        if sock is not None:
            _shutdown(sock)  # wakes a send blocked on this socket, so the lock comes free
        with self._frame_write_lock:
            self._writable = None
            if ws is not None:
                # closed under the lock: no frame can be half-way onto it
                ws.shutdown()  # type: ignore[no-untyped-call]

    def _interrupt(self) -> None:
        sock = self._sock
        if sock is None:
            ws = self._ws
            sock = ws.sock if ws is not None else None
        if sock is not None:
            _shutdown(sock)

    def _health_idle_limit(self) -> Optional[float]:
        if self.heartbeat_interval:
            return self.heartbeat_interval + self.heartbeat_timeout
        return self.idle_timeout

    # -- reading ------------------------------------------------------------------------

    def _read(self) -> str:
        sock = self._sock
        if sock is None:
            return EOF_
        self._start_heartbeat(sock)
        parser = self._parser
        publish = self._publish
        m = self._m
        recv = self._tls_recv if isinstance(sock, ssl.SSLSocket) else sock.recv
        monotonic = time.monotonic
        stop = self._stop
        try:
            while not stop.is_set():
                self._recv_since = monotonic()
                while True:
                    try:
                        chunk = recv(_READ_SIZE)
                        break
                    except socket.timeout:
                        self._quiet()
                now = monotonic()
                self._recv_since = None
                if self.debug:
                    self.log.debug("%s: read %d bytes: %s", self.id, len(chunk), snippet(chunk))
                if not chunk:
                    raise self._lost(None)
                m.bytes_received += len(chunk)
                m.last_traffic_at = now
                try:
                    events = parser.feed(chunk, now)
                except FrameError as exc:
                    if exc.events:
                        publish(exc.events)
                    raise self._frame_failed(sock, exc) from None
                if events:
                    publish(events)
                if parser.controls or self._pong_due is not None:
                    self._on_controls(sock)
                if parser.closed is not None:
                    return self._on_close_frame(sock, *parser.closed)
        except OSError as exc:
            raise self._lost(exc) from None
        return EOF_

    def _tls_recv(self, size: int) -> bytes:
        """Read from a TLS socket without racing a writer.

        OpenSSL forbids using one connection from two threads at once (a read and a write
        crossing corrupt the session now and then), so the reader waits for data outside
        ``_frame_write_lock`` and reads inside it, as every writer writes inside it.
        """
        sock = self._sock
        if not isinstance(sock, ssl.SSLSocket):
            raise OSError("the connection is gone")
        if not sock.pending():
            readable, _, _ = select.select([sock], [], [], self._io_timeout)
            if not readable:
                raise socket.timeout("timed out")
        with self._frame_write_lock:
            return sock.recv(size)

    def _quiet(self) -> None:
        """The socket was silent for ``_io_timeout``: a stall only without heartbeats."""
        if self.heartbeat_interval or not self.idle_timeout or self._stop.is_set():
            return
        last = self._m.last_traffic_at
        if last is not None and time.monotonic() - last >= self.idle_timeout:
            raise HeartbeatTimeout(
                f"no data for {self.idle_timeout} s (idle_timeout, heartbeats off): stream stalled"
            )

    def _lost(self, exc: Optional[BaseException]) -> TransportError:
        """Why the connection went away (the socket reported EOF or an error)."""
        if self._heartbeat_error is not None:
            return self._heartbeat_error
        if self._stop.is_set():
            return ConnectError("closed", retryable=False)
        write_error = self._write_error
        if write_error is not None:
            return _closed(
                1006,
                detail=f"the connection broke while sending ({describe_exception(write_error)})",
            )
        return _closed(1006, detail=describe_exception(exc) if exc is not None else "end of stream")

    def _frame_failed(self, sock: socket.socket, exc: FrameError) -> TransportError:
        """Fail the connection (RFC 6455 §7.1.7): close with the code, then drop it."""
        self._write_control(sock, OP_CLOSE, exc.code.to_bytes(2, "big"), wait=False)
        if exc.code == 1009:
            return MessageTooLarge(f"{exc.message} (closed with 1009)")
        return ProtocolError(f"{exc.message} (closed with {exc.code})", retryable=True)

    def _on_controls(self, sock: socket.socket) -> None:
        controls = self._parser.controls
        for opcode, payload in controls:
            if opcode == OP_PING:
                self._pong_due = payload  # only the latest ping needs an answer (RFC 6455 §5.5.3)
            elif payload == self._ping_payload:
                sent_at = self._ping_sent_at
                if sent_at is not None:
                    self._m.ping_rtt_ms = (time.monotonic() - sent_at) * 1000.0
                self._ping_payload = None
        controls.clear()
        pong = self._pong_due
        if pong is not None and self._write_control(sock, OP_PONG, pong, wait=False):
            self._pong_due = None

    def _on_close_frame(self, sock: socket.socket, code: int, reason: str) -> str:
        if self._closing:  # the server answered our close(): the base stops the loop next
            self._close_reply.set()
            self._stop.wait()
            return EOF_
        # Echo the code (RFC 6455 §5.5.1); after it no application frame may go out.
        self._write_control(
            sock, OP_CLOSE, b"" if code == 1005 else code.to_bytes(2, "big"), wait=True
        )
        if code in NORMAL_CLOSE_CODES:
            self.log.info("%s: closed by the server (%d)", self.id, code)
            return DONE
        raise _closed(code, reason)

    # -- heartbeat ----------------------------------------------------------------------

    def _start_heartbeat(self, sock: socket.socket) -> None:
        interval = self.heartbeat_interval
        if not interval:
            return
        with self._heartbeat_lock:
            self._heartbeat_sock = sock
            self._ping_sent_at = None
            self._ping_payload = None
            self._heartbeat_timer = self._scheduler_or_default().call_every(
                interval, self._heartbeat_tick
            )

    def _stop_heartbeat(self) -> None:
        with self._heartbeat_lock:
            self._heartbeat_sock = None
            timer, self._heartbeat_timer = self._heartbeat_timer, None
            check, self._heartbeat_check = self._heartbeat_check, None
        if timer is not None:
            timer.cancel()
        if check is not None:
            check.cancel()

    def _heartbeat_tick(self) -> None:
        """Send a ping and arm the deadline for an answer (on the scheduler, never blocks)."""
        with self._heartbeat_lock:
            sock = self._heartbeat_sock
            if sock is None or self._stop.is_set():
                return
            if self._reader_blocked():
                self._ping_sent_at = None  # the silence is ours: the server is owed no deadline
                return
            self._ping_count += 1
            payload = b"%d" % self._ping_count
            now = time.monotonic()
            sent = self._write_control(sock, OP_PING, payload, wait=False)
            # When the socket cannot take even a ping, the deadline runs all the same.
            self._ping_payload = payload if sent else None
            self._ping_sent_at = now
            if self._heartbeat_check is None:
                self._heartbeat_check = self._scheduler_or_default().call_later(
                    self.heartbeat_timeout, functools.partial(self._heartbeat_deadline, sock, now)
                )

    def _heartbeat_deadline(self, sock: socket.socket, sent_at: float) -> None:
        """``heartbeat_timeout`` after a ping: drop the connection if nothing came back."""
        with self._heartbeat_lock:
            self._heartbeat_check = None
            if self._heartbeat_sock is not sock or self._stop.is_set():
                return
            last = self._m.last_traffic_at
            if last is not None and last >= sent_at:
                return  # a pong or other frame arrived
            since = self._recv_since
            if since is None:
                return  # the reader is busy or blocked: the next ping checks again
            waited = time.monotonic() - max(since, sent_at)
            if waited < self.heartbeat_timeout:
                self._heartbeat_check = self._scheduler_or_default().call_later(
                    self.heartbeat_timeout - waited,
                    functools.partial(self._heartbeat_deadline, sock, sent_at),
                )
                return
            self._heartbeat_error = HeartbeatTimeout(
                f"no pong or other frame within {self.heartbeat_timeout} s of a ping "
                "(heartbeat_timeout): connection stalled"
            )
        _shutdown(sock)

    # -- closing ------------------------------------------------------------------------

    def _before_close(self, deadline: float) -> None:
        try:
            self._close_handshake(deadline)
        except Exception:  # close() must go on whatever happens here
            self.log.debug("%s: closing handshake failed", self.id, exc_info=True)

    def _close_handshake(self, deadline: float) -> None:
        """Flush the send queue (up to ``deadline``), send close 1000, wait for the reply."""
        reader = self._reader
        on_reader = reader is threading.current_thread()
        monotonic = time.monotonic
        with self._sends_flushed:
            while (
                self._pending_sends
                and not on_reader
                and reader is not None
                and reader.is_alive()
                and self._closed_reason is None
            ):
                remaining = deadline - monotonic()
                if remaining <= 0:
                    break
                self._sends_flushed.wait(remaining)
            self._sending_closed = True
            sock = self._writable
            sent = False
            if sock is not None:
                self._writable = None
                self._closing = True
                if _can_write(sock):
                    try:
                        sock.sendall(_frame(_CLOSE_NORMAL_FRAME_PAYLOAD, OP_CLOSE))
                        sent = True
                    except OSError:
                        pass
        if not sent or on_reader:
            return
        until = min(monotonic() + _CLOSE_REPLY_WAIT, deadline)
        # A reader held back by a full ``block`` buffer cannot read the reply: stop waiting then.
        while not self._reader_blocked():
            remaining = until - monotonic()
            if remaining <= 0 or self._close_reply.wait(min(remaining, 0.05)):
                return

    def _on_stopped(self) -> None:
        self._stop_heartbeat()
        with self._frame_write_lock:
            self._sending_closed = True
            unsent = [item.data for item in self._pending_sends]
            self._pending_sends.clear()
            self._sends_flushed.notify_all()
        if unsent:
            self._error(
                UnsentMessagesError(
                    f"{len(unsent)} queued message(s) were not sent: the transport ended before "
                    "a connection could take them",
                    unsent=unsent,
                )
            )


def _origin(url: str) -> Tuple[str, Optional[str], Optional[int]]:
    parts = urlsplit(url)
    try:
        port = parts.port
    except ValueError:
        port = None
    return parts.scheme.lower(), parts.hostname, port


def _redirect_target(ws: websocket.WebSocket, url: str) -> Optional[str]:
    """The absolute ``ws``/``wss`` URL a redirected handshake points to, else ``None``."""
    response = getattr(ws, "handshake_response", None)
    if response is None or response.status not in _REDIRECT_STATUSES:
        return None
    location = (response.headers or {}).get("location")
    if not location:
        return None
    # urljoin only knows http(s): join on the http form, then map the scheme back.
    base = "http" + url[2:] if url[:2].lower() == "ws" else url
    target = urljoin(base, location)
    scheme, sep, rest = target.partition("://")
    mapped = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    return f"{mapped}{sep}{rest}"


def _shutdown(sock: socket.socket) -> None:
    """Shut ``sock`` down both ways (wakes any thread blocked on it); errors ignored."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)
