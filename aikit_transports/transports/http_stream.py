"""Newline-delimited JSON over plain HTTP: one long response, or repeated long polls.

For networks where WebSocket upgrades and ``text/event-stream`` are blocked (corporate proxies,
old load balancers): only ordinary HTTP requests and responses are used.
"""

from __future__ import annotations

from typing import Any, Optional

import requests

from ..errors import ConnectError, HeartbeatTimeout, ProtocolError, TransportError
from ..events import TransportType
from ..logs import server_text
from ..parsers.ndjson import NDJSONParser
from ..validate import check_int
from .base import DONE, EOF_
from .http_base import HTTPTransportBase, cut_in_headers

__all__ = ["HTTPStreamTransport"]

_MODES = ("stream", "long-poll")


class HTTPStreamTransport(HTTPTransportBase):
    """NDJSON messages over HTTP; ``Event.data`` is each line's parsed JSON value.

    ``mode="stream"``: one long response (chunked or close-delimited) read as it arrives; a
    line is delivered as soon as its newline is read. HTTP 204 ends the stream (``done``); the
    end of the body reconnects (unless ``reconnect_on_eof=False``), and the reconnect carries
    ``Last-Event-ID`` with the last id seen, so the server can resume without duplicates.

    ``mode="long-poll"``: repeated requests over one keep-alive ``requests.Session``, each
    carrying ``Last-Event-ID``. A 200 delivers the NDJSON lines of its body (read in full, then
    the connection goes back to the pool) and the next poll follows at once; a 204 means
    "nothing new yet" and the next poll follows after ``poll_interval`` seconds (also after a
    200 that held no message). A poll may wait up to ``idle_timeout`` for its answer (servers
    hold long polls open); ``close()`` cuts a waiting poll at once.

    States in long-poll mode: the first answered poll makes the transport CONNECTED and it stays
    so across answered polls (``connected`` is emitted once, not per poll). A failed poll (a
    refused or lost connection, a retryable status, no answer within ``idle_timeout``) is a
    dropped connection: ``error``, then ``reconnecting`` and a new poll by the reconnection
    policy, ``connected`` again once a poll is answered, counted in ``metrics.reconnects``.
    As for every wire, failed attempts reset after a poll that delivered messages; answered
    polls count as traffic for ``health()``. A long poll never ends with ``done`` (and
    ``reconnect_on_eof`` does not apply).

    Ids: when a line is a JSON object holding ``id_field`` (``None`` turns ids off),
    ``Event.id`` is ``str()`` of its value. A malformed line becomes an ``error`` event
    (``ProtocolError`` with the line number and a snippet) and the stream goes on; a line longer
    than ``max_line_bytes`` is a ``MessageTooLarge`` that drops the connection and reconnects.
    Any ``Content-Type`` is read as NDJSON, except an HTML page (a proxy's error or login page),
    which fails at once with ``ProtocolError``.
    """

    type = TransportType.HTTP_STREAM
    logger_name = "aikit_transports.http_stream"

    def __init__(
        self,
        url: str,
        *,
        mode: str = "stream",
        chunk_size: int = 65536,
        id_field: Optional[str] = "id",
        poll_interval: float = 0.0,
        max_line_bytes: int = 8 << 20,
        **options: Any,
    ) -> None:
        super().__init__(url, chunk_size=chunk_size, **options)
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
        self._no_content = False
        self._parser = NDJSONParser(
            max_line_bytes=max_line_bytes, id_field=id_field, transport_id=self.id
        )

    def _default_headers(self) -> dict[str, str]:
        return {
            "Accept": "application/x-ndjson, application/jsonl, application/json;q=0.9, */*;q=0.5",
            "Cache-Control": "no-cache",
        }

    # -- the wire ------------------------------------------------------------------------

    def _open(self) -> None:
        if self._long_poll:
            self._poll()
            return
        resp = self._request()
        self._no_content = resp.status_code == 204
        if self._no_content:
            resp.close()
            return
        self._start_body(resp)

    def _read(self) -> str:
        if self._long_poll:
            return self._poll_loop()
        if self._no_content:
            return DONE
        outcome = self._read_body(self._parser.feed, self._parser_error_list, self._publish)
        if outcome == EOF_ and not self._stop.is_set():
            self._flush()  # a clean end of the body: a last line without its newline counts
        return outcome

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

    def _flush(self) -> None:
        parser = self._parser
        events = parser.flush()
        if events:
            self._publish(events)
        if parser.errors:
            self._parser_errors(parser.errors)

    # -- long-poll -----------------------------------------------------------------------

    def _poll(self) -> None:
        """Make one poll; a 200 leaves its body attached for :meth:`_poll_loop` to read."""
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
                self._read_body(self._parser.feed, self._parser_error_list, self._publish)
                if stop.is_set():
                    return EOF_
                self._flush()
                self._recycle(resp)
            if stop.is_set():
                return EOF_
            if m.messages_received == before and stop.wait(self.poll_interval):
                return EOF_
            self._poll()

    def _recycle(self, resp: requests.Response) -> None:
        """Hand the connection of a fully read answer back to the session's pool."""
        self._resp = None
        self._sock = None
        if self._stop.is_set():
            resp.close()
            return
        resp.raw.release_conn()

    def _read_timeout(self) -> Optional[float]:
        return self.idle_timeout if self._long_poll else self.timeout

    def _request_failed(self, exc: requests.RequestException) -> TransportError:
        if self._long_poll and isinstance(exc, requests.exceptions.ReadTimeout):
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
