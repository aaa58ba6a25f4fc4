"""Credentials never show, and never travel to another host.

Secrets go in every place a user puts them: ``Authorization``, ``Cookie`` and API-key headers,
a password in the URL, ``token``/``key``/``sig``-like query values (in the URL and in
``params``). They must not appear in ``repr``, error messages (the whole chain), the library's
log records at DEBUG (with ``debug=True``), metrics, health, the manager's reports or the CLI's
output. A redirect to another host drops them all (``requests`` alone keeps API-key headers,
``websocket-client`` alone keeps everything); a redirect within the origin keeps them.
"""

from __future__ import annotations

import logging
import socket
import traceback
from collections.abc import Iterator
from typing import Any, Dict, List

import pytest

from aikit_transports import (
    HTTPStreamTransport,
    ReconnectPolicy,
    SSETransport,
    TransportError,
    TransportManager,
    WebSocketTransport,
)
from aikit_transports.cli import main as cli_main
from aikit_transports.redact import redact_headers, redact_url
from aikit_transports.testing import RecordedRequest, StreamServer, StreamWriter
from aikit_transports.testing.ws import WebSocketServer
from aikit_transports.transports.base import BaseTransport

SECRETS = {
    "password": "PASSWORD-1",
    "token": "TOKEN-2",
    "api_key": "KEY-3",
    "sig": "SIG-4",
    "authorization": "AUTH-5",
    "cookie": "COOKIE-6",
    "x-api-key": "APIKEY-7",
    "api-key": "APIKEY-8",
    "param": "PARAM-9",
    "x-credential": "CRED-10",
    "x-signature": "SIGN-11",
    "x-passwd": "PASSWD-12",
    "jwt": "JWT-13",
    "pwd": "PWD-14",
    "pass": "PASS-15",
    "credential": "CRED-16",
    "signature": "SIGN-17",
}
HEADERS = {
    "Authorization": f"Bearer {SECRETS['authorization']}",
    "Cookie": f"sid={SECRETS['cookie']}",
    "X-API-Key": SECRETS["x-api-key"],
    "api-key": SECRETS["api-key"],
    "X-Credential": SECRETS["x-credential"],
    "X-Signature": SECRETS["x-signature"],
    "X-Passwd": SECRETS["x-passwd"],
    "X-Request-Source": "tests",  # not a credential: kept everywhere
}
QUERY = "&".join(
    f"{name}={SECRETS[name]}"
    for name in ("token", "api_key", "sig", "jwt", "pwd", "pass", "credential", "signature")
)
NO_RETRY = ReconnectPolicy(max_attempts=0)
ONE_RETRY = ReconnectPolicy(max_attempts=1, initial_delay=0, jitter=0)
WIRES = ("sse", "http-stream", "websocket")


def assert_clean(text: str, where: str) -> None:
    leaked = [name for name, value in SECRETS.items() if value in text]
    assert not leaked, f"{where} shows {leaked}: {text[:500]}"


def secret_url(base: str, path: str) -> str:
    """``base`` (scheme://host:port) with a password and secret query values added."""
    scheme, rest = base.split("://", 1)
    sep = "&" if "?" in path else "?"
    return f"{scheme}://user:{SECRETS['password']}@{rest}{path}{sep}{QUERY}"


def make(wire: str, url: str, **options: Any) -> BaseTransport:
    options.setdefault("reconnect", ONE_RETRY)  # the HTTP stream ends with a 204 on resume
    if wire == "websocket":
        return WebSocketTransport(url, headers=HEADERS, debug=True, **options)
    cls = SSETransport if wire == "sse" else HTTPStreamTransport
    return cls(
        url, headers=HEADERS, params={"access_token": SECRETS["param"]}, debug=True, **options
    )


def error_text(error: BaseException) -> str:
    """Everything an error can show: str, repr, context fields and the chain a traceback
    (or an error tracker) shows: causes, and contexts unless suppressed (``from None``)."""
    parts = ["".join(traceback.format_exception(type(error), error, error.__traceback__))]
    seen = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        parts += [str(current), repr(current), repr(getattr(current, "__dict__", {}))]
        if current.__cause__ is not None or current.__suppress_context__:
            current = current.__cause__
        else:
            current = current.__context__
    return "\n".join(parts)


