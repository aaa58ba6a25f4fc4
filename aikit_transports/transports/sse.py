"""Server-Sent Events over ``requests``, with WHATWG EventSource semantics."""

from __future__ import annotations

import operator
from collections.abc import Mapping, Sequence
from typing import Any, Callable, Optional, Union

import requests

from ..config import BufferConfig, ReconnectPolicy
from ..errors import ConnectError, ProtocolError
from ..events import Event, TransportType
from ..logs import server_text
from ..parsers.sse import SSEParser
from ..timers import Scheduler
from ..validate import check_int
from .base import DONE
from .delivery import CarriedId
from .http_base import BodyParser, HTTPTransportBase, with_http_options_doc
from .http_body import cut_in_headers

__all__ = ["SSETransport"]

_data_of = operator.itemgetter(0)


@with_http_options_doc
class SSETransport(HTTPTransportBase):
    """A Server-Sent Events stream that reconnects and resumes with ``Last-Event-ID``.

    The request carries ``Accept: text/event-stream`` and ``Cache-Control: no-cache`` (user
    headers win); any method and body may be used. HTTP 204 ends the stream (``done``); a
    response that is not ``text/event-stream`` fails at once with ``ProtocolError``.

    What is sent again: an idempotent request (GET ...) reconnects after any drop and at the end
    of each response, as a browser's ``EventSource`` does. Any other (a POST to an LLM API)
    goes out again only when that cannot repeat output: it never reached the server, the
    answer said it was not processed (408, 425, 429, 503), or the stream is resumable (it has an
    event id to send as ``Last-Event-ID``). Otherwise a cut ends the transport with
    ``StreamInterrupted``, and the end of the response is ``done``.

    :param done_sentinel: data that ends the stream for good and is not delivered
        (``"[DONE]"``, as OpenAI-style APIs send; ``None`` to turn off).
    :param max_event_bytes: the largest event; a longer one drops the connection.

    The options every HTTP wire shares:
    """

    type = TransportType.SSE
    logger_name = "aikit_transports.sse"

    def __init__(
        self,
        url: str,
        *,
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
        done_sentinel: Optional[str] = "[DONE]",
        done_when: Optional[Callable[[Event], Any]] = None,
        max_event_bytes: int = 8 << 20,
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
        if done_sentinel is not None and not isinstance(done_sentinel, str):
            raise ValueError("done_sentinel must be a string or None")
        check_int("max_event_bytes", max_event_bytes)
        self.done_sentinel = done_sentinel
        self.max_event_bytes = max_event_bytes
        self._parser = SSEParser(
            max_event_bytes=max_event_bytes, last_event_id=last_event_id, transport_id=self.id
        )

    def _default_headers(self) -> dict[str, str]:
        return {"Accept": "text/event-stream", "Cache-Control": "no-cache"}

    def _open(self) -> Optional[str]:
        resp = self._request()
        if resp.status_code == 204:  # the server ends the stream for good
            resp.close()
            return DONE
        content_type = resp.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "text/event-stream":
            cut = cut_in_headers(resp)
            resp.close()
            if cut:
                raise ConnectError("connection lost in the response headers", retryable=True)
            shown = server_text(content_type or "none")
            raise ProtocolError(
                f"expected Content-Type text/event-stream, got {shown!r}",
                retryable=False,
            )
        parser = self._parser
        if self._sent_event_id is not None and parser.last_event_id is not None:
            # events of this response without an id of their own carry this one (typed, so
            # that a replay check can tell them from an id the server sent again)
            parser.last_event_id = CarriedId(parser.last_event_id)
        parser.reset()
        self._attach(resp)
        return None

    def _body_parser(self) -> BodyParser:
        parser = self._parser
        return parser.feed, lambda: parser.errors, self._on_events

    def _current_event_id(self) -> Optional[str]:
        return self._parser.last_event_id

    def _resume_from(self, event_id: Optional[str]) -> None:
        super()._resume_from(event_id)
        self._parser.last_event_id = event_id or None

    def _server_retry_ms(self) -> Optional[int]:
        return self._parser.retry

    def _on_events(self, events: Sequence[Event]) -> Optional[str]:
        sentinel = self.done_sentinel
        if sentinel is not None:
            # The data of the batch, gathered and searched in C (``Event`` is a named tuple
            # whose item 0 is ``data``): a Python loop here cost as much as the delivery.
            datas = list(map(_data_of, events))
            if sentinel in datas:
                super()._on_events(events[: datas.index(sentinel)])
                return DONE
        return super()._on_events(events)
