"""The relay's upstream: the transport of each lease term, and whether its request may be sent
again ("never repeat", see the reconnection docs).

A relay given a factory builds a new upstream each time it takes the lease; one given a
transport uses it for one lease term. A relay that takes over from another opens the upstream
again: that re-sends its request, which is fine for an idempotent one (a GET stream) or a
resumable one (the stream has an upstream id to resume after, sent as ``Last-Event-ID``), and
is never done for the others (a POST that starts, and bills, a new LLM completion).
"""

from __future__ import annotations

from typing import Callable, Optional, Union

from ...errors import TransportError
from ...events import TransportState
from ...redact import describe_exception
from ...transports.base import BaseTransport

__all__ = ["UpstreamFactory", "Upstreams", "may_send_again"]

#: Builds the upstream transport, given the upstream id to resume after (``None``: start).
UpstreamFactory = Callable[[Optional[str]], BaseTransport]


def may_send_again(upstream: BaseTransport) -> bool:
    """Whether the upstream's request may be sent again from the start: the transport's own
    ``idempotent`` (for the HTTP wires decided by the method unless given; WebSocket and Redis
    readers resume by their own means)."""
    return upstream.idempotent


class Upstreams:
    """Where a relay's upstream transports come from: a factory (any number of lease terms)
    or one transport, not connected yet (one lease term)."""

    def __init__(self, transport: Union[BaseTransport, UpstreamFactory]) -> None:
        if isinstance(transport, BaseTransport):
            if transport.state is not TransportState.IDLE:
                raise ValueError("the upstream transport must not be connected yet")
            self._template: Optional[BaseTransport] = transport
            self._factory: Optional[UpstreamFactory] = None
        elif callable(transport):
            self._template = None
            self._factory = transport
        else:
            raise ValueError("transport must be a transport or a factory f(last_id) -> transport")

    def build(self, upstream_id: Optional[str]) -> BaseTransport:
        """The upstream of a new lease term, resuming after ``upstream_id`` (not connected)."""
        if self._factory is not None:
            try:
                made = self._factory(upstream_id)
            except Exception as exc:
                raise TransportError(
                    f"the upstream factory raised {describe_exception(exc)}", retryable=False
                ) from exc
            if not isinstance(made, BaseTransport):
                raise TransportError(
                    f"the upstream factory returned {type(made).__name__}, not a transport",
                    retryable=False,
                )
            return made
        template, self._template = self._template, None
        if template is None:
            raise TransportError(
                "the lease was lost to another relay and this relay was given a transport, "
                "which it cannot reopen: give it a factory (lambda last_id: SSETransport(url, "
                "last_event_id=last_id)) to let it take the lease again",
                retryable=False,
            )
        if upstream_id is not None:
            template._resume_from(upstream_id)
        return template

    def discard(self, timeout: float) -> None:
        """Close the transport given, if it was never used (the relay never ran)."""
        template, self._template = self._template, None
        if template is not None:
            template.close(timeout)
