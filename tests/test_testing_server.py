"""The local test server: built-in endpoints, custom routes, faults, and a prompt, clean close()."""

from __future__ import annotations

import json
import re
import signal
import socket
import subprocess
import sys
import threading
from typing import Any, Callable, Dict, Iterator, List, Optional, Tuple

import pytest
import requests
import websocket

from aikit_transports.testing import (
    HTTPError,
    RecordedRequest,
    StreamServer,
    StreamWriter,
)

TIMEOUT = 5.0


# -- helpers -----------------------------------------------------------------------------------


def get(url: str, **kwargs: Any) -> requests.Response:
    """A complete GET (body read, connection released and closed)."""
    return requests.get(url, timeout=TIMEOUT, **kwargs)


def sse_ids(text: str) -> List[int]:
    return [int(i) for i in re.findall(r"^id: (\d+)$", text, re.M)]


def sse_data(text: str) -> List[str]:
    return re.findall(r"^data: (.*)$", text, re.M)


def open_raw(
    server: StreamServer, path: str, headers: Optional[Dict[str, str]] = None
) -> socket.socket:
    """A raw socket that sent ``GET path``; the caller closes it."""
    sock = socket.create_connection((server.host, server.port), timeout=TIMEOUT)
    lines = [f"GET {path} HTTP/1.1", f"Host: {server.host}"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode())
    return sock


def read_until_eof(sock: socket.socket) -> bytes:
    data = b""
    while True:
        piece = sock.recv(65536)
        if not piece:
            return data
        data += piece


def read_until(sock: socket.socket, marker: bytes, data: bytes = b"") -> bytes:
    """Read until ``marker`` has arrived (socket timeout bounds the wait)."""
    while marker not in data:
        piece = sock.recv(65536)
        if not piece:
            raise AssertionError(f"connection closed before {marker!r} arrived: {data!r}")
        data += piece
    return data


def split_response(raw: bytes) -> Tuple[str, Dict[str, str], bytes]:
    head, _, body = raw.partition(b"\r\n\r\n")
    status, *header_lines = head.decode().split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def dechunk(body: bytes) -> Tuple[bytes, bool]:
    """Decode a chunked body; returns the payload and whether the terminating chunk arrived."""
    payload = b""
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return payload, True
        payload += rest[:size]
        body = rest[size + 2 :]
    return payload, False


def server_threads() -> List[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("aikit-testing")]


def collect_with_resume(url: str, *, attempts: int = 20) -> Tuple[List[int], int]:
    """Reconnect like an SSE client (Last-Event-ID) until a 204; the ids seen and cuts counted."""
    ids: List[int] = []
    cuts = 0
    for _ in range(attempts):
        headers = {"Last-Event-ID": str(ids[-1])} if ids else {}
        try:
            with requests.get(url, headers=headers, stream=True, timeout=TIMEOUT) as response:
                if response.status_code == 204:
                    return ids, cuts
                for line in response.iter_lines():
                    if line.startswith(b"id: "):
                        ids.append(int(line[4:]))
        except requests.exceptions.ChunkedEncodingError:
            cuts += 1
    raise AssertionError(f"no 204 after {attempts} connections; ids {ids}")


# -- the server itself -------------------------------------------------------------------------


def test_urls_and_addresses(stream_server: StreamServer) -> None:
    assert stream_server.host == "127.0.0.1" and stream_server.port > 0
    assert stream_server.base_url == f"http://127.0.0.1:{stream_server.port}"
    assert stream_server.url("/sse?count=1") == stream_server.base_url + "/sse?count=1"
    assert stream_server.url("poll") == stream_server.base_url + "/poll"
    assert "open" in repr(stream_server)


