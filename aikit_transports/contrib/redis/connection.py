"""One connection to Redis, on ``redis-py``'s ``Connection``: URL checks, typed errors, interrupts.

The transport and the relay speak raw commands on connections of their own rather than through
a ``redis.Redis`` client: replies keep the plain RESP2 shapes whatever the ``redis-py`` version,
``redis-py``'s own retries stay off (the library's :class:`~aikit_transports.ReconnectPolicy`
decides), and a thread blocked in ``XREAD BLOCK`` can be woken from another thread by shutting
the socket down (:meth:`RedisLink.interrupt`).
"""

from __future__ import annotations

import contextlib
import hashlib
import socket
from typing import Any, Callable, Dict, List, NamedTuple, Optional, Sequence, Tuple, Union
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit

import redis
import redis.connection
import redis.exceptions

from ...errors import ConnectError, HeartbeatTimeout, ProtocolError, TransportError
from ...redact import describe_exception
from .resp import ReplyError, ReplyReader, new_reader, pack_command

__all__ = [
    "RedisAddress",
    "RedisLink",
    "RedisReplyError",
    "Script",
    "parse_redis_url",
    "translate",
]

#: Query parameters that are ours, not redis-py's.
OWN_PARAMS = ("stream", "group", "consumer")
_SCHEMES = ("redis", "rediss", "unix")
#: Options of redis-py's pools, not of its connections: accepted in URLs, unused here.
_POOL_ONLY = ("max_connections", "timeout")
_READ_SIZE = 256 * 1024
#: hiredis keeps a buffer as large as what it was fed until its next feed: past this many bytes
#: fed, a link that has read all it was sent takes a fresh reader, so that a link waiting (in
#: ``XREAD BLOCK``, or idle) does not hold the last large reply's memory.
_FRESH_READER_AFTER = 16 * 1024
#: Error replies worth another try (the server is loading, failing over or lost a group).
_RETRYABLE_CODES = frozenset(
    {"LOADING", "BUSY", "MASTERDOWN", "TRYAGAIN", "CLUSTERDOWN", "READONLY", "NOGROUP"}
)


class RedisReplyError(ProtocolError):
    """Redis answered a command with an error reply; ``code`` is its first word (``NOGROUP``,
    ``WRONGTYPE``, ...). Retryable when the server is loading, failing over or lost a group."""

    def __init__(self, message: str, *, code: str, **context: Any) -> None:
        super().__init__(message, **context)
        self.code = code
        self.retryable = code in _RETRYABLE_CODES


class RedisAddress(NamedTuple):
    """Where a Redis URL points: ``where`` (``host:port`` or a socket path, for messages), the
    connection class and its keyword arguments, and our own query parameters."""

    where: str
    connection_class: type
    kwargs: Dict[str, Any]
    params: Dict[str, str]


def parse_redis_url(
    url: str,
    *,
    verify: Union[bool, str] = True,
    cert: Union[str, Tuple[str, str], None] = None,
) -> RedisAddress:
    """Check a ``redis://``, ``rediss://`` or ``unix://`` URL; ``ValueError`` naming what is
    wrong. ``stream``, ``group`` and ``consumer`` in the query are returned in ``params``;
    other query parameters are ``redis-py`` connection options (``socket_keepalive=1``, ...).
    ``verify`` and ``cert`` take the ``requests`` forms and apply to ``rediss://``."""
    if not isinstance(url, str) or not url:
        raise ValueError("url must be a non-empty redis://, rediss:// or unix:// URL")
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"malformed Redis URL: {exc}") from None
    scheme = parts.scheme.lower()
    if scheme not in _SCHEMES:
        raise ValueError(
            f"url scheme {scheme or '(none)'!r} is not a Redis one; use redis://host:port/db, "
            "rediss:// (TLS) or unix:///path/to/socket"
        )
    own: Dict[str, str] = {}
    rest = []
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name in OWN_PARAMS:
            if not value:
                raise ValueError(f"the Redis URL's {name}= parameter is empty")
            own[name] = value
        else:
            rest.append((name, value))
    if scheme == "unix":
        path = unquote(parts.path)
        if not path:
            raise ValueError("a unix:// Redis URL needs a socket path: unix:///path/to/redis.sock")
        where = path
    else:
        host = parts.hostname or "localhost"
        if port is None and parts.netloc.endswith(":"):
            raise ValueError("malformed Redis URL: empty port")
        db_text = unquote(parts.path).strip("/")
        if db_text and not db_text.isdigit():
            raise ValueError(
                f"malformed Redis URL: the path must be a database number (/0), not {db_text!r}"
            )
        where = f"{host}:{port or 6379}"
    query = urlencode(rest)
    # by hand: urlunsplit drops the "//" of an empty authority (unix:///path)
    clean = f"{scheme}://{parts.netloc}{parts.path}" + (f"?{query}" if query else "")
    try:
        kwargs: Dict[str, Any] = dict(redis.connection.parse_url(clean))  # type: ignore[no-untyped-call]
    except ValueError as exc:
        raise ValueError(f"malformed Redis URL: {exc}") from None
    for name in _POOL_ONLY:
        kwargs.pop(name, None)
    connection_class = kwargs.pop("connection_class", redis.connection.Connection)
    if scheme == "rediss":
        _tls_options(kwargs, verify, cert)
    kwargs["protocol"] = 2  # the reply shapes parsed here (redis-py >= 8 defaults to RESP3)
    try:
        connection_class(**kwargs)  # checks the options; opens nothing
    except TypeError:
        del kwargs["protocol"]  # a redis-py that predates RESP3 speaks RESP2 only
        try:
            connection_class(**kwargs)
        except TypeError as exc:
            raise ValueError(f"unknown option in the Redis URL's query: {exc}") from None
    return RedisAddress(where, connection_class, kwargs, own)


