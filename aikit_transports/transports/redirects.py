"""Redirects: where one may lead, and which headers go along. The same policy for every wire.

Pure functions (no I/O) that any wire can apply to a redirect before following it, and
``follow_redirects``, the loop for a ``requests`` response:

* :func:`check_redirect`: a redirect from ``https`` to ``http`` (or ``wss`` to ``ws``) would
  send the request in plain text, and one to another scheme (``ftp:``, ``file:``...) cannot be
  followed: both are a :class:`~aikit_transports.ProtocolError` (``retryable=False``) at once,
  never a retried "connection failed".
* :func:`headers_for_redirect`: to another origin (scheme, host and port; another port of the
  same host is another origin) only :data:`SAFE_REDIRECT_HEADERS` and the names the user lists
  in ``redirect_headers`` go along; every other header the user set stays with its origin.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any, Optional
from urllib.parse import urlsplit

import requests

from ..errors import ConnectError, ProtocolError
from ..logs import server_text
from ..redact import redact_url

__all__ = [
    "SAFE_REDIRECT_HEADERS",
    "same_origin",
    "check_redirect",
    "headers_for_redirect",
    "follow_redirects",
]

#: Headers that go along on a redirect to another origin (lower case): they describe the
#: request, never who makes it.
SAFE_REDIRECT_HEADERS = frozenset(
    ("accept", "accept-encoding", "cache-control", "content-type", "user-agent", "last-event-id")
)

_DEFAULT_PORTS = {"http": 80, "https": 443}
# A WebSocket URL has the origin of the HTTP URL it is requested with (ws -> http, wss -> https).
_AS_HTTP = {"ws": "http", "wss": "https"}
_SECURE = ("https", "wss")
_HTTP_SCHEMES = ("http", "https")
_WS_SCHEMES = ("ws", "wss", "http", "https")

# Headers that ``requests`` builds again for each hop from its own state, never from the
# user's: the body's framing (kept on a 307/308), ``Cookie`` from its cookie jar (by the
# cookies' own domains) and ``Proxy-Authorization`` from the proxy URL.
_PER_HOP = ("content-length", "transfer-encoding", "cookie", "proxy-authorization")


def _scheme(url: str) -> str:
    return url.split(":", 1)[0].lower() if ":" in url else ""


def _origin(url: str) -> Optional[tuple[str, str, Optional[int]]]:
    """``(scheme, host, port)`` of ``url``, the port filled in from the scheme; ``None`` for a
    URL that does not parse (it is the origin of nothing)."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    scheme = _AS_HTTP.get(scheme, scheme)
    return scheme, (parts.hostname or ""), port if port is not None else _DEFAULT_PORTS.get(scheme)


def same_origin(a: str, b: str) -> bool:
    """Whether two URLs have one origin: scheme, host and port (``http://h`` is
    ``http://h:80``; ``ws``/``wss`` count as ``http``/``https``).

    :param a: a URL.
    :param b: another URL.
    """
    origin = _origin(a)
    return origin is not None and origin == _origin(b)


def check_redirect(previous: str, target: str) -> None:
    """Raise :class:`ProtocolError` (``retryable=False``) when the redirect from ``previous``
    to ``target`` must not be followed: a scheme the wire does not speak (``http``/``https``
    from an HTTP URL; also ``ws``/``wss`` from a WebSocket URL), or from ``https``/``wss`` to
    plain text.

    :param previous: the URL that answered with the redirect.
    :param target: where it redirects to.
    """
    old, new = _scheme(previous), _scheme(target)
    allowed = _WS_SCHEMES if old in ("ws", "wss") else _HTTP_SCHEMES
    if new not in allowed:
        raise ProtocolError(
            f"refused to follow a redirect to {server_text(redact_url(target))}: the scheme "
            f"{server_text(new, 20)!r} is not supported (only {', '.join(allowed)})",
            retryable=False,
        )
    if old in _SECURE and new not in _SECURE:
        raise ProtocolError(
            f"refused to follow a redirect from {old} to {server_text(redact_url(target))}: "
            "the request would go out in plain text",
            retryable=False,
        )


def headers_for_redirect(
    headers: Mapping[str, str], previous: str, target: str, keep: Iterable[str] = ()
) -> dict[str, str]:
    """The headers that go along from ``previous`` to ``target``: all of them within the
    origin; to another origin, only :data:`SAFE_REDIRECT_HEADERS` and the names in ``keep``.

    :param headers: the headers of the request to ``previous``.
    :param previous: the URL that answered with the redirect.
    :param target: where it redirects to.
    :param keep: more header names that may go to another origin (``redirect_headers``).
    """
    if same_origin(previous, target):
        return dict(headers)
    allowed = SAFE_REDIRECT_HEADERS.union(name.lower() for name in keep)
    return {name: value for name, value in headers.items() if name.lower() in allowed}


def follow_redirects(
    session: requests.Session,
    resp: requests.Response,
    *,
    keep_headers: Iterable[str] = (),
    **send_options: Any,
) -> requests.Response:
    """Follow the redirects of ``resp`` (made with ``allow_redirects=False``) as ``requests``
    would (method, body, cookies, at most ``session.max_redirects``), by the rules of this
    module: :func:`check_redirect` first, then :func:`headers_for_redirect` with
    ``keep_headers`` (an ``Authorization`` set by ``auth`` is dropped by ``requests`` itself
    on the way to another host, port or scheme, and never put back).
    """
    keep = (*keep_headers, *_PER_HOP)
    hops = 0
    while resp.is_redirect:
        nxt = resp.next  # the next request, built by requests (rebuild_auth, cookies, method)
        if nxt is None:
            break
        previous = resp.request.url or ""
        resp.close()
        hops += 1
        if hops > session.max_redirects:
            raise ConnectError(f"more than {session.max_redirects} redirects", retryable=False)
        target = nxt.url or ""
        check_redirect(previous, target)
        kept = headers_for_redirect(nxt.headers, previous, target, keep)
        for name in [n for n in nxt.headers if n not in kept]:
            del nxt.headers[name]
        resp = session.send(nxt, allow_redirects=False, **send_options)
    return resp
