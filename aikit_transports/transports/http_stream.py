"""Newline-delimited JSON over plain HTTP: one long response, or repeated long polls.

For networks where WebSocket upgrades and ``text/event-stream`` are blocked (corporate proxies,
old load balancers): only ordinary HTTP requests and responses are used.
"""

from __future__ import annotations

import socket
import time
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

import requests

from ..config import BufferConfig, ReconnectPolicy
from ..errors import ConnectError, HeartbeatTimeout, ProtocolError, TransportError
from ..events import Event, TransportType
from ..logs import server_text
from ..parsers.ndjson import NDJSONParser
from ..timers import Scheduler
from ..validate import check_int
from .base import DONE, EOF_
from .http_base import BodyParser, HTTPTransportBase, with_http_options_doc
from .http_body import cut_in_headers

__all__ = ["HTTPStreamTransport"]

_MODES = ("stream", "long-poll")
_FIRST_EMPTY_PAUSE = 0.1  # seconds


@with_http_options_doc
class HTTPStreamTransport(HTTPTransportBase):
    """NDJSON messages over HTTP; ``Event.data`` is each line's parsed JSON value.

    ``mode="stream"``: one long response (chunked or close-delimited) read as it arrives; a
    line is delivered as soon as its newline is read. HTTP 204 ends the stream (``done``), and
    so does a body that ended cleanly (its last chunk, its ``Content-Length``, or the close that
    ends a body with neither), unless the request is idempotent and resumable (it has an id to
    send as ``Last-Event-ID``): then it reconnects and the server resumes after that id. A body
    cut short is a drop; what is sent again then follows the rules of :class:`SSETransport`
    (a request that is not idempotent and not resumable ends with ``StreamInterrupted``).

    ``mode="long-poll"``: repeated requests over one keep-alive ``requests.Session``, each
    carrying ``Last-Event-ID``. A 200 delivers the NDJSON lines of its body (read in full, then
    the connection goes back to the pool) and the next poll follows at once; a 204 means
    "nothing new yet" and the next poll follows after ``poll_interval`` seconds (also after a
    200 that held no message). An empty answer that came back within a second is followed by
    a pause growing from 0.1 s (doubling) up to the policy's ``max_delay``, reset by the next
    message, so that a server answering 204 at once never makes a request storm. A poll may
    wait up to ``idle_timeout`` for its answer (servers hold long polls open); ``close()``
    cuts a waiting poll at once.

    States in long-poll mode: the first answered poll makes the transport CONNECTED and it stays
    so across answered polls (``connected`` is emitted once, not per poll). A failed poll (a
    refused or lost connection, a retryable status, no answer within ``idle_timeout``) is a
    dropped connection: ``error``, then ``reconnecting`` and a new poll by the reconnection
    policy, ``connected`` again once a poll is answered, counted in ``metrics.reconnects``.
    As for every wire, failed attempts reset after a poll that delivered messages; answered
    polls count as traffic for ``health()``. A long poll ends only with ``done_when`` (and
    ``reconnect_on_eof`` does not apply).

    Ids: when a line is a JSON object holding ``id_field`` (``None`` turns ids off),
    ``Event.id`` is ``str()`` of its value. A malformed line becomes an ``error`` event
    (``ProtocolError`` with the line number and a snippet) and the stream goes on; a line longer
    than ``max_line_bytes`` is a ``MessageTooLarge`` that drops the connection and reconnects.
    Any ``Content-Type`` is read as NDJSON, except an HTML page (a proxy's error or login page),
    which fails at once with ``ProtocolError``.

    :param mode: ``"stream"`` or ``"long-poll"``.
    :param id_field: the key of a line's JSON object that holds its id (``None``: no ids).
    :param poll_interval: seconds between a poll that brought nothing and the next.
    :param max_line_bytes: the longest line; a longer one drops the connection.

    ``done_when`` on NDJSON: ``lambda e: e.data.get("done")``. The options every HTTP wire
    shares:
    """

    type = TransportType.HTTP_STREAM
    logger_name = "aikit_transports.http_stream"

    def __init__(
        self,
        url: str,
        *,
        mode: str = "stream",
        method: str = "GET",
        headers: Optional[Mapping[str, str]] = None,
        params: Optional[Mapping[str, Any]] = None,
        json: Any = None,
        data: Any = None,
        auth: Any = None,
        session: Optional[requests.Session] = None,
        send_url: Optional[str] = None,
        timeout: float = 10.0,
        idle_timeout: Optional[float] = 45.0,
        reconnect: Union[ReconnectPolicy, bool, None] = None,
        buffer: Optional[BufferConfig] = None,
        last_event_id: Optional[str] = None,
        idempotent: Optional[bool] = None,
        reconnect_on_eof: Optional[bool] = None,
        done_when: Optional[Callable[[Event], Any]] = None,
        id_field: Optional[str] = "id",
        poll_interval: float = 0.0,
        max_line_bytes: int = 8 << 20,
        chunk_size: int = 65536,
        redirect_headers: Sequence[str] = (),
        verify: Union[bool, str] = True,
        cert: Union[str, tuple[str, str], None] = None,
        proxies: Optional[dict[str, str]] = None,
        debug: bool = False,
        id: Optional[str] = None,
        scheduler: Optional[Scheduler] = None,
    ) -> None:
        super().__init__(
            url,
            method=method,
            headers=headers,
            params=params,
            json=json,
            data=data,
            auth=auth,
            session=session,
            send_url=send_url,
            timeout=timeout,
            idle_timeout=idle_timeout,
            reconnect=reconnect,
            buffer=buffer,
            last_event_id=last_event_id,
            idempotent=idempotent,
            reconnect_on_eof=reconnect_on_eof,
            done_when=done_when,
            chunk_size=chunk_size,
            redirect_headers=redirect_headers,
            verify=verify,
            cert=cert,
            proxies=proxies,
            debug=debug,
            id=id,
            scheduler=scheduler,
        )
        if mode not in _MODES:
            raise ValueError(f"mode must be 'stream' or 'long-poll', not {mode!r}")
        if id_field is not None and (not isinstance(id_field, str) or not id_field):
            raise ValueError(f"id_field must be a non-empty string or None, not {id_field!r}")
        if (
            isinstance(poll_interval, bool)
            or not isinstance(poll_interval, (int, float))
            or not 0 <= poll_interval < float("inf")
        ):
            raise ValueError(
                f"poll_interval must be a number of seconds >= 0, not {poll_interval!r}"
            )
        check_int("max_line_bytes", max_line_bytes)
        self.mode = mode
        self.id_field = id_field
        self.poll_interval = float(poll_interval)
        self.max_line_bytes = max_line_bytes
        self._long_poll = mode == "long-poll"
        self._poll_started = 0.0
        self._empty_pause = 0.0
        self._parser = NDJSONParser(
            max_line_bytes=max_line_bytes, id_field=id_field, transport_id=self.id
        )

    def _default_headers(self) -> dict[str, str]:
        return {
            "Accept": "application/x-ndjson, application/jsonl, application/json;q=0.9, */*;q=0.5",
            "Cache-Control": "no-cache",
        }

    # -- the wire ------------------------------------------------------------------------

    def _open(self) -> Optional[str]:
        if self._long_poll:
            self._poll()
            return None
        resp = self._request()
        if resp.status_code == 204:
            resp.close()
            return DONE
        self._start_body(resp)
        return None

    def _read_blocking(self) -> str:
        if self._long_poll:
            return self._poll_loop()
        return super()._read_blocking()

    def _read_start(self) -> Optional[socket.socket]:
        return None if self._long_poll else super()._read_start()  # a poll loop blocks

    def _body_parser(self) -> BodyParser:
        return self._parser.feed, self._parser_error_list, self._on_events

    def _body_ended(self, outcome: str) -> str:
        if outcome == EOF_ and not self._stop.is_set():
            return self._flush()  # a clean end of the body: a last line without its newline
        return outcome

    def _eof_reconnects(self) -> bool:
        return self.idempotent and self._resumable()

    def _start_body(self, resp: requests.Response) -> None:
        """Check that ``resp`` is not an HTML page, then make it the body being read."""
        content_type = resp.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() == "text/html":
            cut = cut_in_headers(resp)
            resp.close()
            if cut:
                raise ConnectError("connection lost in the response headers", retryable=True)
            raise ProtocolError(
                f"expected NDJSON, got Content-Type '{server_text(content_type)}' "
                "(an HTML page: a proxy's error or login page?)",
                retryable=False,
            )
        self._parser.reset()
        self._attach(resp)

    def _parser_error_list(self) -> list[ProtocolError]:
        return self._parser.errors

    def _flush(self) -> str:
        """The end of a body: its last line without a newline counts; ``"done"`` when
        ``done_when`` accepts it, else ``"eof"``."""
        parser = self._parser
        events = parser.flush()
        outcome = self._on_events(events) if events else None
        if parser.errors:
            self._parser_errors(parser.errors)
        return outcome or EOF_

    # -- long-poll -----------------------------------------------------------------------

    def _poll(self) -> None:
        """Make one poll; a 200 leaves its body attached for :meth:`_poll_loop` to read."""
        self._poll_started = time.monotonic()
        resp = self._request()
        self._traffic()
        if resp.status_code == 204:
            self._recycle(resp)
        else:
            self._start_body(resp)

    def _poll_loop(self) -> str:
        """Read the answer of the poll made by ``_open``, then poll until closed or failed."""
        stop = self._stop
        m = self._m
        while True:
            before = m.messages_received
            resp = self._resp
            if resp is not None:
                outcome = self._read_body(*self._body_parser())
                if stop.is_set():
                    return EOF_
                if outcome == EOF_:
                    outcome = self._flush()
                if outcome == DONE:
                    return DONE
                self._recycle(resp)
            if stop.is_set():
                return EOF_
            if stop.wait(self._pause_after_poll(m.messages_received > before)):
                return EOF_
            self._poll()

    def _pause_after_poll(self, delivered: bool) -> float:
        """Seconds before the next poll: none after messages; after an empty answer
        ``poll_interval``, and at least a pause growing from 0.1 s to ``max_delay`` while empty
        answers come back within a second (a server answering 204 at once is no storm)."""
        if delivered:
            self._empty_pause = 0.0
            return 0.0
        if time.monotonic() - self._poll_started >= 1.0:
            self._empty_pause = 0.0
            return self.poll_interval
        grown = self._empty_pause * 2 if self._empty_pause else _FIRST_EMPTY_PAUSE
        self._empty_pause = min(self.policy.max_delay, grown)
        return max(self.poll_interval, self._empty_pause)

    def _recycle(self, resp: requests.Response) -> None:
        """Hand the connection of a fully read answer back to the session's pool."""
        self._resp = None
        self._sock = None
        if self._stop.is_set():
            resp.close()
            return
        resp.raw.release_conn()

    def _head_timeout(self) -> Optional[float]:
        return self.idle_timeout if self._long_poll else self.timeout

    def _request_failed(self, exc: requests.RequestException) -> TransportError:
        if self._long_poll and (
            self._head_expired or isinstance(exc, requests.exceptions.ReadTimeout)
        ):
            return HeartbeatTimeout(
                f"no answer to the poll within {self.idle_timeout} s (idle_timeout)"
            )
        return super()._request_failed(exc)

    def _health_idle_limit(self) -> Optional[float]:
        limit = self.idle_timeout
        if limit is None or not self._long_poll:
            return limit
        return limit + self.poll_interval

    # -- resumption ----------------------------------------------------------------------

    def _current_event_id(self) -> Optional[str]:
        last = self._parser.last_id
        return last if last is not None else self._initial_event_id
