"""TLS on every wire with certificates from ``trustme``: ``https://`` (SSE, HTTP stream, ``send()``)
and ``wss://``.

A CA bundle given as ``verify`` is trusted; an unknown CA or a certificate for another host is a
``ConnectError`` that says it is about TLS and is not retried; nothing ever reaches the server in
plain text, not even through a redirect from ``https`` to ``http`` (or ``wss`` to ``ws``).
"""

from __future__ import annotations

import contextlib
import os
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List

import pytest
from faultkit import allocations_while_idle

from aikit_transports import (
    ConnectError,
    HTTPStreamTransport,
    ProtocolError,
    ReconnectPolicy,
    SSETransport,
    TransportError,
    WebSocketTransport,
)
from aikit_transports.testing import FaultProxy, RecordedRequest, StreamServer, StreamWriter
from aikit_transports.testing.ws import WebSocketServer
from aikit_transports.transports.base import BaseTransport

trustme = pytest.importorskip("trustme")

RETRYING = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=5)
WIRES = ("sse", "http-stream", "websocket")


@dataclass
class Certs:
    ca_path: str  # the CA that signed "good" and "wrong_host"
    good: ssl.SSLContext  # for 127.0.0.1 and localhost
    wrong_host: ssl.SSLContext  # for another name
    foreign: ssl.SSLContext  # for 127.0.0.1, by a CA nobody trusts


def _server_context(ca: Any, *names: str) -> ssl.SSLContext:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(*names).configure_cert(context)
    return context


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> Certs:
    ca, other = trustme.CA(), trustme.CA()
    path = Path(tmp_path_factory.mktemp("tls")) / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return Certs(
        str(path),
        _server_context(ca, "127.0.0.1", "localhost"),
        _server_context(ca, "wrong.example"),
        _server_context(other, "127.0.0.1", "localhost"),
    )


@dataclass
class TLSRig:
    """The plain servers, a TLS front (a ``FaultProxy`` that terminates TLS), a plain proxy
    before it that counts the TCP connections (``tcp.accepted``), and how to stream from
    them over ``https``/``wss``."""

    wire: str
    http: StreamServer
    ws: WebSocketServer
    tcp: FaultProxy

    def url(self, path: str) -> str:
        scheme = "wss" if self.wire == "websocket" else "https"
        return f"{scheme}://127.0.0.1:{self.tcp.port}{path}"

    def stream_url(self) -> str:
        return self.url(
            {
                "sse": "/sse?count=5&end=sentinel",
                "http-stream": "/ndjson?count=5&end=204",
                "websocket": "/stream?count=5",
            }[self.wire]
        )

    def transport(self, url: str, **options: Any) -> BaseTransport:
        cls = {"sse": SSETransport, "http-stream": HTTPStreamTransport}.get(self.wire)
        if cls is None:
            return WebSocketTransport(url, heartbeat_interval=None, **options)
        return cls(url, **options)


@contextlib.contextmanager
def rig(wire: str, context: ssl.SSLContext) -> Iterator[TLSRig]:
    with StreamServer() as http, WebSocketServer() as ws:
        port = ws.port if wire == "websocket" else http.port
        with (
            FaultProxy("127.0.0.1", port, ssl_context=context) as tls,
            FaultProxy("127.0.0.1", tls.port) as tcp,
        ):
            yield TLSRig(wire, http, ws, tcp)


@pytest.fixture(params=WIRES)
def good(request: pytest.FixtureRequest, certs: Certs) -> Iterator[TLSRig]:
    with rig(request.param, certs.good) as r:
        yield r


def _plain_requests(r: TLSRig) -> int:
    """Requests (or handshakes) that reached the servers behind the TLS front."""
    return len(r.http.requests) + r.ws.handshakes


def _fails_once_with_tls_error(r: TLSRig, t: BaseTransport) -> ConnectError:
    reconnecting: List[Any] = []
    t.on("reconnecting", lambda *args: reconnecting.append(args))
    try:
        with pytest.raises(ConnectError) as info:
            t.connect(timeout=30)
    finally:
        t.close()
    assert "TLS" in info.value.message and "certificate" in info.value.message
    assert info.value.retryable is False
    assert reconnecting == [] and r.tcp.accepted == 1  # one attempt, never retried
    assert _plain_requests(r) == 0  # nothing reached the server: no plain-text fallback
    return info.value


# -- trusted -------------------------------------------------------------------------------------


def test_a_stream_over_tls_works_with_the_ca_bundle_as_verify(good: TLSRig, certs: Certs) -> None:
    t = good.transport(good.stream_url(), verify=certs.ca_path, reconnect=RETRYING)
    try:
        events = list(t.iter_events(timeout=10))
    finally:
        t.close()
    assert len(events) == 5
    assert t.metrics.errors == 0


