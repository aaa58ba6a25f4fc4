"""The options of the HTTP wires: spelt out, checked at construction, and applied end to end."""

from __future__ import annotations

import base64
import logging
import threading
from typing import Any

import pytest
import requests
from requests.auth import HTTPBasicAuth

from aikit_transports import (
    HTTPStreamTransport,
    ReconnectPolicy,
    SSETransport,
    TransportState,
)
from aikit_transports.testing import StreamServer

WIRES: list[Any] = [SSETransport, HTTPStreamTransport]


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("option", ["idle_timout", "verfy", "reconect", "header"])
def test_a_misspelt_option_fails_at_construction(wire: Any, option: str) -> None:
    with pytest.raises(TypeError, match=option):
        wire("http://127.0.0.1:9/x", **{option: 1})


@pytest.mark.parametrize(
    ("options", "name"),
    [
        ({"idempotent": "yes"}, "idempotent"),
        ({"reconnect_on_eof": 1}, "reconnect_on_eof"),
        ({"done_when": "message_stop"}, "done_when"),
        ({"auth": "user:pass"}, "auth"),
        ({"reconnect": 3}, "reconnect"),
    ],
)
def test_bad_option_values_name_the_option(options: dict[str, Any], name: str) -> None:
    with pytest.raises(ValueError, match=name):
        SSETransport("http://127.0.0.1:9/x", **options)


def test_idempotent_follows_the_method() -> None:
    made = {m: SSETransport("http://127.0.0.1:9/x", method=m) for m in ("GET", "PUT", "DELETE")}
    assert all(t.idempotent for t in made.values())
    assert not SSETransport("http://127.0.0.1:9/x", method="POST").idempotent
    assert not HTTPStreamTransport("http://127.0.0.1:9/x", method="patch").idempotent
    assert SSETransport("http://127.0.0.1:9/x", method="POST", idempotent=True).idempotent
    assert not SSETransport("http://127.0.0.1:9/x", idempotent=False).idempotent


def test_reconnect_none_true_false() -> None:
    url = "http://127.0.0.1:9/x"
    assert SSETransport(url, reconnect=None).policy == ReconnectPolicy()
    assert SSETransport(url, reconnect=True).policy == ReconnectPolicy()
    assert SSETransport(url, reconnect=False).policy.max_attempts == 0


@pytest.mark.parametrize("auth", [("user", "pa55"), HTTPBasicAuth("user", "pa55")])
@pytest.mark.parametrize("wire", WIRES)
def test_auth_is_sent_and_never_logged(
    stream_server: StreamServer, wire: Any, auth: Any, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    path = "/sse?count=2" if wire is SSETransport else "/ndjson?count=2"
    with wire(stream_server.url(path), auth=auth, debug=True) as t:
        assert len(list(t.iter_events(timeout=10))) == 2
    expected = "Basic " + base64.b64encode(b"user:pa55").decode()
    assert stream_server.requests[0].headers.get("Authorization") == expected
    assert "pa55" not in repr(t) and expected not in caplog.text
    assert "dXNlcjpwYTU1" not in caplog.text


def test_auth_does_not_follow_a_redirect_to_another_origin(stream_server: StreamServer) -> None:
    with StreamServer() as other:

        def redirect(request: Any, writer: Any) -> None:
            writer.send_status(302, {"Location": other.url("/sse?count=1"), "Content-Length": "0"})

        stream_server.route("/moved", redirect)
        with SSETransport(stream_server.url("/moved"), auth=("user", "pa55")) as t:
            assert len(list(t.iter_events(timeout=10))) == 1
        assert stream_server.requests[0].headers.get("Authorization")
        assert other.requests[0].headers.get("Authorization") is None


def test_a_204_emits_connecting_then_done_never_connected(stream_server: StreamServer) -> None:
    seen: list[str] = []
    closed = threading.Event()
    t = SSETransport(stream_server.url("/sse?status=204"))
    for name in ("connecting", "connected", "done"):
        t.on(name, lambda name=name: seen.append(name))
    t.on("closed", lambda reason: closed.set())
    assert list(t.iter_events(timeout=10)) == []
    assert closed.wait(5)
    t.close()
    assert seen == ["connecting", "done"] and t.state is TransportState.CLOSED
    assert t.metrics.connected_at is None


def test_a_users_own_session_sends_our_user_agent(stream_server: StreamServer) -> None:
    import requests

    from aikit_transports import __version__

    with requests.Session() as session:
        with SSETransport(stream_server.url("/sse?count=1"), session=session) as t:
            assert len(list(t.iter_events(timeout=10))) == 1
        with SSETransport(
            stream_server.url("/sse?count=1"), session=session, headers={"user-agent": "mine/1"}
        ) as t:
            assert len(list(t.iter_events(timeout=10))) == 1
    first, _, mine, _ = stream_server.requests
    assert (first.headers.get("User-Agent") or "").startswith(f"aikit-transports/{__version__}")
    assert mine.headers.get("User-Agent") == "mine/1"


def test_uptime_is_that_of_the_open_connection(stream_server: StreamServer) -> None:
    with SSETransport(stream_server.url("/sse?count=2&end=hold")) as t:
        assert len([e for _, e in zip(range(2), t.iter_events(timeout=10))]) == 2
        assert t.metrics.uptime > 0
    assert t.metrics.uptime == 0.0 and t.metrics.connected_at is not None


@pytest.mark.parametrize(
    "environ",
    [
        {},
        {"HTTP_PROXY": "http://proxy.test:3128", "HTTPS_PROXY": "http://proxy.test:3129"},
        {"HTTP_PROXY": "http://proxy.test:3128", "NO_PROXY": "127.0.0.1,.internal"},
        {"ALL_PROXY": "socks5://proxy.test:1080", "REQUESTS_CA_BUNDLE": "/etc/ca.pem"},
        {"CURL_CA_BUNDLE": "/etc/curl.pem"},
    ],
)
def test_own_sessions_read_the_environment_as_requests_does(
    environ: dict, monkeypatch: pytest.MonkeyPatch
) -> None:
    from aikit_transports.transports import sessions

    for name in (
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "ALL_PROXY",
        "NO_PROXY",
        "REQUESTS_CA_BUNDLE",
        "CURL_CA_BUNDLE",
        "http_proxy",
        "https_proxy",
        "all_proxy",
        "no_proxy",
    ):
        monkeypatch.delenv(name, raising=False)
    for name, value in environ.items():
        monkeypatch.setenv(name, value)
    monkeypatch.setattr(sessions, "_environ_proxies", {})  # worked out once per origin
    ours, theirs = sessions.new_session(), requests.Session()
    for url in ("http://127.0.0.1:8000/sse", "https://api.example.com/v1", "http://a.internal/"):
        for verify in (True, False, "/my/ca.pem"):
            for proxies in ({}, {"https": "http://mine.test:1"}, {"no_proxy": "example.com"}):
                expected = theirs.merge_environment_settings(url, dict(proxies), True, verify, None)
                got = ours.merge_environment_settings(url, dict(proxies), True, verify, None)
                assert got == expected, (url, verify, proxies)