def _tls_options(
    kwargs: Dict[str, Any], verify: Union[bool, str], cert: Union[str, Tuple[str, str], None]
) -> None:
    if verify is False:
        kwargs.setdefault("ssl_cert_reqs", "none")
        kwargs.setdefault("ssl_check_hostname", False)
    elif isinstance(verify, str):
        kwargs.setdefault("ssl_ca_certs", verify)
    if isinstance(cert, str):
        kwargs.setdefault("ssl_certfile", cert)
    elif cert is not None:
        kwargs.setdefault("ssl_certfile", cert[0])
        kwargs.setdefault("ssl_keyfile", cert[1])


_CODES = (
    (redis.exceptions.NoScriptError, "NOSCRIPT"),
    (redis.exceptions.ReadOnlyError, "READONLY"),
    (redis.exceptions.OutOfMemoryError, "OOM"),
    (redis.exceptions.ExecAbortError, "EXECABORT"),
    (redis.exceptions.NoPermissionError, "NOPERM"),
)


def _reply_code(exc: BaseException, text: str) -> str:
    """The first word of an error reply (``redis-py`` strips the ones it maps to classes)."""
    code = getattr(exc, "status_code", None)
    if isinstance(code, str) and code:
        return code.upper()
    for cls, name in _CODES:
        if isinstance(exc, cls):
            return name
    first = text.split(" ", 1)[0]
    return first if first.isupper() and first.isalpha() else "ERR"


def translate(exc: BaseException, where: str, *, connecting: bool) -> TransportError:
    """A typed, credential-free error for a ``redis-py`` or socket exception."""
    if isinstance(exc, TransportError):
        return exc
    detail = describe_exception(exc)
    error: TransportError
    if isinstance(exc, redis.exceptions.ResponseError):
        text = str(exc)
        code = _reply_code(exc, text)
        if isinstance(exc, redis.exceptions.AuthenticationWrongNumberOfArgsError):
            error = ConnectError(f"Redis at {where} refused the credentials: {text}")
            error.retryable = False
        else:
            error = RedisReplyError(f"Redis at {where} answered: {text[:300]}", code=code)
    elif isinstance(
        exc, (redis.exceptions.AuthenticationError, redis.exceptions.AuthorizationError)
    ):
        error = ConnectError(f"Redis at {where} refused the credentials: {detail}", retryable=False)
    elif isinstance(exc, redis.exceptions.BusyLoadingError):
        error = ConnectError(f"Redis at {where} is loading its data set: {detail}", retryable=True)
    elif isinstance(exc, ValueError):
        error = ProtocolError(f"Redis at {where} sent a malformed reply: {detail}", retryable=True)
    elif isinstance(exc, (redis.exceptions.TimeoutError, socket.timeout)):
        if connecting:
            error = ConnectError(f"cannot reach Redis at {where}: timed out ({detail})")
        else:
            error = HeartbeatTimeout(f"no reply from Redis at {where} in time: stalled ({detail})")
    elif connecting:
        error = ConnectError(f"cannot reach Redis at {where}: {detail}", retryable=True)
    else:
        error = ConnectError(f"connection to Redis at {where} lost: {detail}", retryable=True)
    return error


