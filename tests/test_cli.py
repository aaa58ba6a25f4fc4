"""The ``aikit-transports`` command line: ``listen`` against the local servers (in-process and
as a subprocess), Ctrl-C, exit codes, and the offline ``demo``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from typing import Any

import pytest

from aikit_transports import Event
from aikit_transports.cli import format_event, main
from aikit_transports.testing import StreamServer
from aikit_transports.testing.exchange import RecordedRequest, StreamWriter

TIMEOUT = 30


@pytest.fixture
def ws_server() -> Iterator[Any]:
    from aikit_transports.testing.ws import WebSocketServer

    with WebSocketServer() as server:
        yield server


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, list[str], list[str]]:
    status = main(list(argv))
    captured = capsys.readouterr()
    return status, captured.out.splitlines(), captured.err.splitlines()


def _multiline(request: RecordedRequest, writer: StreamWriter) -> None:
    writer.send_status(200, {"Content-Type": "text/event-stream"})
    writer.write(b"id: 1\nevent: note\ndata: two\ndata: lines\n\ndata: [DONE]\n\n")


def _env() -> dict[str, str]:
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env["PYTHONUNBUFFERED"] = "1"
    return env


# -- listen, in-process ---------------------------------------------------------------------------


def test_listen_prints_one_line_per_event_until_done(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(capsys, "listen", stream_server.url("/sse?count=3&end=sentinel"))
    assert status == 0
    assert out == ["event 1", "event 2", "event 3"]
    assert err == []


def test_listen_json_and_count(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(
        capsys, "listen", stream_server.url("/sse?count=10&end=sentinel"), "--json", "--count", "2"
    )
    assert status == 0
    assert [json.loads(line) for line in out] == [
        {"type": "message", "data": "event 1", "id": "1"},
        {"type": "message", "data": "event 2", "id": "2"},
    ]


def test_plain_output_keeps_one_line_per_event_and_raw_does_not(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    stream_server.route("/multi", _multiline)
    url = stream_server.url("/multi")
    assert _run(capsys, "listen", url)[:2] == (0, ["two\\nlines"])
    assert _run(capsys, "listen", url, "--raw")[:2] == (0, ["two", "lines"])
    _status, out, _ = _run(capsys, "listen", url, "--json")
    assert json.loads(out[0]) == {"type": "note", "data": "two\nlines", "id": "1"}


def test_format_event_modes() -> None:
    binary = Event(data=b"\x00\x01", type="binary")
    assert format_event(binary, "json") == (
        '{"type": "binary", "data": {"base64": "AAE="}, "id": null}'
    )
    assert format_event(binary, "line") == "AAE="
    assert format_event(Event(data={"a": 1}), "line") == '{"a": 1}'
    assert format_event(Event(data="back\\slash\r\n"), "line") == "back\\\\slash\\r\\n"


@pytest.mark.parametrize(
    ("data", "shown"),
    [
        ('{"choices": [{"delta": "Hi"}]}', {"choices": [{"delta": "Hi"}]}),
        (" [1, 2]", [1, 2]),
        ("{not json", "{not json"),
        ("42", "42"),  # only objects and arrays: a bare number or word stays the text it was
        ("true", "true"),
        ("[DONE", "[DONE"),
    ],
)
def test_json_output_embeds_json_data_once(data: str, shown: Any) -> None:
    assert json.loads(format_event(Event(data=data, id="7"), "json")) == {
        "type": "message",
        "data": shown,
        "id": "7",
    }


def _llm_chunks(request: RecordedRequest, writer: StreamWriter) -> None:
    writer.send_status(200, {"Content-Type": "text/event-stream"})
    writer.write(b'data: {"choices": [{"delta": {"content": "Hi"}}]}\n\ndata: [DONE]\n\n')


def test_listen_json_prints_sse_json_data_as_json(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    stream_server.route("/llm", _llm_chunks)
    status, out, _ = _run(capsys, "listen", stream_server.url("/llm"), "--json")
    assert status == 0
    assert [json.loads(line)["data"] for line in out] == [
        {"choices": [{"delta": {"content": "Hi"}}]}
    ]


def test_listen_http_stream(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(
        capsys, "listen", stream_server.url("/ndjson?count=2&end=204"), "--type", "http-stream"
    )
    assert status == 0
    assert [json.loads(line) for line in out] == [
        {"id": 1, "data": "line 1"},
        {"id": 2, "data": "line 2"},
    ]


def test_listen_websocket_by_scheme(ws_server: Any, capsys: pytest.CaptureFixture[str]) -> None:
    status, out, _ = _run(capsys, "listen", ws_server.url("/stream?count=2"), "--json")
    assert status == 0
    assert [json.loads(line)["data"]["id"] for line in out] == [1, 2]  # JSON, not a string


def test_listen_auto_falls_back_to_sse(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, _ = _run(
        capsys, "listen", stream_server.url("/sse?count=2&end=sentinel"), "--type", "auto"
    )
    assert status == 0
    assert out == ["event 1", "event 2"]
    # the WebSocket handshake came first, and was refused (a 200 that is not an upgrade)
    assert stream_server.requests[0].headers.get("Upgrade", "").lower() == "websocket"


@pytest.mark.parametrize(
    "path", ["/sse?count=3&delay=0.1", "/ndjson?count=3&malformed_every=5", "/llm"]
)
def test_listen_on_a_url_the_test_server_suggests_ends_by_itself(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str], path: str
) -> None:
    wire = "http-stream" if path.startswith("/ndjson") else "sse"
    status, out, err = _run(capsys, "listen", stream_server.url(path), "--type", wire)
    assert status == 0 and len(out) == (8 if path == "/llm" else 3)
    # one resume at most: the server answers 204 to a resume after the last event
    assert len([line for line in err if line.startswith("reconnected")]) <= 1
    assert len(stream_server.requests) <= 2


def test_reconnects_and_resumes_on_stderr(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = stream_server.url("/sse?count=4&drop_every=2&retry=10&end=sentinel")
    status, out, err = _run(capsys, "listen", url)
    assert status == 0
    assert out == ["event 1", "event 2", "event 3", "event 4"]
    assert err[0].startswith("reconnecting (attempt 1) in ")
    assert "connection lost" in err[0]
    assert err[1] == "reconnected, resuming after event id 2"
    assert len(err) == 2


def test_quiet_hides_reconnects(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = stream_server.url("/sse?count=4&drop_every=2&retry=10&end=sentinel")
    assert _run(capsys, "listen", url, "-q")[2] == []


def test_last_event_id_method_body_and_headers(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = stream_server.url("/sse?count=3&end=sentinel")
    status, out, _ = _run(
        capsys,
        "listen",
        url,
        "--last-event-id",
        "1",
        "-X",
        "POST",
        "-d",
        '{"prompt": "Hi"}',
        "-H",
        "Authorization: Bearer t0ken",
    )
    assert status == 0
    assert out == ["event 2", "event 3"]
    request = stream_server.requests[0]
    assert request.method == "POST"
    assert request.json() == {"prompt": "Hi"}
    assert request.headers["Last-Event-ID"] == "1"
    assert request.headers["Authorization"] == "Bearer t0ken"


def test_timeout_without_events_is_an_error(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(
        capsys, "listen", stream_server.url("/sse?count=2&delay=30"), "--timeout", "0.2"
    )
    assert (status, out) == (1, ["event 1"])
    assert err == ["error: no event within 0.2 s (--timeout)"]


def test_http_error_is_one_line_and_exit_1(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, out, err = _run(capsys, "listen", stream_server.url("/sse?status=401"), "-q")
    assert (status, out, err) == (1, [], ["error: HTTP 401 Unauthorized"])


def test_gave_up_is_reported_once(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _, err = _run(
        capsys, "listen", stream_server.url("/sse?status=503&retry_after=0"), "--max-attempts", "1"
    )
    assert status == 1
    assert err[0].startswith("reconnecting (attempt 1) in 0.00 s: HTTP 503")
    assert err[1].startswith("error: gave up after")
    assert len(err) == 2


def test_debug_logs_the_wire_with_secrets_redacted(
    stream_server: StreamServer, capsys: pytest.CaptureFixture[str]
) -> None:
    url = stream_server.url("/sse?count=1&end=sentinel&token=tok3n")
    status, out, err = _run(capsys, "listen", url, "-H", "Authorization: Bearer s3cr3t", "--debug")
    assert (status, out) == (0, ["event 1"])
    log = "\n".join(err)
    assert "GET http://127.0.0.1:" in log and "token=***" in log
    assert "'Authorization': '***'" in log
    assert "HTTP 200 OK" in log and "event type=message id=1" in log
    assert "tok3n" not in log and "s3cr3t" not in log


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["listen", "http://127.0.0.1:9/x", "-H", "no colon"], "bad header 'no colon'"),
        (["listen", "ftp://127.0.0.1/x"], "unsupported URL scheme 'ftp'"),
        (["listen", "ws://127.0.0.1:9/x", "-X", "POST"], "does not take 'method'"),
    ],
)
def test_usage_errors_exit_2_with_one_line(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status, _out, err = _run(capsys, *argv)
    assert status == 2
    assert len(err) == 1 and message in err[0]


def test_bad_option_values_are_argparse_errors(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["listen", "http://127.0.0.1:9/x", "--count", "0"])
    assert info.value.code == 2
    assert "--count: expected a number >= 1" in capsys.readouterr().err


def test_help_shows_an_example_for_each_wire(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["listen", "--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for example in ("listen https://", "listen wss://", "--type http-stream", "--type auto"):
        assert example in text
    assert "130 interrupted" in text


# -- as a program -------------------------------------------------------------------------------


def test_python_dash_m_is_the_same_program(stream_server: StreamServer) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "aikit_transports",
            "listen",
            "--count",
            "2",
            "--json",
            stream_server.url("/sse?count=5&end=sentinel"),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    assert [json.loads(line)["id"] for line in proc.stdout.splitlines()] == ["1", "2"]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_ctrl_c_closes_cleanly_with_exit_130(stream_server: StreamServer) -> None:
    url = stream_server.url("/sse?count=1&end=hold")
    proc = subprocess.Popen(
        [sys.executable, "-m", "aikit_transports", "listen", url],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline() == "event 1\n"  # streaming: now interrupt it
        proc.send_signal(signal.SIGINT)
        _out, err = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130
    assert "Traceback" not in err


@pytest.mark.slow
def test_demo_shows_the_drop_the_reconnect_the_resume_and_a_summary() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "aikit_transports", "demo"],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=_env(),
    )
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for expected in (
        "connected to http://127.0.0.1:",
        "dropped: connection lost",
        "reconnecting (attempt 1) in",
        "resumed: reconnected with Last-Event-ID: 12",
        "done: the server finished the stream",
        "summary: 40 events (numbers 1..40): nothing lost, nothing repeated, in order",
        "3 dropped connections, 3 reconnects",
    ):
        assert expected in out
    assert proc.stderr == ""


@pytest.mark.slow
@pytest.mark.parametrize("wire", ["websocket", "http-stream"])
def test_demo_of_the_other_wires(wire: str, capsys: pytest.CaptureFixture[str]) -> None:
    status = main(["demo", "--type", wire, "--count", "26"])
    out = capsys.readouterr().out
    assert status == 0, out
    assert "summary: 26 events (numbers 1..26): nothing lost, nothing repeated, in order" in out
    assert "2 dropped connections, 2 reconnects" in out
    assert "resumed: reconnected" in out
