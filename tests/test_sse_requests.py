"""What each SSE request carries and how each status is handled, with ``responses``.

Fast unit cases over a mocked adapter; every behaviour here is also checked end to end
against the local server in test_sse_transport.py.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import responses

from aikit_transports import (
    HTTPStatusError,
    ProtocolError,
    ReconnectFailed,
    ReconnectPolicy,
    SSETransport,
)

URL = "http://stream.test/events"
FAST = ReconnectPolicy(initial_delay=0, jitter=0, max_attempts=3)


def sse(body: str, status: int = 200, **headers: str) -> dict[str, Any]:
    return {
        "body": body.encode(),
        "status": status,
        "headers": headers,
        "content_type": "text/event-stream",
    }


@responses.activate
def test_request_headers_and_user_override() -> None:
    responses.add(responses.GET, URL, **sse("data: a\n\ndata: [DONE]\n\n"))
    with SSETransport(
        URL,
        headers={"Authorization": "Bearer s3cret", "Cache-Control": "max-age=0"},
        last_event_id="41",
    ) as t:
        assert [e.data for e in t.iter_events(timeout=5)] == ["a"]
    sent = responses.calls[0].request.headers
    assert sent["Accept"] == "text/event-stream"
    assert sent["Cache-Control"] == "max-age=0"
    assert sent["Authorization"] == "Bearer s3cret"
    assert sent["Last-Event-ID"] == "41"


@responses.activate
def test_reconnect_sends_the_last_id_seen_and_resends_the_post_body() -> None:
    # A POST whose end is a drop (reconnect_on_eof=True) and that has ids resumes by id.
    responses.add(responses.POST, URL, **sse("id: 1\ndata: a\n\nid: 2\ndata: b\n\n"))
    responses.add(responses.POST, URL, **sse("id: 3\ndata: c\n\ndata: [DONE]\n\n"))
    payload = {"prompt": "hi", "stream": True}
    with SSETransport(URL, method="POST", json=payload, reconnect=FAST, reconnect_on_eof=True) as t:
        events = list(t.iter_events(timeout=5))
    assert [(e.id, e.data) for e in events] == [("1", "a"), ("2", "b"), ("3", "c")]
    first, second = (c.request for c in responses.calls)
    assert "Last-Event-ID" not in first.headers
    assert second.headers["Last-Event-ID"] == "2"
    assert json.loads(first.body) == json.loads(second.body) == payload


@responses.activate
def test_204_means_done_with_one_request() -> None:
    responses.add(responses.GET, URL, status=204)
    t = SSETransport(URL, reconnect=FAST)
    done: list[bool] = []
    t.on("done", lambda: done.append(True))
    assert list(t.iter_events(timeout=5)) == []
    assert done == [True] and len(responses.calls) == 1
    t.close()


@responses.activate
def test_404_fails_at_once_without_retrying() -> None:
    responses.add(responses.GET, URL, status=404)
    t = SSETransport(URL, reconnect=FAST)
    with pytest.raises(HTTPStatusError) as info:
        t.connect()
    assert info.value.status_code == 404 and len(responses.calls) == 1
    assert t.state == "error"
    t.close()
    assert t.state == "closed"


@responses.activate
def test_503_is_retried_until_attempts_run_out() -> None:
    for _ in range(4):
        responses.add(responses.GET, URL, status=503)
    t = SSETransport(URL, reconnect=FAST)
    with pytest.raises(ReconnectFailed) as info:
        t.connect()
    assert isinstance(info.value.__cause__, HTTPStatusError)
    assert len(responses.calls) == 4  # the first try and 3 reconnection attempts
    t.close()


@responses.activate
def test_retry_after_replaces_the_backoff_delay() -> None:
    responses.add(responses.GET, URL, status=429, headers={"Retry-After": "0"})
    responses.add(responses.GET, URL, **sse("data: ok\n\ndata: [DONE]\n\n"))
    delays: list[float] = []
    policy = ReconnectPolicy(initial_delay=30, jitter=0, max_attempts=1)
    t = SSETransport(URL, reconnect=policy)
    t.on("reconnecting", lambda attempt, delay, error: delays.append(delay))
    assert [e.data for e in t.iter_events(timeout=5)] == ["ok"]
    assert delays == [0.0]
    t.close()


@responses.activate
def test_wrong_content_type_fails_without_retrying() -> None:
    responses.add(responses.GET, URL, body=b"<html>", status=200, content_type="text/html")
    t = SSETransport(URL, reconnect=FAST)
    with pytest.raises(ProtocolError, match="text/html"):
        t.connect()
    assert len(responses.calls) == 1
    t.close()


@responses.activate
def test_server_retry_field_sets_the_delay() -> None:
    responses.add(responses.GET, URL, **sse("retry: 5\nid: 1\ndata: a\n\n"))
    responses.add(responses.GET, URL, **sse("data: [DONE]\n\n"))
    delays: list[float] = []
    t = SSETransport(URL, reconnect=ReconnectPolicy(initial_delay=30, jitter=0))
    t.on("reconnecting", lambda attempt, delay, error: delays.append(delay))
    events = list(t.iter_events(timeout=5))
    assert [(e.data, e.retry) for e in events] == [("a", 5)]
    assert delays == [0.005]
    t.close()


@responses.activate
def test_send_posts_json_to_send_url() -> None:
    responses.add(responses.POST, "http://stream.test/send", status=200)
    t = SSETransport(URL, send_url="http://stream.test/send", headers={"X-Api-Key": "k"})
    t.send({"hello": "world"})
    req = responses.calls[0].request
    assert json.loads(req.body) == {"hello": "world"}
    assert req.headers["Content-Type"] == "application/json"
    assert req.headers["X-Api-Key"] == "k"
    assert t.metrics.messages_sent == 1
    t.close()


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"url": "ftp://x/y"}, "scheme"),
        ({"url": "http://x", "timeout": 0}, "timeout"),
        ({"url": "http://x", "idle_timeout": -1}, "idle_timeout"),
        ({"url": "http://x", "method": "BREW"}, "method"),
        ({"url": "http://x", "json": {}, "data": "x"}, "json"),
        ({"url": "http://x", "max_event_bytes": 0}, "max_event_bytes"),
        ({"url": "http://x", "done_sentinel": 3}, "done_sentinel"),
        ({"url": "http://x", "reconnect": {"max_attempts": 1}}, "reconnect"),
        ({"url": "http://x", "buffer": 10}, "buffer"),
        ({"url": "http://x", "chunk_size": 0}, "chunk_size"),
        ({"url": "http://x", "send_url": "mailto:me"}, "send_url"),
    ],
)
def test_bad_options_raise_value_error_naming_the_option(
    kwargs: dict[str, Any], option: str
) -> None:
    with pytest.raises(ValueError, match=option):
        SSETransport(**kwargs)


def test_repr_and_errors_hide_credentials() -> None:
    t = SSETransport(
        "https://user:hunter2@api.test/stream?token=abc123&page=2",
        headers={"Authorization": "Bearer topsecret"},
    )
    text = repr(t)
    assert "hunter2" not in text and "abc123" not in text and "topsecret" not in text
    assert "page=2" in text
    t.close()