def test_requests_are_recorded(stream_server: StreamServer) -> None:
    with requests.Session() as session:
        session.post(
            stream_server.url("/send?a=1&b=&a=2"),
            json={"hello": "world"},
            headers={"X-Token": "abc"},
            timeout=TIMEOUT,
        )
        session.get(stream_server.url("/sse?count=1"), timeout=TIMEOUT)
    first, second = stream_server.wait_for_requests(2)
    assert isinstance(first, RecordedRequest)
    assert (first.method, first.path, first.query) == ("POST", "/send", {"a": "2", "b": ""})
    assert first.headers["x-token"] == "abc" and first.headers["X-TOKEN"] == "abc"
    assert first.json() == {"hello": "world"}
    assert (second.method, second.path, second.body) == ("GET", "/sse", b"")
    assert stream_server.requests == [first, second]


def test_chunked_request_body_is_recorded_decoded(stream_server: StreamServer) -> None:
    response = requests.post(
        stream_server.url("/send"), data=iter([b"part one, ", b"part two"]), timeout=TIMEOUT
    )
    assert response.status_code == 200
    (request,) = stream_server.requests
    assert request.headers["Transfer-Encoding"] == "chunked"
    assert request.body == b"part one, part two"


def test_wait_for_requests_times_out(stream_server: StreamServer) -> None:
    with pytest.raises(TimeoutError, match="expected at least 1"):
        stream_server.wait_for_requests(1, timeout=0.01)


def test_wait_for_requests_wakes_when_a_request_arrives(stream_server: StreamServer) -> None:
    results: List[List[RecordedRequest]] = []
    waiter = threading.Thread(target=lambda: results.append(stream_server.wait_for_requests(1)))
    waiter.start()
    get(stream_server.url("/send"))
    waiter.join(TIMEOUT)
    assert not waiter.is_alive() and results[0][0].path == "/send"


def test_unknown_path_is_404(stream_server: StreamServer) -> None:
    response = get(stream_server.url("/nowhere"))
    assert response.status_code == 404 and "/nowhere" in response.text


# -- /sse --------------------------------------------------------------------------------------


def test_sse_default_stream(stream_server: StreamServer) -> None:
    response = get(stream_server.url("/sse"))
    assert response.status_code == 200
    assert response.headers["Content-Type"] == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    assert response.headers["Transfer-Encoding"] == "chunked"
    assert sse_ids(response.text) == list(range(1, 11))
    assert sse_data(response.text)[:2] == ["event 1", "event 2"]
    assert response.text.startswith("id: 1\ndata: event 1\n\nid: 2\n")


def test_sse_payload_size_and_json_data(stream_server: StreamServer) -> None:
    text = get(stream_server.url("/sse?count=3&size=100")).text
    assert all(len(d) >= 100 and d.startswith("event ") for d in sse_data(text))
    text = get(stream_server.url("/sse?count=3&data=json&size=50")).text
    values = [json.loads(d) for d in sse_data(text)]
    assert [v["i"] for v in values] == [1, 2, 3]
    assert all(len(d) >= 50 for d in sse_data(text))
    assert sse_data(get(stream_server.url("/sse?count=1&data=json")).text) == ['{"i": 1}']


def test_sse_resumes_after_last_event_id(stream_server: StreamServer) -> None:
    url = stream_server.url("/sse?count=10")
    assert sse_ids(get(url, headers={"Last-Event-ID": "7"}).text) == [8, 9, 10]
    assert sse_ids(get(url, headers={"Last-Event-ID": "10"}).text) == []
    assert sse_ids(get(url, headers={"Last-Event-ID": "not-a-number"}).text) == list(range(1, 11))


def test_sse_retry_field_and_keep_alive_comments(stream_server: StreamServer) -> None:
    text = get(stream_server.url("/sse?count=4&retry=250&comment_every=2")).text
    assert text.startswith("retry: 250\n\nid: 1\n")
    assert text.count(": keep-alive\n\n") == 2
    assert "id: 2\ndata: event 2\n\n: keep-alive\n\nid: 3" in text


def test_sse_end_sentinel(stream_server: StreamServer) -> None:
    text = get(stream_server.url("/sse?count=2&end=sentinel")).text
    assert sse_data(text) == ["event 1", "event 2", "[DONE]"]


