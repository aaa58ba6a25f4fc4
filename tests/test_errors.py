"""The exception tree (documented in ``aikit_transports.errors``, checked here against the classes),
``HTTPStatusError.retryable`` agreeing with the policy, and ``Event.json()`` errors."""

from __future__ import annotations

import pickle
import re

import pytest

import aikit_transports
from aikit_transports import (
    ConnectError,
    Event,
    HTTPStatusError,
    ProtocolError,
    ReconnectFailed,
    ReconnectPolicy,
    SSETransport,
    TransportError,
    WebSocketClosed,
)
from aikit_transports import errors as errors_module
from aikit_transports.errors import InvalidJSON
from aikit_transports.testing import StreamServer

# --- the tree -------------------------------------------------------------------------------


def _code_tree() -> dict[str, str]:
    """``{class name: parent name}`` for every error class of the library, from the code."""
    pytest.importorskip("redis")  # contrib.redis defines one of them
    import aikit_transports.contrib.redis  # noqa: F401

    parents: dict[str, str] = {}
    todo = [TransportError]
    while todo:
        cls = todo.pop()
        for sub in cls.__subclasses__():
            if not sub.__module__.startswith("aikit_transports.") or sub.__name__[0] == "_":
                continue  # defined by a test, or private (users catch it as its public base)
            parent = next(b for b in sub.__bases__ if issubclass(b, TransportError))
            parents[sub.__name__] = parent.__name__
            todo.append(sub)
    return parents


def _documented_tree() -> dict[str, str]:
    """``{class name: parent name}`` from the tree drawn in the module docstring."""
    doc = errors_module.__doc__ or ""
    block = doc.split("::\n\n", 1)[1].split("\n\n", 1)[0]
    parents: dict[str, str] = {}
    stack: list[str] = []
    for line in block.splitlines():
        match = re.match(r"^ {4}([ │├└─]*)(\w+)", line)
        assert match, f"not a tree line: {line!r}"
        depth = len(match.group(1)) // 4
        name = match.group(2)
        del stack[depth:]
        if stack:
            parents[name] = stack[-1]
        stack.append(name)
    return parents


def _render(parents: dict[str, str]) -> str:
    children: dict[str, list[str]] = {}
    for name, parent in parents.items():
        children.setdefault(parent, []).append(name)
    lines = ["TransportError"]

    def walk(name: str, prefix: str) -> None:
        kids = sorted(children.get(name, []))
        for i, kid in enumerate(kids):
            last = i == len(kids) - 1
            lines.append(f"{prefix}{'└── ' if last else '├── '}{kid}")
            walk(kid, prefix + ("    " if last else "│   "))

    walk("TransportError", "")
    return "\n".join(lines)


def test_the_documented_tree_is_the_tree_of_the_code() -> None:
    code = _code_tree()
    assert _documented_tree() == code, (
        "the tree in aikit_transports/errors.py's docstring is out of date; the classes say:\n"
        + _render(code)
    )


def test_every_public_error_is_importable_from_the_package() -> None:
    public = {n for n in _code_tree() if n not in ("RedisReplyError", "InvalidJSON")}
    assert public <= set(aikit_transports.__all__)


def test_a_status_or_a_close_code_is_not_a_connect_error() -> None:
    # ``except ConnectError`` is "the network failed, try later": a 401 or close code 4000 is
    # the server's answer, and must not land there.
    assert not issubclass(HTTPStatusError, ConnectError)
    assert not issubclass(WebSocketClosed, ConnectError)
    assert issubclass(aikit_transports.FallbackError, ConnectError)


# --- HTTPStatusError.retryable ----------------------------------------------------------------


@pytest.mark.parametrize("status", [400, 401, 403, 404, 409, 410, 422, 501])
def test_statuses_the_policy_never_retries_are_not_retryable(status: int) -> None:
    error = HTTPStatusError(f"HTTP {status}", status_code=status)
    assert error.retryable is False
    assert ReconnectPolicy().should_retry(error) is False


@pytest.mark.parametrize("status", ReconnectPolicy().retry_statuses)
def test_statuses_the_policy_retries_are_retryable(status: int) -> None:
    error = HTTPStatusError(f"HTTP {status}", status_code=status)
    assert error.retryable is True
    assert ReconnectPolicy().should_retry(error) is True


def test_an_explicit_retryable_wins_and_survives_pickling() -> None:
    error = HTTPStatusError("HTTP 404", status_code=404, retryable=True)
    assert error.retryable is True
    error.retryable = False
    assert pickle.loads(pickle.dumps(error)).retryable is False
    assert pickle.loads(pickle.dumps(HTTPStatusError("x", status_code=503))).retryable is True


def test_retryable_of_real_answers(stream_server: StreamServer) -> None:
    refused = SSETransport(stream_server.url("/sse?status=403"))
    with pytest.raises(HTTPStatusError) as info:
        refused.connect()
    assert info.value.status_code == 403 and info.value.retryable is False
    refused.close()
    busy = SSETransport(stream_server.url("/sse?status=503"), reconnect=ReconnectPolicy(0))
    with pytest.raises(ReconnectFailed) as failed:
        busy.connect()
    cause = failed.value.__cause__
    assert isinstance(cause, HTTPStatusError) and cause.retryable is True
    busy.close()


# --- Event.json() ---------------------------------------------------------------------------


def test_event_json_errors_are_value_errors_too(stream_server: StreamServer) -> None:
    with SSETransport(stream_server.url("/sse?count=1&end=sentinel")) as t:
        (event,) = list(t.iter_events(timeout=10))
    assert event.data == "event 1"
    with pytest.raises(ValueError, match="not valid JSON") as info:
        event.json()
    assert isinstance(info.value, ProtocolError) and isinstance(info.value, InvalidJSON)
    assert info.value.transport_id == t.id
    assert Event(data='{"a": 1}').json() == {"a": 1}
