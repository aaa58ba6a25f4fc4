"""WebSocket (RFC 6455, with permessage-deflate from RFC 7692) on the shared base.

:mod:`.ws_connect` opens the connection (TCP, proxy, TLS, the opening handshake, all within
``timeout``); ``websocket-client`` formats outgoing frames; incoming frames are parsed by
:class:`FrameParser`, a sans-I/O parser fed with whole socket reads. Reading 64 KiB at a time
hands every message already received to consumers as one batch, checks ``max_message_bytes``
from the frame header before the payload is buffered, and validates UTF-8 with
``bytes.decode`` (in C). Control frames are answered as they are read, before the messages of
the same read are handed on: every ping gets its pong.

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
import functools
import socket
import ssl
import threading
import time
from typing import Any, Deque, List, Literal, Mapping, Optional, Sequence, Tuple, Union

from ..config import BufferConfig, ReconnectPolicy
from ..errors import (
    BufferFullError,
    ConnectError,
    HeartbeatTimeout,
    MessageTooLarge,
    ProtocolError,
    TransportClosedError,
    TransportError,
    UnsentMessagesError,
)
from ..events import TransportType
from ..logs import snippet
from ..parsers.deflate import Deflater, Inflater
from ..parsers.websocket import (
    NORMAL_CLOSE_CODES,
    OP_CLOSE,
    OP_PING,
    OP_PONG,
    FrameError,
    FrameParser,
)
from ..redact import describe_exception, redact_headers
from ..timers import Scheduler, TimerHandle
from ..validate import check_int, check_seconds
from .base import DONE, EOF_, BaseTransport
from .io_loop import ready
from .sessions import user_agent
from .ws_connect import Connector
from .ws_frames import Outgoing, client_frame, closed_error, encode, send_all, shutdown

__all__ = ["WebSocketTransport"]

_READ_SIZE = 65536
#: How long ``close()`` waits for the server's reply to its close frame.
_CLOSE_REPLY_WAIT = 1.0
_CLOSE_NORMAL = (1000).to_bytes(2, "big")


class WebSocketTransport(BaseTransport):
    """A WebSocket connection that reconnects, queues sends while disconnected and pings.

    Messages: a text frame becomes ``Event(type="message", data=str)``, a binary frame
    ``Event(type="binary", data=bytes)``; fragmented messages are reassembled. A message over
    ``max_message_bytes`` closes the connection with 1009 and raises ``MessageTooLarge`` (a
    ``ProtocolError``); invalid UTF-8 in a text message or a close reason closes it with 1007
    and a ``ProtocolError``; a malformed frame, or a close frame with a code no endpoint may
    send (1005, 1006 and 1015 included), closes it with 1002. These are retryable: the messages
    received before them are delivered, and the transport reconnects by its policy. Close
    reasons are kept as data (``WebSocketClosed.reason``) but shown escaped and cut to 200
    characters.

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

    Compression: permessage-deflate (RFC 7692) is offered by default (``compression="deflate"``,
    ``None`` turns it off), with ``client_max_window_bits``; the server's
    ``*_no_context_takeover`` and window sizes are honoured. ``max_message_bytes`` counts the
    inflated size, checked while inflating: a deflate bomb fails with 1009 having used little
    more memory than the limit.

    Parameters:

    :param url: a ``ws://`` or ``wss://`` URL.
    :param headers: extra handshake headers (never logged).
    :param subprotocols: subprotocols to offer; the one the server chose is ``subprotocol``.
    :param origin: the ``Origin`` header (the URL's origin otherwise).
    :param heartbeat_interval: seconds between pings (``None``: no heartbeat).
    :param heartbeat_timeout: seconds to wait for a pong or any frame after a ping.
    :param send_queue_size: messages that may wait for a connection.
    :param max_message_bytes: the largest message (inflated size, fragments included; an
        empty fragment counts as one byte).
    :param compression: ``"deflate"`` to offer permessage-deflate, ``None`` for none.
    :param timeout: seconds for the whole opening handshake (connect, TLS, request, status
        line and headers, however slowly they come) and for writing each frame.
    :param idle_timeout: seconds of silence that drop the connection when heartbeats are off.
    :param reconnect: the :class:`ReconnectPolicy` (``None``: the default policy; ``False``:
        never reconnect).
    :param buffer: the receive :class:`BufferConfig`.
    :param last_event_id: sent as a ``Last-Event-ID`` handshake header when given.
    :param verify: ``True``, ``False`` or a CA bundle path (the ``requests`` forms).
    :param cert: a client certificate: a PEM path or a ``(cert, key)`` pair.
    :param proxies: ``{"wss": "http://proxy:3128"}`` style mapping (``ws``/``wss``,
        ``http``/``https`` or ``all`` keys; HTTP CONNECT or SOCKS); ``http_proxy`` /
        ``https_proxy`` from the environment otherwise.
    :param redirect_headers: header names that go along on a redirect to another origin, besides
        the safe ones (``Authorization`` never does).
    :param debug: log this transport's wire-level lines whatever the logger's level.
    :param id: a stable id (a random one otherwise).
    :param scheduler: the timer pool for heartbeats (the shared default otherwise).
    """

    type = TransportType.WEBSOCKET
    shared_io = True
    schemes = ("ws", "wss")
    logger_name = "aikit_transports.websocket"

    def __init__(
        self,
        url: str,
        *,
        headers: Optional[Mapping[str, str]] = None,
        subprotocols: Optional[Sequence[str]] = None,
        origin: Optional[str] = None,
        heartbeat_interval: Optional[float] = 30.0,
        heartbeat_timeout: float = 10.0,
        send_queue_size: int = 1000,
        max_message_bytes: int = 16 << 20,
        compression: Optional[Literal["deflate"]] = "deflate",
        timeout: float = 10.0,
        idle_timeout: Optional[float] = 45.0,
        reconnect: Union[ReconnectPolicy, bool, None] = None,
        buffer: Optional[BufferConfig] = None,
        last_event_id: Optional[str] = None,
        verify: Union[bool, str] = True,
        cert: Union[str, Tuple[str, str], None] = None,
        proxies: Optional[dict[str, str]] = None,
        redirect_headers: Sequence[str] = (),
        debug: bool = False,
        id: Optional[str] = None,
        scheduler: Optional[Scheduler] = None,
    ) -> None:
        super().__init__(
            url,
            headers=headers,
            timeout=timeout,
            idle_timeout=idle_timeout,
            reconnect=reconnect,
            buffer=buffer,
            last_event_id=last_event_id,
            verify=verify,
            cert=cert,
            proxies=proxies,
            redirect_headers=redirect_headers,
            debug=debug,
            id=id,
            scheduler=scheduler,
        )
        if subprotocols is not None and (
            isinstance(subprotocols, (str, bytes))
            or not all(isinstance(p, str) and p for p in subprotocols)
        ):
            raise ValueError("subprotocols must be a list of non-empty strings")
        if origin is not None and not isinstance(origin, str):
            raise ValueError("origin must be a string")
        if compression not in ("deflate", None):
            raise ValueError("compression must be 'deflate' or None")
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
        self.compression = compression
        #: The subprotocol the server chose on the current (or last) connection.
        self.subprotocol: Optional[str] = None
        handshake_headers = dict(self.headers)
        if self._initial_event_id is not None and not any(
            k.lower() == "last-event-id" for k in handshake_headers
        ):
            handshake_headers["Last-Event-ID"] = self._initial_event_id
        if not any(k.lower() == "user-agent" for k in handshake_headers):
            handshake_headers["User-Agent"] = user_agent("websocket-client")
        self._connector = Connector(
            headers=handshake_headers,
            subprotocols=self.subprotocols,
            origin=origin,
            compression=compression is not None,
            verify=self.verify,
            cert=self.cert,
            proxies=self.proxies,
            redirect_headers=self.redirect_headers,
            url=url,
            timeout=self.timeout,
        )
        self._parser = FrameParser(max_message_bytes, self.id)
        self._deflater: Optional[Deflater] = None  # compression of this connection's sends
        self._sock: Optional[socket.socket] = None
        self._leftover = b""  # frames that came with the handshake response
        self._heartbeat_error: Optional[HeartbeatTimeout] = None
        self._write_error: Optional[BaseException] = None
        self._closing = False  # our close frame went out on this connection
        self._close_reply = threading.Event()

        self._frame_write_lock = threading.Lock()
        self._sends_flushed = threading.Condition(self._frame_write_lock)
        self._pending_sends: Deque[Outgoing] = collections.deque()
        self._writable: Optional[socket.socket] = None
        self._sending_closed = False

        self._heartbeat_lock = threading.Lock()
        self._heartbeat_timer: Optional[TimerHandle] = None
        self._heartbeat_check: Optional[TimerHandle] = None
        self._heartbeat_sock: Optional[socket.socket] = None
        self._ping_sent_at: Optional[float] = None
        self._ping_payload: Optional[bytes] = None
        self._ping_count = 0

    # -- sending ------------------------------------------------------------------------

    def send(self, data: Any, timeout: Optional[float] = None) -> None:
        """Send ``data`` (str → text, bytes-like → binary, dict/list → JSON text).

        Returns once the frame is written (compressed when the connection negotiated
        permessage-deflate), or queued while there is no connection (``BufferFullError`` when
        the queue is full). ``timeout`` bounds the wait for other sends to finish their frames
        (then ``TimeoutError``, and nothing is sent).

        :param data: the message: ``str``, bytes-like, or a ``dict`` or ``list`` sent as JSON.
        :param timeout: the most seconds to wait for other sends (``None``: no limit).
        """
        if timeout is not None:
            check_seconds("timeout", timeout)
        payload, opcode = encode(data)
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
                self._pending_sends.append(Outgoing(data, payload, opcode))
                return
            frame = self._data_frame(payload, opcode)
            try:
                send_all(sock, frame, self.timeout)
            except OSError as exc:
                # The frame did not go out whole, so the server cannot have it: it goes first
                # in the queue for the next connection, and the connection is dropped.
                self._pending_sends.appendleft(Outgoing(data, payload, opcode))
                self._writable = None
                self._write_error = exc
                shutdown(sock)
                return
            m = self._m
            m.messages_sent += 1
            m.bytes_sent += len(frame)
        finally:
            lock.release()

    def _data_frame(self, payload: bytes, opcode: int) -> bytes:
        """The frame of one message on this connection (under ``_frame_write_lock``: the
        compressor's context follows the order of frames on the wire)."""
        deflater = self._deflater
        if deflater is not None and deflater.enabled:
            return client_frame(deflater.deflate(payload), opcode, compressed=True)
        return client_frame(payload, opcode)

    def _flush_pending(self, sock: socket.socket, deflater: Optional[Deflater]) -> None:
        """Send what waited for a connection, in order, then open the socket to ``send()``."""
        with self._frame_write_lock:
            self._deflater = deflater
            pending = self._pending_sends
            m = self._m
            while pending:
                item = pending[0]
                frame = self._data_frame(item.payload, item.opcode)
                send_all(
                    sock, frame, self.timeout
                )  # a failure leaves the message at the head of the queue
                pending.popleft()
                m.messages_sent += 1
                m.bytes_sent += len(frame)
            self._writable = sock
            self._sends_flushed.notify_all()

    def _write_control(self, sock: socket.socket, opcode: int, payload: bytes, wait: bool) -> bool:
        """Write a ping, pong or close frame; whether it went.

        ``wait=False`` gives up at once when a send holds the lock or the socket cannot take
        the frame now (timers must not block on a stalled peer); ``wait=True`` waits up to
        ``timeout`` for both. A close frame also ends application sends.
        """
        lock = self._frame_write_lock
        if not lock.acquire(timeout=self.timeout if wait else 0):
            return False
        try:
            if self._writable is not sock:
                return False
            if opcode == OP_CLOSE:
                self._writable = None
            frame = client_frame(payload, opcode)
            if not wait:
                if sock.gettimeout() != 0:
                    if not ready(sock, 0, write=True):
                        return False
                else:  # non-blocking: one try tells (a frame begun is finished below)
                    try:
                        sent = sock.send(frame)
                    except (BlockingIOError, ssl.SSLWantWriteError, ssl.SSLWantReadError):
                        return False
                    frame = frame[sent:]
            send_all(sock, frame, self.timeout)
            return True
        except OSError:
            return False
        finally:
            lock.release()

    # -- connection ---------------------------------------------------------------------

    def _open(self) -> None:
        self._heartbeat_error = None
        self._write_error = None
        self._closing = False
        self._close_reply.clear()
        if self.debug:
            self.log.debug(
                "%s: connecting to %s headers=%s",
                self.id,
                self.safe_url,
                redact_headers(self._connector.headers),
            )
        opened = self._connector.open(self.url, self._stop, self._track)
        sock = opened.sock
        self.subprotocol = opened.subprotocol
        deflate = opened.deflate
        self._parser.reset(Inflater(deflate) if deflate else None)
        self._leftover = opened.leftover
        if self.debug:
            self.log.debug(
                "%s: handshake done: HTTP %s subprotocol=%s deflate=%s headers=%s",
                self.id,
                opened.status,
                opened.subprotocol,
                deflate,
                redact_headers(dict(opened.headers)),
            )
        try:
            if self._stop.is_set():
                raise ConnectError("closed", retryable=False)
            sock.settimeout(self.timeout)  # queued sends: before the heartbeats run
            self._flush_pending(sock, Deflater(deflate) if deflate else None)
        except OSError as exc:
            self._release()
            raise ConnectError(
                f"connection lost while sending queued messages: {describe_exception(exc)}",
                retryable=True,
            ) from None
        except BaseException:
            self._release()
            raise

    def _track(self, sock: Optional[socket.socket]) -> None:
        """The socket being opened (``close()`` shuts it to cut a handshake short)."""
        self._sock = sock

    def _release(self) -> None:
        self._stop_heartbeat()
        sock, self._sock = self._sock, None
        self._leftover = b""
        if sock is not None:
            shutdown(sock)  # wakes a send blocked on this socket, so the lock comes free
        with self._frame_write_lock:
            self._writable = None
            self._deflater = None
            if sock is not None:
                sock.close()  # under the lock: no frame can be half-way onto it

    def _interrupt(self) -> None:
        sock = self._sock
        if sock is not None:
            shutdown(sock)

    def _health_idle_limit(self) -> Optional[float]:
        if self.heartbeat_interval:
            return self.heartbeat_interval + self.heartbeat_timeout
        return self.idle_timeout

    # -- reading ------------------------------------------------------------------------

    def _take(self, sock: socket.socket, chunk: bytes) -> Optional[str]:
        """Parse what was read and hand it on: pongs first, then messages; the outcome once a
        close frame came (``None`` while the stream goes on)."""
        if self.debug:
            self.log.debug("%s: read %d bytes: %s", self.id, len(chunk), snippet(chunk))
        now = time.monotonic()
        m = self._m
        m.bytes_received += len(chunk)
        m.last_traffic_at = now
        parser = self._parser
        try:
            events = parser.feed(chunk, now)
        except FrameError as exc:
            if exc.events:
                self._publish(exc.events)
            raise self._frame_failed(sock, exc) from None
        if parser.controls:
            self._on_controls(sock)  # pongs go out before the messages are handed on
        if events:
            self._publish(events)
        if parser.closed is not None:
            return self._on_close_frame(sock, *parser.closed)
        return None

    def _read_start(self) -> Optional[socket.socket]:
        sock = self._sock
        if sock is None:
            return None
        self._start_heartbeat(sock)
        with self._frame_write_lock:  # writers wait for room themselves from now on
            sock.settimeout(0)
        return sock

    def _read_blocking(self) -> str:
        return EOF_  # no connection to read

    def _read_ready(self) -> Optional[str]:
        sock = self._sock
        if sock is None:
            raise self._lost(None)
        io = self._io
        tls = isinstance(sock, ssl.SSLSocket)
        try:
            while True:
                chunk: Optional[bytes]
                chunk, self._leftover = self._leftover, b""
                if not chunk:
                    chunk = self._recv_now(sock, tls)
                    if chunk is None:
                        return None
                    if not chunk:
                        raise self._lost(None)
                outcome = self._take(sock, chunk)
                if outcome is not None:
                    return outcome
                if not tls or (io is not None and io.holding()):
                    return None
                assert isinstance(sock, ssl.SSLSocket)
                if not sock.pending():
                    return None
        except OSError as exc:
            raise self._lost(exc) from None

    def _recv_now(self, sock: socket.socket, tls: bool) -> Optional[bytes]:
        """What the (non-blocking) socket holds, ``b""`` at its end, ``None`` when nothing yet.
        TLS reads take the write lock: OpenSSL forbids using one connection from two threads at
        once (a read and a write crossing corrupt the session now and then). On an I/O thread,
        a writer holding it makes the read come back a moment later rather than wait here."""
        try:
            if not tls:
                return sock.recv(_READ_SIZE)
            lock = self._frame_write_lock
            io = self._io
            if not lock.acquire(blocking=io is None):  # the I/O thread never waits for it
                assert io is not None
                io.read_again(0.001)
                return None
            try:
                return sock.recv(_READ_SIZE)
            finally:
                lock.release()
        except (BlockingIOError, ssl.SSLWantReadError, ssl.SSLWantWriteError):
            return None

    def _stall_limit(self) -> Optional[float]:
        return None if self.heartbeat_interval else self.idle_timeout

    def _stall_error(self) -> TransportError:
        return HeartbeatTimeout(
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
            return closed_error(
                1006,
                detail=f"the connection broke while sending ({describe_exception(write_error)})",
            )
        return closed_error(
            1006, detail=describe_exception(exc) if exc is not None else "end of stream"
        )

    def _frame_failed(self, sock: socket.socket, exc: FrameError) -> TransportError:
        """Fail the connection (RFC 6455 §7.1.7): close with the code, then drop it."""
        self._write_control(sock, OP_CLOSE, exc.code.to_bytes(2, "big"), wait=False)
        if exc.code == 1009:
            return MessageTooLarge(f"{exc.message} (closed with 1009)")
        return ProtocolError(f"{exc.message} (closed with {exc.code})", retryable=True)

    def _on_controls(self, sock: socket.socket) -> None:
        """Answer every ping with its pong (RFC 6455 §5.5.2), in order; time our own pings."""
        controls = self._parser.controls
        for opcode, payload in controls:
            if opcode == OP_PING:
                self._reply(sock, OP_PONG, payload)
            elif payload == self._ping_payload:
                sent_at = self._ping_sent_at
                if sent_at is not None:
                    self._m.ping_rtt_ms = (time.monotonic() - sent_at) * 1000.0
                self._ping_payload = None
                with self._heartbeat_lock:  # answered: its deadline need not fire
                    check, self._heartbeat_check = self._heartbeat_check, None
                if check is not None:
                    check.cancel()
        controls.clear()

    def _reply(self, sock: socket.socket, opcode: int, payload: bytes) -> None:
        """Answer the server (pong, close echo); an I/O thread never waits to write: what the
        socket cannot take now is written on the transport's serial queue."""
        io = self._io
        if io is None or not io.loop.on_loop():
            self._write_control(sock, opcode, payload, wait=True)
        elif not self._write_control(sock, opcode, payload, wait=False):
            io.defer(functools.partial(self._write_control, sock, opcode, payload, True))

    def _on_close_frame(self, sock: socket.socket, code: int, reason: str) -> str:
        if self._closing:  # the server answered our close(): the base stops the loop next
            self._close_reply.set()
            if self._io is None:
                self._stop.wait()
            return EOF_
        # Echo the code (RFC 6455 §5.5.1); after it no application frame may go out.
        self._reply(sock, OP_CLOSE, b"" if code == 1005 else code.to_bytes(2, "big"))
        if code in NORMAL_CLOSE_CODES:
            self.log.info("%s: closed by the server (%d)", self.id, code)
            return DONE
        raise closed_error(code, reason)

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
            since = self._waiting_since
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
        shutdown(sock)

    # -- closing ------------------------------------------------------------------------

    def _before_close(self, deadline: float) -> None:
        try:
            self._close_handshake(deadline)
        except Exception:  # close() must go on whatever happens here
            self.log.debug("%s: closing handshake failed", self.id, exc_info=True)

    def _close_handshake(self, deadline: float) -> None:
        """Flush the send queue (up to ``deadline``), send close 1000, wait for the reply."""
        reader = self._reader
        on_reader = self._on_own_thread()
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
                if ready(sock, 0, write=True):
                    try:
                        send_all(sock, client_frame(_CLOSE_NORMAL, OP_CLOSE), self.timeout)
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