def test_sse_end_204_answers_a_client_resuming_at_the_end(stream_server: StreamServer) -> None:
    url = stream_server.url("/sse?count=3&end=204")
    assert sse_ids(get(url, headers={"Last-Event-ID": "1"}).text) == [2, 3]
    for last in ("3", "9"):
        response = get(url, headers={"Last-Event-ID": last})
        assert response.status_code == 204 and response.content == b""


def test_sse_drop_every_cuts_the_connection_mid_stream(stream_server: StreamServer) -> None:
    with open_raw(stream_server, "/sse?count=10&drop_every=3") as sock:
        raw = read_until_eof(sock)
    status, headers, body = split_response(raw)
    assert status == "HTTP/1.1 200 OK" and headers["transfer-encoding"] == "chunked"
    payload, complete = dechunk(body)
    assert sse_ids(payload.decode()) == [1, 2, 3]
    assert not complete  # no terminating chunk: the client sees a broken stream


def test_sse_drop_every_and_resume_delivers_each_event_once(stream_server: StreamServer) -> None:
    ids, cuts = collect_with_resume(stream_server.url("/sse?count=25&drop_every=10&end=204"))
    assert ids == list(range(1, 26))
    assert cuts == 2
    assert [r.headers.get("Last-Event-ID") for r in stream_server.requests] == [
        None,
        "10",
        "20",
        "25",
    ]


def test_sse_last_event_is_never_cut(stream_server: StreamServer) -> None:
    response = get(stream_server.url("/sse?count=6&drop_every=3"), headers={"Last-Event-ID": "3"})
    assert sse_ids(response.text) == [4, 5, 6]


@pytest.mark.parametrize("status", [404, 500, 503])
def test_sse_status_instead_of_a_stream(stream_server: StreamServer, status: int) -> None:
    response = get(stream_server.url(f"/sse?status={status}&retry_after=3"))
    assert response.status_code == status
    assert response.headers["Retry-After"] == "3"
    assert response.headers["Content-Type"].startswith("text/plain")


def test_status_204_has_no_body(stream_server: StreamServer) -> None:
    response = get(stream_server.url("/sse?status=204"))
    assert response.status_code == 204 and response.content == b""
    assert "Content-Length" not in response.headers


def test_content_type_override(stream_server: StreamServer) -> None:
    response = get(stream_server.url("/sse?count=1&content_type=text/html"))
    assert response.headers["Content-Type"] == "text/html"


@pytest.mark.parametrize(
    "query, name",
    [
        ("count=x", "count"),
        ("count=-1", "count"),
        ("drop_every=0", "drop_every"),
        ("delay=-1", "delay"),
        ("end=never", "end"),
        ("chunked=maybe", "chunked"),
        ("data=xml", "data"),
        ("status=999", "status"),
    ],
)
def test_bad_parameters_are_a_400_naming_them(
    stream_server: StreamServer, query: str, name: str
) -> None:
    response = get(stream_server.url(f"/sse?{query}"))
    assert response.status_code == 400
    assert name in response.text


def test_close_delimited_body(stream_server: StreamServer) -> None:
    with open_raw(stream_server, "/sse?count=3&chunked=0") as sock:
        raw = read_until_eof(sock)
    _, headers, body = split_response(raw)
    assert headers["connection"] == "close"
    assert "transfer-encoding" not in headers and "content-length" not in headers
    assert body == b"id: 1\ndata: event 1\n\nid: 2\ndata: event 2\n\nid: 3\ndata: event 3\n\n"
    response = get(stream_server.url("/sse?count=3&chunked=0"))
    assert sse_ids(response.text) == [1, 2, 3]


def test_chunked_body_ends_with_the_terminating_chunk(stream_server: StreamServer) -> None:
    with open_raw(stream_server, "/sse?count=2", {"Connection": "close"}) as sock:
        raw = read_until_eof(sock)
    payload, complete = dechunk(split_response(raw)[2])
    assert complete and sse_ids(payload.decode()) == [1, 2]


