"""Server-Sent Events over ``requests``, with WHATWG EventSource semantics."""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Any, Optional

from ..errors import ConnectError, ProtocolError
from ..events import Event, TransportType
from ..logs import server_text
from ..parsers.sse import SSEParser
from ..validate import check_int
from .base import DONE
from .http_base import HTTPTransportBase, cut_in_headers

__all__ = ["SSETransport"]

_data_of = operator.itemgetter(0)


class SSETransport(HTTPTransportBase):
    """A Server-Sent Events stream that reconnects and resumes with ``Last-Event-ID``.

    The request carries ``Accept: text/event-stream`` and ``Cache-Control: no-cache``
    (user headers win); any method and body (``json=`` / ``data=``) may be used and is sent
    again on every reconnect. HTTP 204 ends the stream (``done``); a response that is not
    ``text/event-stream`` fails at once with ``ProtocolError``. An event whose data equals
    ``done_sentinel`` (``"[DONE]"`` by default; ``None`` to turn off) ends the stream and is not
    delivered.
    """

    type = TransportType.SSE
    logger_name = "aikit_transports.sse"

    def __init__(
        self,
        url: str,
        *,
        done_sentinel: Optional[str] = "[DONE]",
        max_event_bytes: int = 8 << 20,
        last_event_id: Optional[str] = None,
        **options: Any,
    ) -> None:
        super().__init__(url, last_event_id=last_event_id, **options)
        if done_sentinel is not None and not isinstance(done_sentinel, str):
            raise ValueError("done_sentinel must be a string or None")
        check_int("max_event_bytes", max_event_bytes)
        self.done_sentinel = done_sentinel
        self.max_event_bytes = max_event_bytes
        self._no_content = False
        self._parser = SSEParser(
            max_event_bytes=max_event_bytes, last_event_id=last_event_id, transport_id=self.id
        )

    def _default_headers(self) -> dict[str, str]:
        return {"Accept": "text/event-stream", "Cache-Control": "no-cache"}

    def _open(self) -> None:
        resp = self._request()
        if resp.status_code == 204:
            resp.close()
            self._no_content = True
            return
        self._no_content = False
        content_type = resp.headers.get("Content-Type", "")
        if content_type.split(";", 1)[0].strip().lower() != "text/event-stream":
            cut = cut_in_headers(resp)
            resp.close()
            if cut:
                raise ConnectError("connection lost in the response headers", retryable=True)
            raise ProtocolError(
                "expected Content-Type text/event-stream, got "
                f"'{server_text(content_type) or 'none'}'",
                retryable=False,
            )
        self._parser.reset()
        self._attach(resp)

    def _read(self) -> str:
        if self._no_content:
            return DONE
        parser = self._parser
        return self._read_body(parser.feed, lambda: parser.errors, self._on_events)

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
                self._publish(events[: datas.index(sentinel)])
                return DONE
        self._publish(events)
        return None
