"""The ``User-Agent`` every wire sends (``aikit-transports/<version>`` and the library's), and that
a ``User-Agent`` in ``headers`` replaces it; against the local servers."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import requests
import websocket

from aikit_transports import (
    HTTPStreamTransport,
    ReconnectPolicy,
    SSETransport,
    TransportManager,
    WebSocketTransport,
    __version__,
)
from aikit_transports.testing import StreamServer
from aikit_transports.transports.sessions import user_agent

NO_RETRY = ReconnectPolicy(max_attempts=0)
HTTP_UA = f"aikit-transports/{__version__} {requests.utils.default_user_agent()}"
WS_UA = f"aikit-transports/{__version__} websocket-client/{websocket.__version__}"


@pytest.fixture
def ws_server() -> Iterator[Any]:
    from aikit_transports.testing.ws import WebSocketServer

    with WebSocketServer() as server:
        yield server


def test_user_agent_names_the_library_and_the_one_below() -> None:
    assert user_agent() == HTTP_UA
    assert user_agent("websocket-client") == WS_UA


def test_sse_stream_and_send_carry_it(stream_server: StreamServer) -> None:
    url = stream_server.url("/sse?count=1&end=sentinel")
    with SSETransport(url, send_url=stream_server.url("/send"), reconnect=NO_RETRY) as t:
        assert len(list(t.iter_events(timeout=10))) == 1
        t.send({"q": 1})
    stream, post = stream_server.wait_for_requests(2)
    assert stream.headers["User-Agent"] == HTTP_UA
    assert post.method == "POST" and post.headers["User-Agent"] == HTTP_UA


def test_a_user_agent_in_headers_wins_whatever_its_case(stream_server: StreamServer) -> None:
    url = stream_server.url("/sse?count=1&end=sentinel")
    with SSETransport(url, headers={"user-agent": "mine/1"}, reconnect=NO_RETRY) as t:
        list(t.iter_events(timeout=10))
    assert stream_server.requests[0].headers["User-Agent"] == "mine/1"


def test_the_managers_shared_session_carries_it(stream_server: StreamServer) -> None:
    with TransportManager() as mgr:
        t = mgr.create("http-stream", stream_server.url("/ndjson?count=1&end=204"))
        assert isinstance(t, HTTPStreamTransport)
        t.connect()
        assert t.wait(timeout=10) == "done"
    assert stream_server.requests[0].headers["User-Agent"] == HTTP_UA


def test_the_websocket_handshake_carries_it(ws_server: Any) -> None:
    with WebSocketTransport(ws_server.url("/echo"), reconnect=NO_RETRY):
        pass
    with WebSocketTransport(
        ws_server.url("/echo"), headers={"User-Agent": "mine/2"}, reconnect=NO_RETRY
    ):
        pass
    agents = [r["headers"].get("user-agent") for r in ws_server.requests]
    assert agents == [WS_UA, "mine/2"]