def test_each_event_is_its_own_chunk_and_sent_at_once(stream_server: StreamServer) -> None:
    # stall_after=2: if the server held events back, the second would never arrive.
    with open_raw(stream_server, "/sse?count=5&stall_after=2") as sock:
        raw = read_until(sock, b"data: event 2\n\n")
    body = split_response(raw)[2]
    assert body == b"15\r\nid: 1\ndata: event 1\n\n\r\n15\r\nid: 2\ndata: event 2\n\n\r\n"


def test_delay_between_events(stream_server: StreamServer) -> None:
    assert sse_ids(get(stream_server.url("/sse?count=3&delay=0.01")).text) == [1, 2, 3]


def test_stall_after_zero_sends_headers_only(stream_server: StreamServer) -> None:
    with open_raw(stream_server, "/sse?count=5&stall_after=0") as sock:
        raw = read_until(sock, b"\r\n\r\n")
        assert split_response(raw)[0] == "HTTP/1.1 200 OK"
        assert split_response(raw)[2] == b""


def test_stalled_handler_ends_when_the_client_goes_away(
    stream_server: StreamServer, wait_until: Callable[..., Any]
) -> None:
    with open_raw(stream_server, "/sse?count=5&stall_after=1") as sock:
        read_until(sock, b"data: event 1\n\n")
        assert len(server_threads()) == 2  # the acceptor and the stalled connection
    wait_until(lambda: len(server_threads()) == 1, message="stalled handler ended")


def test_end_hold_keeps_the_connection_open_after_the_last_event(server: StreamServer) -> None:
    with open_raw(server, "/sse?count=2&end=hold") as sock:
        raw = read_until(sock, b"data: event 2\n\n")
        close_in_thread(server)
        raw += read_until_eof(sock)
    payload, complete = dechunk(split_response(raw)[2])
    assert sse_ids(payload.decode()) == [1, 2] and not complete


# -- /ndjson -----------------------------------------------------------------------------------


def test_ndjson_stream(stream_server: StreamServer) -> None:
    response = get(stream_server.url("/ndjson?count=3&size=20"))
    assert response.headers["Content-Type"] == "application/x-ndjson"
    lines = response.text.split("\n")
    assert lines[-1] == ""
    values = [json.loads(line) for line in lines[:-1]]
    assert [v["id"] for v in values] == [1, 2, 3]
    assert values[0]["data"].startswith("line 1") and len(values[0]["data"]) == 20


def test_ndjson_resume_crlf_and_malformed_lines(stream_server: StreamServer) -> None:
    response = get(
        stream_server.url("/ndjson?count=6&malformed_every=2&crlf=1"),
        headers={"Last-Event-ID": "1"},
    )
    lines = response.text.split("\r\n")
    assert lines[-1] == "" and "\n" not in "".join(lines)
    good, bad = [], []
    for line in lines[:-1]:
        try:
            good.append(json.loads(line)["id"])
        except ValueError:
            bad.append(line)
    assert good == [2, 3, 4, 5, 6]
    assert len(bad) == 3  # after ids 2, 4 and 6


def test_ndjson_drop_every_and_end_204(stream_server: StreamServer) -> None:
    url = stream_server.url("/ndjson?count=5&drop_every=2&end=204")
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(url)
    assert get(url, headers={"Last-Event-ID": "5"}).status_code == 204
    response = get(url, headers={"Last-Event-ID": "4"})
    assert [json.loads(line)["id"] for line in response.text.splitlines()] == [5]


def test_ndjson_close_delimited_and_status(stream_server: StreamServer) -> None:
    response = get(stream_server.url("/ndjson?count=2&chunked=0"))
    assert response.headers["Connection"] == "close"
    assert len(response.text.splitlines()) == 2
    assert get(stream_server.url("/ndjson?status=503")).status_code == 503


def test_ndjson_stall_after(stream_server: StreamServer) -> None:
    with open_raw(stream_server, "/ndjson?count=5&stall_after=1") as sock:
        raw = read_until(sock, b'"line 1"}\n')
    assert b'"id": 2' not in raw


