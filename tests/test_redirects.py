"""Redirects: where one may lead and which headers go along (SPEC §3 "Redirects").

The policy is pure functions (:mod:`aikit_transports.transports.redirects`), tested first on
their own; then end to end on the HTTP wires, with two real servers on 127.0.0.1: another port
of the same host is another origin, which gets only the safe headers and those named in
``redirect_headers``; the same origin gets them all; a redirect to ``ftp:``, ``file:`` or
``gopher:`` fails at once, with one request and no retry. (``https`` to ``http`` is refused in
``test_tls.py``, which has the TLS servers.)
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, Dict, List, Tuple

import pytest

from aikit_transports import (
    HTTPStreamTransport,
    ProtocolError,
    ReconnectPolicy,
    SSETransport,
)
from aikit_transports.testing import RecordedRequest, StreamServer, StreamWriter
from aikit_transports.transports.base import BaseTransport
from aikit_transports.transports.redirects import (
    SAFE_REDIRECT_HEADERS,
    check_redirect,
    headers_for_redirect,
    same_origin,
)

HTTP_WIRES = ("sse", "http-stream")
RETRYING = ReconnectPolicy(max_attempts=3, initial_delay=0, jitter=0)

#: What the user sets: credentials, an ordinary header, one named in ``redirect_headers``, and
#: safe ones (``Accept`` and ``Cache-Control`` come from the wire, ``Last-Event-ID`` from
#: ``last_event_id``).
USER_HEADERS = {
    "Authorization": "Bearer AUTH-1",
    "X-Credential": "CRED-2",
    "X-Signature": "SIGN-3",
    "X-Passwd": "PASSWD-4",
    "X-Request-Source": "tests",
    "X-Tenant": "tenant-5",
    "User-Agent": "redirect-tests/1",
}
DROPPED = ("authorization", "x-credential", "x-signature", "x-passwd", "x-request-source")


# -- the policy, without I/O --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("a", "b", "same"),
    [
        ("http://h/a", "http://h:80/b?q=1", True),
        ("https://h/", "https://H:443/x", True),
        ("ws://h/", "http://h/", True),  # a WebSocket URL has the origin of its HTTP URL
        ("wss://h:8443/", "https://h:8443/", True),
        ("http://h:8000/", "http://h:8001/", False),  # another port: another origin
        ("http://h/", "https://h/", False),
        ("http://h/", "http://h.example/", False),
        ("http://127.0.0.1/", "http://localhost/", False),
        ("http://h:bad/", "http://h:bad/", False),  # no origin at all
    ],
)
def test_same_origin(a: str, b: str, same: bool) -> None:
    assert same_origin(a, b) is same
    assert same_origin(b, a) is same


@pytest.mark.parametrize(
    ("previous", "target"),
    [
        ("http://h/", "https://other/"),
        ("https://h/", "https://other:8443/"),
        ("http://h/", "http://other/"),
        ("ws://h/", "wss://other/"),
        ("wss://h/", "https://h/"),  # a WebSocket handshake may be sent to an https URL
        ("ws://h/", "http://h/"),
    ],
)
def test_redirects_that_may_be_followed(previous: str, target: str) -> None:
    check_redirect(previous, target)


@pytest.mark.parametrize(
    ("previous", "target", "words"),
    [
        ("https://h/", "http://h/", ("from https", "plain text")),
        ("wss://h/", "ws://h/", ("from wss", "plain text")),
        ("wss://h/", "http://h/", ("from wss", "plain text")),
        ("http://h/", "ftp://h/f", ("'ftp'", "not supported")),
        ("http://h/", "file:///etc/passwd", ("'file'", "not supported")),
        ("https://h/", "gopher://h/1", ("'gopher'", "not supported")),
        ("http://h/", "ws://h/", ("'ws'", "not supported")),  # not for an HTTP stream
        ("ws://h/", "ftp://h/", ("'ftp'", "not supported")),
    ],
)
def test_redirects_that_are_refused(previous: str, target: str, words: Tuple[str, str]) -> None:
    with pytest.raises(ProtocolError) as info:
        check_redirect(previous, target)
    assert info.value.retryable is False
    assert "refused to follow a redirect" in info.value.message
    for word in words:
        assert word in info.value.message


def test_a_refused_redirect_shows_no_secret_and_no_control_character() -> None:
    target = "ftp://u:PW-1@h/x?token=TOKEN-2&q=\x1b[2J" + "a" * 5000
    with pytest.raises(ProtocolError) as info:
        check_redirect("http://h/", target)
    message = info.value.message
    assert "PW-1" not in message and "TOKEN-2" not in message
    assert "\x1b" not in message and len(message) < 400


def test_headers_for_redirect() -> None:
    headers = {"Accept": "a", "Content-Type": "c", "X-Key": "k", "X-Tenant": "t", "Cookie": "x"}
    assert headers_for_redirect(headers, "http://h/a", "http://h/b") == headers
    assert headers_for_redirect(headers, "http://h/a", "http://h:81/b") == {
        "Accept": "a",
        "Content-Type": "c",
    }
    kept = headers_for_redirect(headers, "http://h/", "https://h/", keep=("x-tenant",))
    assert kept == {"Accept": "a", "Content-Type": "c", "X-Tenant": "t"}
    assert {
        "accept",
        "accept-encoding",
        "cache-control",
        "content-type",
        "user-agent",
        "last-event-id",
    } == SAFE_REDIRECT_HEADERS


@pytest.mark.parametrize(
    "value", ["X-Tenant", ["X-Tenant", 3], [""], ["Authorization"], ("authorization",)]
)
def test_redirect_headers_is_checked(value: Any) -> None:
    with pytest.raises(ValueError, match="redirect_headers"):
        SSETransport("http://h/", redirect_headers=value)


def test_redirect_headers_is_kept_lower_case() -> None:
    t = SSETransport("http://h/", redirect_headers=["X-Tenant", "X-Other"])
    assert t.redirect_headers == ("x-tenant", "x-other")


# -- end to end ---------------------------------------------------------------------------------


@pytest.fixture
def servers() -> Iterator[Tuple[StreamServer, StreamServer]]:
    """Two servers on 127.0.0.1: two ports of one host, so two origins."""
    with StreamServer() as first, StreamServer() as second:
        yield first, second


def _redirect(location: str, status: int = 307) -> Any:
    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(status, {"Location": location, "Content-Length": "0"})

    return route


def _stream_path(wire: str) -> str:
    return "/sse?count=3&end=sentinel" if wire == "sse" else "/ndjson?count=3&end=204"


def _make(wire: str, url: str, **options: Any) -> BaseTransport:
    cls = SSETransport if wire == "sse" else HTTPStreamTransport
    options.setdefault("headers", USER_HEADERS)
    options.setdefault("reconnect", RETRYING)  # the HTTP stream ends with a 204 on resume
    return cls(url, last_event_id="0", **options)


def _stream_through(t: BaseTransport) -> None:
    try:
        assert len(list(t.iter_events(timeout=10))) == 3
    finally:
        t.close()


def _received(server: StreamServer, path: str) -> Dict[str, str]:
    request = next(r for r in server.requests if r.path == path)
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize("wire", HTTP_WIRES)
def test_another_port_of_the_host_gets_only_the_safe_headers(
    wire: str, servers: Tuple[StreamServer, StreamServer]
) -> None:
    first, second = servers
    first.route("/redirect", _redirect(second.url(_stream_path(wire))))
    _stream_through(_make(wire, first.url("/redirect"), redirect_headers=("x-TENANT",)))
    received = _received(second, _stream_path(wire).split("?")[0])
    for name in DROPPED:
        assert name not in received, f"{name} went to another origin"
    assert received["x-tenant"] == "tenant-5"  # named in redirect_headers
    assert received["user-agent"] == "redirect-tests/1"
    assert received["last-event-id"] == "0"
    assert received["cache-control"] == "no-cache"
    assert received["accept"]
    # The first hop got everything.
    assert _received(first, "/redirect")["x-credential"] == "CRED-2"


@pytest.mark.parametrize("wire", HTTP_WIRES)
def test_within_the_origin_every_header_goes_along(
    wire: str, servers: Tuple[StreamServer, StreamServer]
) -> None:
    first, _ = servers
    first.route("/redirect", _redirect(_stream_path(wire)))  # relative: the same origin
    _stream_through(_make(wire, first.url("/redirect")))
    received = _received(first, _stream_path(wire).split("?")[0])
    for name, value in USER_HEADERS.items():
        assert received[name.lower()] == value


def test_a_307_to_another_origin_keeps_the_body_and_drops_the_credentials(
    servers: Tuple[StreamServer, StreamServer],
) -> None:
    first, second = servers
    first.route("/redirect", _redirect(second.url(_stream_path("sse"))))
    t = _make("sse", first.url("/redirect"), method="POST", json={"prompt": "hi"})
    _stream_through(t)
    request = next(r for r in second.requests if r.path == "/sse")
    assert request.method == "POST" and request.json() == {"prompt": "hi"}
    assert request.headers["Content-Type"] == "application/json"
    assert "X-Credential" not in request.headers and "Authorization" not in request.headers


def test_send_follows_the_same_rules(servers: Tuple[StreamServer, StreamServer]) -> None:
    first, second = servers
    first.route("/send", _redirect(second.url("/send")))
    t = SSETransport(first.url("/sse"), send_url=first.url("/send"), headers=USER_HEADERS)
    try:
        t.send({"n": 1})
    finally:
        t.close()
    request = next(r for r in second.requests if r.path == "/send")
    assert request.json() == {"n": 1}
    for name in DROPPED:
        assert name not in request.headers


@pytest.mark.parametrize("wire", HTTP_WIRES)
@pytest.mark.parametrize("target", ["ftp://127.0.0.1/f", "file:///etc/passwd", "gopher://h/1"])
def test_a_redirect_to_another_scheme_fails_at_once(
    wire: str, target: str, servers: Tuple[StreamServer, StreamServer]
) -> None:
    first, _ = servers
    first.route("/redirect", _redirect(target, 302))
    t = _make(wire, first.url("/redirect"))
    reconnecting: List[Any] = []
    t.on("reconnecting", lambda *args: reconnecting.append(args))
    try:
        with pytest.raises(ProtocolError) as info:
            t.connect(timeout=10)
    finally:
        t.close()
    scheme = target.split(":")[0]
    assert f"'{scheme}'" in info.value.message
    assert info.value.retryable is False
    assert reconnecting == [] and len(first.requests) == 1  # one request, never retried