def our_records(caplog: pytest.LogCaptureFixture) -> str:
    lines = []
    for record in caplog.records:
        # The library's loggers; the test servers (aikit_transports.testing) log what they
        # received, as servers do.
        name = record.name
        if name.startswith("aikit_transports") and not name.startswith("aikit_transports.testing"):
            lines.append(record.getMessage())
            if record.exc_info:
                lines.append("".join(traceback.format_exception(*record.exc_info)))
    return "\n".join(lines)


@pytest.fixture
def servers() -> Iterator[Dict[str, Any]]:
    with StreamServer() as http, WebSocketServer() as ws:
        yield {"http": http, "ws": ws}


def _base(wire: str, servers: Dict[str, Any]) -> str:
    return servers["ws"].url("") if wire == "websocket" else servers["http"].base_url


def _stream_path(wire: str) -> str:
    return {
        "sse": "/sse?count=3&end=sentinel",
        "http-stream": "/ndjson?count=3&end=204",
        "websocket": "/stream?count=3",
    }[wire]


# -- reprs, logs, metrics, health ----------------------------------------------------------------


@pytest.mark.parametrize("wire", WIRES)
def test_a_working_stream_shows_no_secret(
    wire: str, servers: Dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    t = make(wire, secret_url(_base(wire, servers), _stream_path(wire)))
    outputs: List[str] = [repr(t), str(t.url != t.safe_url), t.safe_url]
    with TransportManager() as mgr:
        managed = mgr.create(wire, secret_url(_base(wire, servers), _stream_path(wire)))
        try:
            events = list(t.iter_events(timeout=10))
            outputs += [repr(t), repr(t.metrics), repr(t.health()), repr(managed)]
            outputs += [repr(mgr.metrics()), repr(mgr.summary()), repr(mgr.health_check())]
        finally:
            t.close()
        outputs += [repr(t), repr(t.health()), repr(mgr)]
    assert len(events) == 3
    assert our_records(caplog), "debug=True logs the requests"
    assert_clean(our_records(caplog), "the library's DEBUG log")
    assert_clean("\n".join(outputs), "repr, metrics or health")


# -- errors --------------------------------------------------------------------------------------


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _failure(t: BaseTransport) -> TransportError:
    errors: List[TransportError] = []
    t.on("error", errors.append)
    try:
        with pytest.raises(TransportError) as info:
            t.connect(timeout=10)
    finally:
        t.close()
    assert errors
    for error in errors:
        assert_clean(error_text(error), "an error event")
    return info.value


@pytest.mark.parametrize("wire", WIRES)
@pytest.mark.parametrize("case", ["refused", "status", "wrong-type", "gave-up"])
def test_errors_show_no_secret(
    wire: str, case: str, servers: Dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    scheme = "ws" if wire == "websocket" else "http"
    if case in ("refused", "gave-up"):
        url = secret_url(f"{scheme}://127.0.0.1:{_closed_port()}", "/stream")
    elif case == "status":
        path = "/status/401" if wire == "websocket" else "/sse?status=401"
        url = secret_url(_base(wire, servers), path)
    else:  # an answer that is not a stream: HTML, or an HTTP server answering a WebSocket
        if wire == "websocket":
            url = secret_url(f"ws://127.0.0.1:{servers['http'].port}", "/sse")
        else:
            url = secret_url(_base(wire, servers), "/sse?content_type=text/html")
    policy = ReconnectPolicy(max_attempts=1, initial_delay=0) if case == "gave-up" else NO_RETRY
    error = _failure(make(wire, url, reconnect=policy, timeout=5))
    assert_clean(error_text(error), f"the {case} error")
    assert_clean(our_records(caplog), "the library's log")


def test_the_cli_prints_no_secret(
    servers: Dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    url = secret_url(f"http://127.0.0.1:{_closed_port()}", "/sse")
    code = cli_main(
        ["listen", url, "--max-attempts", "0", "-H", f"Authorization: {HEADERS['Authorization']}"]
    )
    assert code == 1
    out, err = capsys.readouterr()
    assert err  # the failure is reported
    assert_clean(out + err, "the CLI's output")


# -- redirects -----------------------------------------------------------------------------------


def _redirect(location: str) -> Any:
    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(307, {"Location": location, "Content-Length": "0"})

    return route


def _received_headers(wire: str, servers: Dict[str, Any], target_host: str) -> Dict[str, str]:
    """Stream from ``/redirect`` on 127.0.0.1, which redirects to ``target_host``; the
    headers the target received."""
    http: StreamServer = servers["http"]
    ws: WebSocketServer = servers["ws"]
    if wire == "websocket":
        http.route("/redirect", _redirect(f"ws://{target_host}:{ws.port}/stream?count=3"))
        url = f"ws://127.0.0.1:{http.port}/redirect"
    else:
        target = _stream_path(wire)
        http.route("/redirect", _redirect(f"http://{target_host}:{http.port}{target}"))
        url = f"{http.base_url}/redirect"
    t = make(wire, url)
    try:
        assert len(list(t.iter_events(timeout=10))) == 3
    finally:
        t.close()
    if wire == "websocket":
        received: Dict[str, str] = ws.requests[-1]["headers"]
        return received
    request = next(r for r in http.requests if r.path != "/redirect")
    return {k.lower(): v for k, v in request.headers.items()}


@pytest.mark.parametrize("wire", WIRES)
def test_a_redirect_to_another_host_drops_credentials(wire: str, servers: Dict[str, Any]) -> None:
    # "localhost" is another host than "127.0.0.1" for every client (and for browsers).
    # Which other headers go along is tested in test_redirects.py.
    headers = _received_headers(wire, servers, "localhost")
    for name in (k.lower() for k in HEADERS if k != "X-Request-Source"):
        assert name not in headers, f"{name} was sent to another host"


@pytest.mark.parametrize("wire", ["sse", "http-stream"])
def test_a_redirect_within_the_origin_keeps_credentials(wire: str, servers: Dict[str, Any]) -> None:
    headers = _received_headers(wire, servers, "127.0.0.1")
    assert headers["authorization"] == HEADERS["Authorization"]
    assert headers["x-api-key"] == HEADERS["X-API-Key"]
    assert headers["x-credential"] == HEADERS["X-Credential"]


# -- other loggers and names ---------------------------------------------------------------------


def test_urllib3_debug_lines_are_redacted(
    servers: Dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    # The root logger at DEBUG: urllib3 prints each request line, query string included.
    caplog.set_level(logging.DEBUG)
    t = SSETransport(secret_url(servers["http"].base_url, "/sse?count=3&end=sentinel"))
    try:
        assert len(list(t.iter_events(timeout=10))) == 3
    finally:
        t.close()
    lines = [
        r.getMessage() for r in caplog.records if not r.name.startswith("aikit_transports.testing")
    ]
    request_lines = [line for line in lines if "GET /sse?" in line]
    assert request_lines, "urllib3 logs the request line"
    assert "api_key=***" in request_lines[0] and "count=3" in request_lines[0]
    assert_clean("\n".join(lines), "a log line of another library")


@pytest.mark.parametrize(
    ("name", "secret"),
    [
        ("jwt", True),
        ("id_jwt", True),
        ("pwd", True),
        ("pass", True),
        ("db_pass", True),
        ("userPass", True),
        ("passphrase", True),
        ("credential", True),
        ("X-Credential", True),
        ("X-Signature", True),
        ("X-Passwd", True),
        ("passenger", False),  # ``pass`` only as a word of its own
        ("bypass", False),
        ("compass", False),
        ("page", False),
        ("X-Request-Source", False),
    ],
)
def test_which_names_are_secret(name: str, secret: bool) -> None:
    url = redact_url(f"https://h/p?{name}=VALUE")
    assert ("VALUE" not in (url or "")) is secret
    assert (redact_headers({name: "VALUE"})[name] == "***") is secret


# -- text a server chose -------------------------------------------------------------------------

HOSTILE = "\x1b[2J\x1b]0;pwned\x07" + "A" * 30_000 + "\rforged log line" + "B" * 30_000


def _raw_route(head: bytes) -> Any:
    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.write_raw(head)

    return route


def _assert_shown_safely(text: str, limit: int = 600) -> None:
    assert "\x1b" not in text and "\r" not in text and "\x07" not in text
    assert len(text) < limit, f"{len(text)} characters"


def _connect_error(t: BaseTransport) -> TransportError:
    try:
        with pytest.raises(TransportError) as info:
            t.connect(timeout=10)
    finally:
        t.close()
    return info.value


def test_a_huge_status_reason_with_control_characters_is_shown_short_and_escaped(
    servers: Dict[str, Any],
) -> None:
    http: StreamServer = servers["http"]
    http.route(
        "/reason", _raw_route(f"HTTP/1.1 400 {HOSTILE}\r\nContent-Length: 0\r\n\r\n".encode())
    )
    error = _connect_error(SSETransport(http.url("/reason"), reconnect=NO_RETRY))
    _assert_shown_safely(str(error))


@pytest.mark.parametrize("wire", ["sse", "http-stream"])
def test_a_hostile_content_type_is_shown_short_and_escaped(
    wire: str, servers: Dict[str, Any], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    http: StreamServer = servers["http"]
    kind = "text/plain" if wire == "sse" else "text/html"  # what each wire refuses
    head = f"HTTP/1.1 200 OK\r\nContent-Type: {kind}; x={HOSTILE.replace(chr(13), '')}\r\n"
    http.route("/type", _raw_route(f"{head}Content-Length: 2\r\n\r\nok".encode()))
    cls = SSETransport if wire == "sse" else HTTPStreamTransport
    error = _connect_error(cls(http.url("/type"), reconnect=NO_RETRY))
    assert "Content-Type" in error.message
    _assert_shown_safely(str(error))
    _assert_shown_safely(our_records(caplog), limit=10_000)


def test_a_bad_status_line_is_shown_escaped(servers: Dict[str, Any]) -> None:
    http: StreamServer = servers["http"]
    http.route("/garbage", _raw_route(f"\x1b[31mNOT HTTP {HOSTILE[:500]}\r\n\r\n".encode()))
    error = _connect_error(SSETransport(http.url("/garbage"), reconnect=NO_RETRY))
    _assert_shown_safely(str(error))


def test_a_malformed_ndjson_line_is_shown_short_and_escaped(servers: Dict[str, Any]) -> None:
    http: StreamServer = servers["http"]
    body = f'{{"id": 1}}\n{HOSTILE[:5000].replace(chr(13), "")}\n{{"id": 2}}\n'.encode()

    def route(request: RecordedRequest, writer: StreamWriter) -> None:
        if request.headers.get("Last-Event-ID"):
            writer.send_status(204)
            return
        writer.send_status(200, {"Content-Type": "application/x-ndjson"})
        writer.write(body)

    http.route("/lines", route)
    t = HTTPStreamTransport(http.url("/lines"), reconnect=ONE_RETRY)
    errors: List[TransportError] = []
    t.on("error", errors.append)
    try:
        assert [e.id for e in t.iter_events(timeout=10)] == ["1", "2"]
    finally:
        t.close()
    (error,) = errors
    assert "NDJSON line 2" in error.message and "\\x1b[2J" in error.message
    _assert_shown_safely(str(error), limit=300)


def test_the_cli_prints_server_text_on_one_line(
    servers: Dict[str, Any], capsys: pytest.CaptureFixture[str]
) -> None:
    http: StreamServer = servers["http"]
    head = f"HTTP/1.1 200 OK\r\nContent-Type: text/plain{HOSTILE.replace(chr(13), '')}\r\n"
    http.route("/type", _raw_route(f"{head}Content-Length: 2\r\n\r\nok".encode()))
    assert cli_main(["listen", http.url("/type"), "--max-attempts", "0"]) == 1
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1
    _assert_shown_safely(err)