# -- /poll -------------------------------------------------------------------------------------


def test_long_poll_204_then_batches_then_204(stream_server: StreamServer) -> None:
    url = stream_server.url("/poll?count=5&per_poll=2&empty_polls=1")
    ids: List[int] = []
    statuses: List[int] = []
    with requests.Session() as session:
        for _ in range(6):
            headers = {"Last-Event-ID": str(ids[-1])} if ids else {}
            response = session.get(url, headers=headers, timeout=TIMEOUT)
            statuses.append(response.status_code)
            if response.status_code == 200:
                assert response.headers["Content-Type"] == "application/x-ndjson"
                assert int(response.headers["Content-Length"]) == len(response.content)
                ids += [json.loads(line)["id"] for line in response.text.splitlines()]
    assert statuses == [204, 200, 200, 200, 204, 204]
    assert ids == [1, 2, 3, 4, 5]


def test_long_poll_batch_and_keep_alive(stream_server: StreamServer) -> None:
    request = "GET /poll?count=7&batch=3 HTTP/1.1\r\nHost: x\r\nLast-Event-ID: {last}\r\n\r\n"
    with socket.create_connection((stream_server.host, stream_server.port), TIMEOUT) as sock:
        bodies: List[Optional[List[int]]] = []
        for last in (0, 3, 6, 7):
            sock.sendall(request.format(last=last).encode())
            raw = read_until(sock, b"\r\n\r\n")
            status, headers, body = split_response(raw)
            if status.endswith("204 No Content"):
                bodies.append(None)
                continue
            length = int(headers["content-length"])
            while len(body) < length:
                body += sock.recv(65536)
            bodies.append([json.loads(line)["id"] for line in body.decode().splitlines()])
    assert bodies == [[1, 2, 3], [4, 5, 6], [7], None]
    assert len(stream_server.requests) == 4


# -- /send and /sse-fast -------------------------------------------------------------------------


def test_send_answers_200_or_the_status_asked_for(stream_server: StreamServer) -> None:
    response = requests.post(stream_server.url("/send"), json=[1, 2], timeout=TIMEOUT)
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert requests.post(stream_server.url("/send?status=204"), timeout=TIMEOUT).status_code == 204
    assert [r.body for r in stream_server.requests] == [b"[1, 2]", b""]


@pytest.mark.parametrize("chunked", ["1", "0"])
def test_sse_fast(stream_server: StreamServer, chunked: str) -> None:
    response = get(stream_server.url(f"/sse-fast?count=3000&size=32&chunked={chunked}"))
    assert sse_ids(response.text) == list(range(1, 3001))
    assert set(sse_data(response.text)) == {"x" * 32}
    resumed = get(stream_server.url("/sse-fast?count=3000"), headers={"Last-Event-ID": "2998"})
    assert sse_ids(resumed.text) == [2999, 3000]


# -- custom routes -----------------------------------------------------------------------------


def test_custom_route_scripts_a_response(stream_server: StreamServer) -> None:
    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream", "X-Seen": request.method})
        writer.write(b"data: one\n\n")
        writer.flush()
        writer.write(b"data: two\n\n")

    stream_server.route("/custom", handler)
    response = requests.post(stream_server.url("/custom"), timeout=TIMEOUT)
    assert response.headers["X-Seen"] == "POST"
    assert response.text == "data: one\n\ndata: two\n\n"


def test_custom_route_replaces_a_builtin(stream_server: StreamServer) -> None:
    stream_server.route("/sse", lambda request, writer: writer.send_text(418, "teapot"))
    response = get(stream_server.url("/sse"))
    assert (response.status_code, response.text) == (418, "teapot")
    with pytest.raises(ValueError, match="must start with"):
        stream_server.route("relative", lambda request, writer: None)


