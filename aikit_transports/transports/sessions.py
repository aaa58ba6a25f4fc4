"""``requests`` sessions whose in-flight request can be cut from another thread.

``close()`` must return promptly even while the reader waits for a server that accepted the
connection but never answers. The socket of a request is only reachable from inside urllib3,
so the sessions made here use connection classes that report their socket (on connect, and
on every request over a kept-alive connection) to a callback registered for the current
thread with :func:`watch_sockets`; the transport shuts that socket down to wake its reader.
A user-supplied session is used as it is (its waits are bounded by ``timeout`` instead).

Sessions made here send ``User-Agent: aikit-transports/<version> python-requests/<version>``
(:func:`user_agent`); a ``User-Agent`` in a transport's ``headers`` replaces it.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from typing import Any, Callable, Iterator, Literal, Optional
from urllib.parse import urlsplit

import requests
import websocket
from requests.adapters import HTTPAdapter
from requests.sessions import merge_setting as _merge_setting
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.poolmanager import PoolManager

__all__ = ["new_session", "close_session", "watch_sockets", "user_agent"]

SocketCallback = Callable[[socket.socket], None]
_watch = threading.local()


def _report(sock: Any) -> None:
    callback = getattr(_watch, "callback", None)
    if callback is not None and isinstance(sock, socket.socket):
        callback(sock)


class _ReportingHTTPConnection(HTTPConnection):
    def connect(self) -> None:
        super().connect()
        _report(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _report(self.sock)  # a kept-alive connection: no connect() this time
        super().request(*args, **kwargs)


class _ReportingHTTPSConnection(HTTPSConnection):
    def connect(self) -> None:
        super().connect()
        _report(self.sock)

    def request(self, *args: Any, **kwargs: Any) -> None:
        _report(self.sock)
        super().request(*args, **kwargs)


class _StreamPool(HTTPConnectionPool):
    """A pool that takes back a stream's closed connection quietly when it is full: a stream
    holds its connection for as long as it lives and closes it at the end, so with more open
    streams than ``pool_maxsize`` urllib3 would warn "Connection pool is full" for each one."""

    def _put_conn(self, conn: Any) -> None:
        pool = self.pool
        closed = conn is not None and getattr(conn, "sock", None) is None
        if closed and pool is not None and pool.full():
            conn.close()
            return
        super()._put_conn(conn)


class _ReportingHTTPPool(_StreamPool):
    ConnectionCls = _ReportingHTTPConnection


class _ReportingHTTPSPool(_StreamPool, HTTPSConnectionPool):
    ConnectionCls = _ReportingHTTPSConnection


def _use_reporting_pools(manager: PoolManager) -> PoolManager:
    manager.pool_classes_by_scheme = {"http": _ReportingHTTPPool, "https": _ReportingHTTPSPool}
    return manager


class _InterruptibleAdapter(HTTPAdapter):
    """An adapter whose pools (direct and through HTTP proxies) report their sockets."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        _use_reporting_pools(self.poolmanager)

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        if isinstance(manager, PoolManager):
            _use_reporting_pools(manager)
        return manager


def user_agent(library: Literal["requests", "websocket-client"] = "requests") -> str:
    """The ``User-Agent`` the library sends: ``aikit-transports/<version>`` and the HTTP or
    WebSocket library's own (``python-requests/2.32.3``, ``websocket-client/1.8.0``)."""
    from .. import __version__  # the package imports this module while it loads

    if library == "websocket-client":
        below = f"websocket-client/{websocket.__version__}"
    else:
        below = requests.utils.default_user_agent()
    return f"aikit-transports/{__version__} {below}"


#: Proxies from the environment by (scheme, host, port, no_proxy): ``requests`` works them
#: out at every request by scanning ``os.environ`` (a fifth of the CPU of opening a stream).
_environ_proxies: dict[tuple[str, Optional[str], Optional[int], Any], dict[str, str]] = {}
_ENVIRON_CACHE_SIZE = 256
merge_setting: Callable[..., Any] = _merge_setting  # untyped in requests


class _Session(requests.Session):
    """A session that works out the proxies of the environment once per origin (the process's
    environment is taken as it is when a host is first reached)."""

    def merge_environment_settings(
        self, url: Any, proxies: Any, stream: Any, verify: Any, cert: Any
    ) -> Any:
        if not self.trust_env:
            return super().merge_environment_settings(url, proxies, stream, verify, cert)
        proxies = {} if proxies is None else proxies
        no_proxy = proxies.get("no_proxy")
        parts = urlsplit(url)
        key = (parts.scheme, parts.hostname, parts.port, no_proxy)
        found = _environ_proxies.get(key)
        if found is None:
            found = requests.utils.get_environ_proxies(url, no_proxy=no_proxy)
            if len(_environ_proxies) >= _ENVIRON_CACHE_SIZE:
                _environ_proxies.clear()
            _environ_proxies[key] = found
        for scheme, proxy in found.items():
            proxies.setdefault(scheme, proxy)
        if verify is True or verify is None:  # as requests does, compatible with cURL
            verify = (
                os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE") or verify
            )
        return {  # merged with the session's own settings, as requests does
            "proxies": merge_setting(proxies, self.proxies),
            "stream": merge_setting(stream, self.stream),
            "verify": merge_setting(verify, self.verify),
            "cert": merge_setting(cert, self.cert),
        }


def new_session(pool_maxsize: int = 10) -> requests.Session:
    """A session keeping ``pool_maxsize`` connections per host, whose requests can be cut,
    sending :func:`user_agent` (a request's own ``User-Agent`` header wins)."""
    session = _Session()
    session.headers["User-Agent"] = user_agent()
    adapter = _InterruptibleAdapter(pool_connections=pool_maxsize, pool_maxsize=pool_maxsize)
    session.mount("http://", adapter)
    session.mount("https://", adapter)
    return session


def close_session(session: requests.Session) -> None:
    """Close ``session`` and every connection it keeps.

    ``Session.close()`` alone leaves pooled sockets to the garbage collector with urllib3 2.x
    (its pool managers no longer close their pools when cleared), so a pool that something
    still references (a traceback kept by the user, say) would keep its socket open.
    """
    for adapter in session.adapters.values():
        managers = [getattr(adapter, "poolmanager", None)]
        managers.extend(getattr(adapter, "proxy_manager", {}).values())
        for manager in managers:
            pools = getattr(manager, "pools", None)
            if pools is None:
                continue
            for key in list(pools.keys()):
                pool = pools.get(key)
                if pool is not None:
                    pool.close()
    session.close()


@contextlib.contextmanager
def watch_sockets(callback: SocketCallback) -> Iterator[None]:
    """Call ``callback(sock)`` with the socket of every request this thread makes meanwhile."""
    previous = getattr(_watch, "callback", None)
    _watch.callback = callback
    try:
        yield
    finally:
        _watch.callback = previous
