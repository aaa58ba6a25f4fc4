"""What went wrong with an HTTP request, in our words: a typed error, the library's exception as
its ``__cause__`` (scrubbed of credentials), and whether the request certainly never reached
the server, which decides whether a request that is not idempotent may be sent again."""

from __future__ import annotations

import http.client
import socket
import ssl
from collections.abc import Iterator
from typing import Optional
from urllib.parse import urlsplit

import requests
from urllib3.exceptions import NameResolutionError, NewConnectionError

from ..errors import ConnectError, ProtocolError, TransportError
from ..redact import describe_exception, redact_text

__all__ = ["request_failure", "host_port"]

_DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}


def host_port(url: str) -> str:
    """``host:port`` of ``url`` (no credentials, the scheme's port when none is given)."""
    try:
        parts = urlsplit(url)
        port = parts.port or _DEFAULT_PORTS.get(parts.scheme.lower(), 0)
    except ValueError:
        return "(invalid address)"
    host = parts.hostname or "(no host)"
    if ":" in host:
        host = f"[{host}]"
    return f"{host}:{port}"


def _chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and what it wraps (causes, contexts, urllib3's ``reason``, exceptions in args)."""
    seen: set[int] = set()
    todo = [exc]
    while todo and len(seen) < 20:
        current = todo.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        for nxt in (
            getattr(current, "reason", None),
            *current.args,
            current.__cause__,
            current.__context__,
        ):
            if isinstance(nxt, BaseException):
                todo.append(nxt)


def _scrub(exc: BaseException) -> None:
    """Redact the messages of ``exc`` and what it wraps: it becomes a ``__cause__`` that a user
    may log, and urllib3 puts the request's path and query in its messages."""
    for current in _chain(exc):
        if any(isinstance(arg, str) for arg in current.args):
            try:
                current.args = tuple(
                    redact_text(arg) if isinstance(arg, str) else arg for arg in current.args
                )
            except (AttributeError, TypeError):  # an exception type with read-only args
                continue


def request_failure(
    exc: requests.RequestException, url: str, *, timeout: float, head_expired: bool = False
) -> TransportError:
    """A ``ConnectError`` in our words for a request to ``url`` that failed with ``exc`` (a
    ``ProtocolError``, not retried, for a response head over ``http.client``'s limits).

    ``head_expired``: the response head did not arrive within ``timeout`` (the deadline cut the
    connection, so ``exc`` is only the consequence).
    """
    request = getattr(exc, "request", None)
    where = host_port(getattr(request, "url", None) or url)
    chain = list(_chain(exc))
    sent: Optional[bool] = None
    retryable = True
    if any(_head_too_long(e) for e in chain):
        too_long = ProtocolError(
            f"the response head from {where} was too long (a line over 64 KiB, or more than "
            "100 header lines)",
            retryable=False,
        )
        _scrub(exc)
        too_long.__cause__ = exc
        return too_long
    if head_expired:
        message = f"timed out after {timeout:g} s waiting for the response headers from {where}"
    elif isinstance(exc, requests.exceptions.SSLError) or any(
        isinstance(e, ssl.SSLError) for e in chain
    ):
        tls = next((e for e in chain if isinstance(e, ssl.SSLError)), exc)
        message = (
            f"TLS failed with {where} (certificate not trusted or wrong host; nothing is sent "
            f"without verification): {describe_exception(tls)}"
        )
        sent, retryable = False, False
    elif isinstance(exc, requests.exceptions.ProxyError):
        why = describe_exception(_innermost(chain))
        message = f"the proxy refused the tunnel to {where}: {why}"
        sent = False
    elif isinstance(exc, requests.exceptions.ConnectTimeout):
        message = f"timed out after {timeout:g} s connecting to {where}"
        sent = False
    elif any(isinstance(e, (NameResolutionError, socket.gaierror)) for e in chain):
        message = f"DNS lookup failed for {where.rsplit(':', 1)[0]}"
        sent = False
    elif any(isinstance(e, ConnectionRefusedError) for e in chain) or _refused(chain):
        message = f"connection refused by {where}"
        sent = False
    elif any(isinstance(e, NewConnectionError) for e in chain):
        message = f"could not connect to {where}: {describe_exception(_innermost(chain))}"
        sent = False
    elif isinstance(exc, requests.exceptions.Timeout):
        message = f"timed out after {timeout:g} s waiting for the response headers from {where}"
    elif isinstance(exc, (requests.exceptions.InvalidURL, requests.exceptions.MissingSchema)):
        message = f"invalid URL: {describe_exception(exc)}"
        sent, retryable = False, False
    elif isinstance(exc, requests.exceptions.ConnectionError):
        message = f"connection to {where} lost before the response headers"
    else:
        message = f"request to {where} failed: {describe_exception(exc)}"
    error = ConnectError(message, retryable=retryable)
    error.request_sent = sent
    _scrub(exc)
    error.__cause__ = exc
    return error


def _head_too_long(exc: BaseException) -> bool:
    return isinstance(exc, http.client.LineTooLong) or (
        isinstance(exc, http.client.HTTPException) and "got more than" in str(exc)
    )


def _refused(chain: list[BaseException]) -> bool:
    return any("Connection refused" in str(e) for e in chain if isinstance(e, OSError))


def _innermost(chain: list[BaseException]) -> BaseException:
    return chain[-1]