def test_custom_route_cut_mid_chunk(stream_server: StreamServer) -> None:
    after_cut: List[Exception] = []
    route_done = threading.Event()

    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        writer.write(b"data: whole\n\n")
        writer.write_raw(b"40\r\ndata: cut sho")  # a chunk announced longer than what follows
        writer.close_abruptly()
        try:
            writer.write(b"more")
        except OSError as exc:
            after_cut.append(exc)
        route_done.set()

    stream_server.route("/cut", handler)
    with open_raw(stream_server, "/cut") as sock:
        raw = read_until_eof(sock)
    assert raw.endswith(b"\r\n40\r\ndata: cut sho")
    assert route_done.wait(TIMEOUT)
    assert len(after_cut) == 1 and isinstance(after_cut[0], BrokenPipeError)


def test_custom_route_writes_garbage_instead_of_http(stream_server: StreamServer) -> None:
    stream_server.route("/garbage", lambda r, w: w.write_raw(b"NOT HTTP AT ALL\r\n\r\n"))
    with pytest.raises(requests.exceptions.ConnectionError):
        get(stream_server.url("/garbage"))


def test_custom_route_reset(stream_server: StreamServer) -> None:
    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        writer.close_abruptly(reset=True)

    stream_server.route("/reset", handler)
    with pytest.raises(requests.exceptions.RequestException):
        get(stream_server.url("/reset"))


def _sends_nothing(request: RecordedRequest, writer: StreamWriter) -> None:
    pass


def _raises(request: RecordedRequest, writer: StreamWriter) -> None:
    raise ZeroDivisionError


def _raises_http_error(request: RecordedRequest, writer: StreamWriter) -> None:
    raise HTTPError(409, "conflict")


@pytest.mark.parametrize(
    "handler, status", [(_sends_nothing, 500), (_raises, 500), (_raises_http_error, 409)]
)
def test_route_errors_become_responses(
    stream_server: StreamServer, handler: Any, status: int
) -> None:
    stream_server.route("/broken", handler)
    response = get(stream_server.url("/broken"))
    assert response.status_code == status
    assert response.headers["Connection"] == "close"


def test_route_failing_mid_stream_cuts_the_response(stream_server: StreamServer) -> None:
    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        writer.send_status(200, {"Content-Type": "text/event-stream"})
        writer.write(b"data: one\n\n")
        raise RuntimeError("boom")

    stream_server.route("/boom", handler)
    with pytest.raises(requests.exceptions.ChunkedEncodingError):
        get(stream_server.url("/boom"))


def test_writer_misuse_is_an_error(stream_server: StreamServer) -> None:
    problems: List[str] = []
    route_done = threading.Event()

    def handler(request: RecordedRequest, writer: StreamWriter) -> None:
        try:
            writer.write(b"too early")
        except RuntimeError as exc:
            problems.append(str(exc))
        writer.send_status(200, {"Content-Length": "0"})
        try:
            writer.send_status(200)
        except RuntimeError as exc:
            problems.append(str(exc))
        route_done.set()

    stream_server.route("/misuse", handler)
    assert get(stream_server.url("/misuse")).status_code == 200
    assert route_done.wait(TIMEOUT)
    assert problems == [
        "send_status() must come before write()",
        "the status of this response was already sent",
    ]


def test_many_clients_at_once(stream_server: StreamServer) -> None:
    results: Dict[int, List[int]] = {}

    def client(n: int) -> None:
        results[n] = sse_ids(get(stream_server.url(f"/sse?count={n}&delay=0.001")).text)

    threads = [threading.Thread(target=client, args=(n,)) for n in range(1, 9)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT)
    assert results == {n: list(range(1, n + 1)) for n in range(1, 9)}


# -- close() -----------------------------------------------------------------------------------


def close_in_thread(server: StreamServer) -> None:
    """close() must return promptly; a generous bound keeps a hang from stalling the suite."""
    closer = threading.Thread(target=server.close)
    closer.start()
    closer.join(10.0)
    assert not closer.is_alive(), "StreamServer.close() did not return"


@pytest.fixture
def server() -> Iterator[StreamServer]:
    srv = StreamServer()
    yield srv
    srv.close()