def test_send_over_https_uses_verify(certs: Certs) -> None:
    for context, ok in ((certs.good, True), (certs.foreign, False)):
        with rig("sse", context) as r:
            t = SSETransport(
                r.url("/sse?count=1&end=sentinel"),
                send_url=r.url("/send"),
                verify=certs.ca_path,
                reconnect=ReconnectPolicy(max_attempts=0),
            )
            try:
                if ok:
                    t.send({"hello": "tls"})
                    assert r.http.requests[-1].json() == {"hello": "tls"}
                else:
                    with pytest.raises(ConnectError, match="TLS") as info:
                        t.send({"hello": "tls"})
                    assert info.value.retryable is False
                    assert _plain_requests(r) == 0
            finally:
                t.close()


@pytest.mark.parametrize("wire", ["sse", "http-stream"])
def test_an_idle_stream_over_tls_holds_no_read_buffer(
    certs: Certs, wire: str, wait_until: Callable[..., Any]
) -> None:
    """With TLS too (decrypted bytes may wait in the TLS layer while the socket is idle)."""
    path = "/sse?count=1&end=hold" if wire == "sse" else "/ndjson?count=1&end=hold"
    with rig(wire, certs.good) as r:
        held = allocations_while_idle(
            lambda: r.transport(r.url(path), verify=certs.ca_path), wait_until
        )
    assert held == []


# -- untrusted or wrong host ---------------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("verify", ["default", "ca"])
def test_an_untrusted_certificate_fails_clearly_at_once(
    certs: Certs, wire: str, verify: str
) -> None:
    # "default": the system's / certifi's CAs, which never signed a trustme certificate;
    # "ca": our CA bundle, but the server's certificate comes from another CA.
    with rig(wire, certs.foreign) as r:
        options = {} if verify == "default" else {"verify": certs.ca_path}
        _fails_once_with_tls_error(r, r.transport(r.stream_url(), reconnect=RETRYING, **options))


@pytest.mark.parametrize("wire", WIRES)
def test_a_certificate_for_another_host_fails_clearly_at_once(certs: Certs, wire: str) -> None:
    with rig(wire, certs.wrong_host) as r:
        t = r.transport(r.stream_url(), verify=certs.ca_path, reconnect=RETRYING)
        error = _fails_once_with_tls_error(r, t)
        assert "127.0.0.1" in error.message or "mismatch" in error.message.lower()


# -- no downgrade --------------------------------------------------------------------------------


def _redirect_to(location: str) -> Any:
    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(307, {"Location": location, "Content-Length": "0"})

    return route


@pytest.mark.parametrize("wire", WIRES)
def test_a_redirect_from_tls_to_plain_text_is_refused(certs: Certs, wire: str) -> None:
    with rig(wire, certs.good) as r:
        # The plain servers are reachable directly too: a redirect points there.
        plain = {
            "sse": r.http.url("/sse?count=5&end=sentinel"),
            "http-stream": r.http.url("/ndjson?count=5&end=204"),
            "websocket": r.ws.url("/stream?count=5"),
        }[wire]
        r.http.route("/downgrade", _redirect_to(plain))
        if wire == "websocket":
            # The handshake goes to the HTTP test server (through the TLS front), which
            # answers it with the redirect.
            with FaultProxy("127.0.0.1", r.http.port, ssl_context=certs.good) as front:
                url = f"wss://127.0.0.1:{front.port}/downgrade"
                t = r.transport(url, verify=certs.ca_path, reconnect=RETRYING)
                _refused(t, ProtocolError)
        else:
            t = r.transport(r.url("/downgrade"), verify=certs.ca_path, reconnect=RETRYING)
            _refused(t, ProtocolError)
        assert r.ws.handshakes == 0
        assert [q.path for q in r.http.requests] == ["/downgrade"]  # the plain URL never asked


def _refused(t: BaseTransport, kind: type[TransportError]) -> None:
    try:
        with pytest.raises(kind) as info:
            t.connect(timeout=30)
    finally:
        t.close()
    assert "refused to follow a redirect" in info.value.message
    assert "plain text" in info.value.message
    assert info.value.retryable is False


def test_a_stream_over_tls_works_with_a_descriptor_past_1024(certs: Certs) -> None:
    # ``select()`` cannot take a descriptor of 1,024 or more: the TLS reads must not use it
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    fds: List[int] = []
    try:
        with rig("websocket", certs.good) as r:
            t = r.transport(r.stream_url(), verify=certs.ca_path, reconnect=RETRYING)
            t.on("connected", lambda: fds.append(t._sock.fileno() if t._sock else -1))
            try:
                events = list(t.iter_events(timeout=10))
            finally:
                t.close()
    finally:
        for fd in spare:
            os.close(fd)
    assert fds and fds[0] >= 1024
    assert len(events) == 5 and t.metrics.errors == 0
