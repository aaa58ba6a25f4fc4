"""Opening a WebSocket connection: TCP, proxy, TLS and the opening handshake (RFC 6455 §4).

:class:`Connector` holds one transport's connection options and opens connections with them.
The whole opening handshake runs against one deadline (``timeout``): connecting, TLS, writing
the request and reading the status line and headers, however slowly the server sends them.
The response head is capped (:data:`MAX_HEAD_BYTES`, :data:`MAX_HEAD_LINES`), so a server
that never ends a line cannot grow memory. Redirects are followed here (three at most) by the
policy every wire shares (:mod:`.redirects`): never from ``wss`` to ``ws`` nor to another
scheme, and to another origin only the safe headers and those named in ``redirect_headers``.

Direct connections are opened here; through a proxy (explicit, or ``http_proxy`` /
``https_proxy`` from the environment) ``websocket-client`` opens the tunnel (HTTP CONNECT or
SOCKS), each of its steps bounded by the time left.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple
from urllib.parse import unquote, urljoin, urlsplit

import websocket
from websocket import _http as ws_http
from websocket import _socket as ws_socket
from websocket import _url as ws_url

from ..errors import ConnectError, HTTPStatusError, ProtocolError, TransportError
from ..logs import server_text
from ..parsers.deflate import OFFER, DeflateParams, ExtensionError, accept
from ..redact import describe_exception
from .http_base import parse_retry_after
from .redirects import check_redirect, headers_for_redirect

__all__ = ["Connector", "Opened", "MAX_HEAD_BYTES", "MAX_HEAD_LINES"]

#: The largest response head (status line and headers) accepted from a server.
MAX_HEAD_BYTES = 64 * 1024
#: The most header lines accepted in a response head.
MAX_HEAD_LINES = 100
#: Redirects a handshake may follow.
MAX_REDIRECTS = 3
_REDIRECT_STATUSES = (301, 302, 303, 307, 308)
_GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_READ_SIZE = 4096
_BODY_KEPT = 4096
#: Request headers the handshake sets itself (a user header of the same name is not sent;
#: a user's ``Origin`` is used when the ``origin`` option is not given).
_OWN_HEADERS = frozenset(
    {"host", "upgrade", "connection", "sec-websocket-key", "sec-websocket-version"}
)


@dataclass
class Opened:
    """An open connection: the socket, the bytes read past the response head (frames the
    server sent at once), the response, and what it negotiated."""

    sock: socket.socket
    leftover: bytes
    status: int
    headers: List[Tuple[str, str]]
    subprotocol: Optional[str]
    deflate: Optional[DeflateParams]


@dataclass
class _Head:
    """A parsed response head: status, reason and headers (names lower-cased, in order)."""

    status: int
    reason: str
    headers: List[Tuple[str, str]]

    def get(self, name: str) -> Optional[str]:
        values = self.get_all(name)
        return values[-1] if values else None

    def get_all(self, name: str) -> List[str]:
        return [value for key, value in self.headers if key == name]


class _HandshakeTimeout(Exception):
    """The deadline for the opening handshake passed."""


def default_ca_bundle() -> str:
    """The CA bundle ``requests`` uses: ``REQUESTS_CA_BUNDLE``, ``CURL_CA_BUNDLE``, else certifi."""
    for name in ("REQUESTS_CA_BUNDLE", "CURL_CA_BUNDLE"):
        value = os.environ.get(name)
        if value:
            return value
    from requests.utils import DEFAULT_CA_BUNDLE_PATH

    return str(DEFAULT_CA_BUNDLE_PATH)


def _check_cert(cert: Any) -> Optional[Tuple[str, Optional[str]]]:
    """``cert`` in the ``requests`` forms as ``(certfile, keyfile)``."""
    if cert is None:
        return None
    if isinstance(cert, str):
        return cert, None
    if isinstance(cert, tuple) and len(cert) == 2 and all(isinstance(p, str) for p in cert):
        return cert[0], cert[1]
    raise ValueError("cert must be a PEM path or a (cert, key) pair of paths")


def _proxy_options(proxies: Any, url: str, timeout: float) -> Dict[str, Any]:
    """``websocket-client`` proxy options for the proxy ``proxies`` names for ``url``."""
    if not proxies:
        return {}
    if not hasattr(proxies, "get"):
        raise ValueError("proxies must be a mapping of schemes to proxy URLs")
    secure = url.lower().startswith("wss:")
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
    options: Dict[str, Any] = {
        "http_proxy_host": parts.hostname,
        "http_proxy_port": port,
        "proxy_type": kind,
        "http_proxy_timeout": timeout,
    }
    if parts.username:
        options["http_proxy_auth"] = (unquote(parts.username), unquote(parts.password or ""))
    return options


def _redirect_target(head: _Head, url: str) -> Optional[str]:
    """The absolute ``ws``/``wss`` URL a redirect points to, else ``None``."""
    location = head.get("location")
    if head.status not in _REDIRECT_STATUSES or not location:
        return None
    # urljoin only knows http(s): join on the http form, then map the scheme back.
    base = "http" + url[2:] if url[:2].lower() == "ws" else url
    target = urljoin(base, location)
    scheme, sep, rest = target.partition("://")
    mapped = {"http": "ws", "https": "wss"}.get(scheme.lower(), scheme.lower())
    return f"{mapped}{sep}{rest}"


def _parse_head(raw: bytes) -> _Head:
    """The status line and headers of a response head (``raw`` without the blank line)."""
    lines = raw.decode("latin-1").split("\n")
    status_line = lines[0].rstrip("\r")
    version, _, rest = status_line.partition(" ")
    code, _, reason = rest.partition(" ")
    if not version.startswith("HTTP/") or len(code) != 3 or not code.isdigit():
        raise ProtocolError(
            f"WebSocket handshake failed: not an HTTP response ({server_text(status_line)!r})",
            retryable=False,
        )
    headers: List[Tuple[str, str]] = []
    for line in lines[1:]:
        line = line.rstrip("\r")
        name, sep, value = line.partition(":")
        if not sep or not name or name != name.strip():
            raise ProtocolError(
                f"WebSocket handshake failed: malformed header line ({server_text(line)!r})",
                retryable=False,
            )
        headers.append((name.lower(), value.strip()))
    return _Head(int(code), reason.strip(), headers)


def _accept_key(key: str) -> str:
    return base64.b64encode(hashlib.sha1(key.encode("ascii") + _GUID).digest()).decode("ascii")


class Connector:
    """Opens connections for one transport: the options are checked once, at construction."""

    def __init__(
        self,
        *,
        headers: Dict[str, str],
        subprotocols: Optional[Sequence[str]],
        origin: Optional[str],
        compression: bool,
        verify: Any,
        cert: Any,
        proxies: Any,
        redirect_headers: Sequence[str],
        url: str,
        timeout: float,
    ) -> None:
        for name, value in headers.items():
            if any(c in name or c in value for c in "\r\n\0") or not name.strip():
                raise ValueError("headers: names and values cannot hold CR, LF or NUL")
        self.headers = headers
        self.subprotocols = list(subprotocols) if subprotocols else None
        self.origin = origin
        self.compression = compression
        self.timeout = timeout
        self.redirect_headers = tuple(redirect_headers)
        self._verify = verify
        self._cert = _check_cert(cert)
        self._proxy = _proxy_options(proxies, url, timeout)
        self._tls: Optional[ssl.SSLContext] = None

    # -- opening --------------------------------------------------------------------------

    def open(
        self, url: str, stop: threading.Event, track: Callable[[Optional[socket.socket]], None]
    ) -> Opened:
        """Connect to ``url`` and complete the opening handshake, following redirects.

        ``track`` is told of each socket as soon as it exists (and of ``None`` when it is
        dropped), so that ``close()`` can shut it; ``stop`` set means ``close()`` came.
        Raises a typed :class:`TransportError` (the library's exception as ``__cause__``).
        """
        deadline = time.monotonic() + self.timeout
        headers = self.headers
        hops = 0
        while True:
            sock: Optional[socket.socket] = None
            try:
                sock = self._connect(url, deadline)
                track(sock)
                if stop.is_set():  # close() came while connecting: it may have missed the socket
                    raise ConnectError("closed", retryable=False)
                head, rest, key = self._exchange(sock, url, headers, deadline)
                if head.status == 101:
                    return self._opened(sock, head, rest, key)
                target = _redirect_target(head, url)
                if target is None:
                    raise self._refused(sock, head, rest, deadline)
            except Exception as exc:
                if sock is not None:
                    track(None)
                    sock.close()
                if stop.is_set():
                    raise ConnectError("closed", retryable=False) from None
                error = self._failed(exc)
                if error is exc:
                    raise
                raise error from exc
            track(None)
            sock.close()
            hops += 1
            if hops > MAX_REDIRECTS:
                raise ConnectError(f"more than {MAX_REDIRECTS} redirects", retryable=False)
            check_redirect(url, target)  # never to plain text, never to another scheme
            headers = headers_for_redirect(headers, url, target, self.redirect_headers)
            url = target

    def _connect(self, url: str, deadline: float) -> socket.socket:
        """TCP (through a proxy if one applies), then TLS for ``wss``, within the deadline."""
        host, port, _, secure = ws_url.parse_url(url)
        proxy = ws_http.proxy_info(**self._proxy)  # type: ignore[no-untyped-call]
        proxy_host, _, _ = ws_url.get_proxy_info(
            host, secure, proxy.proxy_host, proxy.proxy_port, proxy.auth, proxy.no_proxy
        )
        tls = self._tls_context() if secure else None
        if proxy_host:
            options = ws_socket.sock_opt(None, {"context": tls} if tls else {})
            options.timeout = self._left(deadline)
            sock, _ = ws_http.connect(url, options, proxy, None)
            return sock
        sock = socket.create_connection((host, port), timeout=self._left(deadline))
        if tls is None:
            return sock
        try:
            sock.settimeout(self._left(deadline))  # CPython: a deadline for the TLS handshake
            return tls.wrap_socket(sock, server_hostname=host)
        except BaseException:
            sock.close()
            raise

    def _tls_context(self) -> ssl.SSLContext:
        """The TLS settings (``verify``, ``cert``), loaded on first use."""
        context = self._tls
        if context is not None:
            return context
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        try:
            if self._verify is False:
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:
                path = self._verify if isinstance(self._verify, str) else default_ca_bundle()
                if os.path.isdir(path):
                    context.load_verify_locations(capath=path)
                else:
                    context.load_verify_locations(cafile=path)
            if self._cert is not None:
                context.load_cert_chain(*self._cert)
        except (OSError, ssl.SSLError) as exc:
            raise ConnectError(
                f"TLS configuration failed: {describe_exception(exc)}", retryable=False
            ) from exc
        self._tls = context
        return context

    def _left(self, deadline: float) -> float:
        left = deadline - time.monotonic()
        if left <= 0:
            raise _HandshakeTimeout()
        return left

    def _exchange(
        self, sock: socket.socket, url: str, headers: Dict[str, str], deadline: float
    ) -> Tuple[_Head, bytes, str]:
        """Write the upgrade request; read the response head (bounded in size and time)."""
        key = base64.b64encode(os.urandom(16)).decode("ascii")
        sock.settimeout(self._left(deadline))
        sock.sendall(self._request(url, headers, key))
        buf = b""
        while True:
            end = buf.find(b"\r\n\r\n")
            size = end if end >= 0 else len(buf)
            if size > MAX_HEAD_BYTES:
                raise ProtocolError(
                    f"WebSocket handshake failed: the response head is over "
                    f"{MAX_HEAD_BYTES // 1024} KiB",
                    retryable=False,
                )
            # the line ends so far, less the status line's (in a complete head, the last
            # header line's end is part of the blank line)
            if buf.count(b"\n", 0, size) - (end < 0) > MAX_HEAD_LINES:
                raise ProtocolError(
                    f"WebSocket handshake failed: the response head has over {MAX_HEAD_LINES} "
                    "header lines",
                    retryable=False,
                )
            if end >= 0:
                return _parse_head(buf[:end]), buf[end + 4 :], key
            sock.settimeout(self._left(deadline))
            chunk = sock.recv(_READ_SIZE)
            if not chunk:
                raise ConnectError(
                    "WebSocket handshake failed: the server closed the connection before the "
                    "end of its response head",
                    retryable=True,
                )
            buf += chunk

    def _request(self, url: str, headers: Dict[str, str], key: str) -> bytes:
        parts = urlsplit(url)
        secure = parts.scheme.lower() == "wss"
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        port = parts.port
        if port is not None and port != (443 if secure else 80):
            host = f"{host}:{port}"
        resource = parts.path or "/"
        if parts.query:
            resource += f"?{parts.query}"
        # ``origin``, else one in ``headers``, else the URL's (as websocket-client sends it:
        # servers that check origins, such as Django Channels, refuse a handshake without one).
        origin = self.origin
        if origin is None:
            given = [v for k, v in headers.items() if k.lower() == "origin"]
            origin = given[0] if given else f"http{'s' if secure else ''}://{host}"
        lines = [
            f"GET {resource} HTTP/1.1",
            f"Host: {host}",
            "Upgrade: websocket",
            "Connection: Upgrade",
            f"Sec-WebSocket-Key: {key}",
            "Sec-WebSocket-Version: 13",
            f"Origin: {origin}",
        ]
        if self.subprotocols:
            lines.append(f"Sec-WebSocket-Protocol: {','.join(self.subprotocols)}")
        if self.compression:
            lines.append(f"Sec-WebSocket-Extensions: {OFFER}")
        lines.extend(
            f"{name}: {value}"
            for name, value in headers.items()
            if name.lower() not in _OWN_HEADERS and name.lower() != "origin"
        )
        return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8")

    # -- the answer -------------------------------------------------------------------------

    def _opened(self, sock: socket.socket, head: _Head, rest: bytes, key: str) -> Opened:
        """Check a 101 answer (RFC 6455 §4.1, RFC 7692 §5) and describe the connection."""

        def bad(what: str) -> ProtocolError:
            return ProtocolError(f"WebSocket handshake failed: {what}", retryable=False)

        if (head.get("upgrade") or "").lower() != "websocket":
            raise bad("the 101 response does not upgrade to websocket")
        connection = [t.strip().lower() for t in (head.get("connection") or "").split(",")]
        if "upgrade" not in connection:
            raise bad("the 101 response lacks 'Connection: Upgrade'")
        if head.get("sec-websocket-accept") != _accept_key(key):
            raise bad("the server's Sec-WebSocket-Accept does not match the key sent")
        subprotocol = head.get("sec-websocket-protocol")
        if self.subprotocols and subprotocol not in self.subprotocols:
            raise bad(
                f"none of the subprotocols {self.subprotocols} was accepted "
                f"(the server chose {server_text(subprotocol or '(none)')!r})"
            )
        if subprotocol is not None and not self.subprotocols:
            raise bad(f"the server chose the subprotocol {server_text(subprotocol)!r}, not offered")
        try:
            deflate = accept(head.get_all("sec-websocket-extensions"), self.compression)
        except ExtensionError as exc:
            raise bad(server_text(str(exc))) from None
        return Opened(sock, rest, head.status, head.headers, subprotocol, deflate)

    def _refused(
        self, sock: socket.socket, head: _Head, rest: bytes, deadline: float
    ) -> TransportError:
        """The error for an answer other than 101 (and not a redirect to follow)."""
        status = head.status
        shown = f"HTTP {status} {server_text(head.reason)}".rstrip()
        if 200 <= status < 300:
            return ProtocolError(
                f"the server did not switch protocols ({shown}): not a WebSocket endpoint",
                retryable=False,
            )
        retry_after = None
        if status in (429, 503):
            retry_after = parse_retry_after(head.get("retry-after"))
        body = self._body(sock, head, rest, deadline)
        return HTTPStatusError(
            f"WebSocket handshake refused: {shown}",
            status_code=status,
            retry_after=retry_after,
            headers=dict(head.headers),
            body=body,
        )

    def _body(self, sock: socket.socket, head: _Head, rest: bytes, deadline: float) -> Any:
        """The first 4 KiB of a refusal's body: what its ``Content-Length`` announces, as
        far as it arrives before the deadline."""
        length = head.get("content-length")
        want = min(int(length), _BODY_KEPT) if length and length.isdigit() else len(rest)
        try:
            while len(rest) < want:
                sock.settimeout(self._left(deadline))
                chunk = sock.recv(want - len(rest))
                if not chunk:
                    break
                rest += chunk
        except (OSError, _HandshakeTimeout):
            pass
        body = rest[:_BODY_KEPT]
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            return body

    def _failed(self, exc: BaseException) -> TransportError:
        """A typed, credential-free error for a failed connect or handshake."""
        if isinstance(exc, TransportError):
            return exc
        if isinstance(exc, (_HandshakeTimeout, socket.timeout)):
            return ConnectError(
                f"the opening handshake did not finish within timeout={self.timeout} s",
                retryable=True,
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
        if isinstance(exc, (socket.gaierror, websocket.WebSocketAddressException)):
            return ConnectError(
                f"could not resolve the host: {describe_exception(exc)}", retryable=True
            )
        if isinstance(exc, websocket.WebSocketProxyException):
            return ConnectError(f"proxy failed: {describe_exception(exc)}", retryable=True)
        if isinstance(exc, (websocket.WebSocketException, OSError)):
            return ConnectError(f"connection failed: {describe_exception(exc)}", retryable=True)
        return ConnectError(
            f"WebSocket handshake failed: {describe_exception(exc)}", retryable=True
        )