def test_close_while_a_client_is_connected_to_a_stalled_handler(server: StreamServer) -> None:
    with open_raw(server, "/sse?count=10&stall_after=2") as sock:
        raw = read_until(sock, b"data: event 2\n\n")
        close_in_thread(server)
        raw += read_until_eof(sock)  # the server cut the connection
    assert sse_ids(dechunk(split_response(raw)[2])[0].decode()) == [1, 2]
    assert server_threads() == []
    assert server.closed and "closed" in repr(server)


def test_close_while_streaming_to_a_client_that_does_not_read(server: StreamServer) -> None:
    with open_raw(server, "/sse-fast?count=1000000000&size=1000") as sock:
        read_until(sock, b"data: ")
        close_in_thread(server)  # the handler is blocked writing into full socket buffers
    assert server_threads() == []


def test_close_during_delays_idle_keep_alive_and_held_connections(
    server: StreamServer, wait_until: Callable[..., Any]
) -> None:
    with requests.Session() as session:
        session.get(server.url("/send"), timeout=TIMEOUT)  # leaves an idle keep-alive connection
        with (
            open_raw(server, "/ndjson?count=100&delay=60") as slow,
            open_raw(server, "/sse?count=1&end=hold") as held,
            socket.create_connection((server.host, server.port), TIMEOUT) as silent,
        ):
            read_until(slow, b'"line 1"}\n')
            read_until(held, b"data: event 1\n\n")
            server.wait_for_requests(3)
            wait_until(lambda: len(server_threads()) == 5, message="4 connections accepted")
            close_in_thread(server)
            for sock in (slow, held, silent):
                read_until_eof(sock)
    assert server_threads() == []


def test_close_is_idempotent_and_stops_accepting(server: StreamServer) -> None:
    port = server.port
    get(server.url("/send"))
    server.close()
    server.close()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), TIMEOUT).close()
    assert server_threads() == []


def test_no_thread_left_after_a_busy_server() -> None:
    with StreamServer() as srv:
        for path in ("/sse?count=5", "/ndjson?count=5", "/poll", "/sse-fast?count=100"):
            get(srv.url(path))
        assert all(t.daemon for t in server_threads())
    assert server_threads() == []


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM])
def test_module_runs_the_server_in_the_foreground(stop_signal: int) -> None:
    command = [sys.executable, "-m", "aikit_transports.testing", "--port", "0"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr is not None
            first_line = process.stderr.readline()
            match = re.search(r"(http://127\.0\.0\.1:\d+)", first_line)
            assert match, first_line
            response = get(match.group(1) + "/sse?count=2")
            assert sse_ids(response.text) == [1, 2]
            process.send_signal(stop_signal)  # SIGINT: as Ctrl-C
            assert process.wait(TIMEOUT) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()


def test_module_serves_websocket_on_the_next_port() -> None:
    command = [sys.executable, "-m", "aikit_transports.testing", "--port", "0"]
    with subprocess.Popen(command, stderr=subprocess.PIPE, text=True) as process:
        try:
            assert process.stderr is not None
            lines = iter(process.stderr.readline, "")
            http = next(m for m in map(re.compile(r"(http://127\.0\.0\.1:\d+)").search, lines) if m)
            ws = next(m for m in map(re.compile(r"WebSocket .* (ws://\S+)").search, lines) if m)
            printed = {next(lines).split("try ")[1].split()[0] for _ in range(4)}
            assert printed == {
                ws.group(1) + path
                for path in (
                    "/echo",
                    "/stream?count=20&interval=0.5",
                    "/stream?count=50&drop_every=10",
                    "/drop?after=3",
                )
            }
            conn = websocket.create_connection(ws.group(1) + "/echo", timeout=TIMEOUT)
            try:
                conn.send("ping")
                assert conn.recv() == "ping"
            finally:
                conn.close()
            hint = get(http.group(1) + "/ws")
            assert hint.status_code == 404 and f"{ws.group(1)}/echo" in hint.text
            process.send_signal(signal.SIGTERM)
            assert process.wait(TIMEOUT) == 0
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