class RedisLink:
    """One connection, used by one thread at a time; :meth:`interrupt` works from any thread.

    ``redis-py`` opens it (TLS, ``AUTH``, ``SELECT``); commands and replies then go over its
    socket in RESP2 (see :mod:`.resp`; ``hiredis`` parses the replies when installed). Every
    failure comes out as a :class:`~aikit_transports.TransportError` (``ConnectError`` naming
    the host and port, ``HeartbeatTimeout``, or :class:`RedisReplyError`), and the connection
    is dropped after any failure but an error reply, so the next call reconnects.
    """

    def __init__(
        self, address: RedisAddress, *, timeout: float, read_timeout: Optional[float] = None
    ) -> None:
        self.address = address
        self.where = address.where
        kwargs = dict(address.kwargs)
        kwargs.setdefault("socket_timeout", read_timeout if read_timeout is not None else timeout)
        if address.connection_class is not redis.connection.UnixDomainSocketConnection:
            kwargs.setdefault("socket_connect_timeout", timeout)
        self._factory: Callable[[], Any] = lambda: address.connection_class(**kwargs)
        self._conn: Optional[Any] = None
        self._sock: Optional[socket.socket] = None
        self._reader: Optional[ReplyReader] = None
        self._fed = 0  # bytes fed to the reader

    def connect(self) -> None:
        """Open the connection (and authenticate, select the database) if it is not open."""
        if self._sock is not None:
            return
        if self._conn is None:
            self._conn = self._factory()
        try:
            self._conn.connect()
        except BaseException as exc:
            self.close()
            raise translate(exc, self.where, connecting=True) from None
        sock = getattr(self._conn, "_sock", None)
        if not isinstance(sock, socket.socket):  # pragma: no cover - a redis-py without _sock
            self.close()
            raise ConnectError(f"cannot use the connection to Redis at {self.where}")
        self._sock = sock
        self._reader = new_reader()
        self._fed = 0

    def call(self, *args: Any) -> Any:
        """Send one command and return its raw reply (connecting first when needed)."""
        return self.call_packed(pack_command(args))

    def call_packed(self, command: bytes) -> Any:
        """Send one command packed by :func:`.resp.pack_command` and return its reply."""
        return self._exchange(command, 1)[0]

    def pipeline(self, *commands: Sequence[Any]) -> List[Any]:
        """Send ``commands`` at once and return their replies (one round trip). The first
        error reply, also one among the replies of an ``EXEC``, is raised once all are read."""
        replies = self._exchange(b"".join(map(pack_command, commands)), len(commands))
        for reply in replies:
            if isinstance(reply, list):
                for item in reply:
                    self._check(item)
        return replies

    def _exchange(self, packed: bytes, count: int) -> List[Any]:
        """Send ``count`` packed commands at once; their replies (error replies raised)."""
        self.connect()
        sock = self._sock
        assert sock is not None
        try:
            sock.sendall(packed)
            replies = [self._read_reply(sock) for _ in range(count)]
        except BaseException as exc:
            self.close()
            raise translate(exc, self.where, connecting=False) from None
        for reply in replies:
            self._check(reply)
        return replies

    def _check(self, reply: Any) -> None:
        if isinstance(reply, ReplyError):
            raise RedisReplyError(
                f"Redis at {self.where} answered: {reply.message[:300]}", code=reply.code
            )

    def _read_reply(self, sock: socket.socket) -> Any:
        reader = self._reader
        if reader is None:  # closed from another thread
            raise redis.exceptions.ConnectionError("the connection was closed")
        reply = reader.gets()
        while reply is False:  # no RESP2 reply is False: the reader wants more bytes
            chunk = sock.recv(_READ_SIZE)
            if not chunk:
                raise redis.exceptions.ConnectionError("the server closed the connection")
            reader.feed(chunk)
            self._fed += len(chunk)
            reply = reader.gets()
        if self._fed > _FRESH_READER_AFTER and not reader.has_data() and self._reader is reader:
            self._reader = new_reader()
            self._fed = 0
        return reply

    def interrupt(self) -> None:
        """Wake a thread blocked on this connection (from another thread): the blocked call
        fails at once, and the connection is dropped."""
        sock = self._sock
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        """Drop the connection; the next call opens a new one."""
        self._sock = None
        self._reader = None
        conn = self._conn
        if conn is not None:
            with contextlib.suppress(Exception):
                conn.disconnect()


class Script:
    """A Lua script run by ``EVALSHA``, sent whole (``SCRIPT LOAD``) when the server lacks it."""

    __slots__ = ("sha", "source")

    def __init__(self, source: str) -> None:
        self.source = source
        self.sha = hashlib.sha1(source.encode()).hexdigest()

    def command(self, keys: Sequence[Any], args: Sequence[Any]) -> Tuple[Any, ...]:
        """The ``EVALSHA`` command running it with ``keys`` and ``args``."""
        return ("EVALSHA", self.sha, len(keys), *keys, *args)

    def load(self, link: RedisLink) -> None:
        """Send it to the server (after a ``NOSCRIPT`` answer: a restart, ``SCRIPT FLUSH``)."""
        link.call("SCRIPT", "LOAD", self.source)

    def __call__(
        self,
        link: RedisLink,
        keys: Sequence[Any],
        args: Sequence[Any],
        tail: bytes = b"",
        tail_count: int = 0,
    ) -> Any:
        """Run it with ``keys`` and ``args``, then the packed arguments ``tail``."""
        command = pack_command(self.command(keys, args), tail, tail_count)
        try:
            return link.call_packed(command)
        except RedisReplyError as exc:
            if exc.code != "NOSCRIPT":
                raise
        self.load(link)
        return link.call_packed(command)
