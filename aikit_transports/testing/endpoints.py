"""The built-in endpoints of the test server, each scripted by its query parameters.

=============  ===============================================================================
``/sse``       SSE events ``id: <i>`` / ``data: <payload>``, ids ``1..count``, resumed from
               ``Last-Event-ID``; faults and endings chosen by parameters (see :func:`sse`)
``/ndjson``    the same stream as NDJSON lines ``{"id": i, "data": "..."}``
``/poll``      long-poll: the next batch of NDJSON lines after ``Last-Event-ID``, or 204
``/llm``       an LLM-style streamed answer (OpenAI or Anthropic style), to any method
``/send``      records the body, answers 200 (or the ``status`` asked for)
``/sse-fast``  pre-rendered SSE written in 64 KiB pieces, so benchmarks never wait on the server
=============  ===============================================================================

Shared stream parameters (all optional): ``count`` (events in all, default 10), ``size``
(minimum payload bytes), ``delay`` (seconds between events), ``drop_every=k`` (cut the
connection after ``k`` events of that connection), ``stall_after=k`` (after ``k`` events of that
connection send nothing more but keep it open), ``status`` (answer this status instead, with
``retry_after`` as ``Retry-After``), ``content_type``, ``chunked=1|0`` (chunked, or a body that
ends when the connection closes) and ``end``: ``eof`` (end the body after the last event),
``hold`` (keep the connection open after it), ``204`` (the same as ``eof``: kept for old URLs)
and, for SSE, ``sentinel`` (a final ``data: [DONE]``). Bad values get a 400. A client that
resumes after the last event (``Last-Event-ID`` at or past ``count``) gets 204, so that every
stream ends by itself: a browser's ``EventSource`` and this library's GET streams stop there.
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

from .exchange import HTTPError, RecordedRequest, RouteHandler, StreamWriter

__all__ = ["builtin_routes", "sse", "ndjson", "llm", "send", "sse_fast", "LongPoll"]

_TRUE = ("1", "true", "yes", "on")
_FALSE = ("0", "false", "no", "off")
_FAST_WRITE_BYTES = 64 * 1024


class _Params:
    """Typed access to query parameters; a bad value is a 400 that names the parameter."""

    def __init__(self, query: Mapping[str, str]) -> None:
        self._query = query

    def _bad(self, name: str, expected: str) -> HTTPError:
        return HTTPError(400, f"query parameter {name}={self._query[name]!r}: expected {expected}")

    def integer(self, name: str, default: int, *, minimum: int = 0) -> int:
        value = self.optional_integer(name, minimum=minimum)
        return default if value is None else value

    def optional_integer(self, name: str, *, minimum: int = 0) -> Optional[int]:
        raw = self._query.get(name, "")
        if raw == "":
            return None
        try:
            value = int(raw)
        except ValueError:
            raise self._bad(name, "an integer") from None
        if value < minimum:
            raise self._bad(name, f"an integer >= {minimum}")
        return value

    def number(self, name: str, default: float) -> float:
        raw = self._query.get(name, "")
        if raw == "":
            return default
        try:
            value = float(raw)
        except ValueError:
            raise self._bad(name, "a number") from None
        if not 0 <= value < float("inf"):
            raise self._bad(name, "a number >= 0")
        return value

    def flag(self, name: str, default: bool) -> bool:
        raw = self._query.get(name, "").lower()
        if raw == "":
            return default
        if raw in _TRUE:
            return True
        if raw in _FALSE:
            return False
        raise self._bad(name, "1 or 0")

    def choice(self, name: str, default: str, choices: Sequence[str]) -> str:
        raw = self._query.get(name, "")
        if raw == "":
            return default
        if raw not in choices:
            raise self._bad(name, "one of " + ", ".join(choices))
        return raw

    def text(self, name: str, default: str) -> str:
        return self._query.get(name) or default


@dataclass(frozen=True)
class _StreamScript:
    """What the shared stream parameters ask for."""

    count: int
    size: int
    delay: float
    drop_every: Optional[int]
    stall_after: Optional[int]
    end: str
    chunked: bool

    @classmethod
    def parse(cls, params: _Params, ends: Sequence[str]) -> _StreamScript:
        return cls(
            count=params.integer("count", 10),
            size=params.integer("size", 0),
            delay=params.number("delay", 0.0),
            drop_every=params.optional_integer("drop_every", minimum=1),
            stall_after=params.optional_integer("stall_after"),
            end=params.choice("end", "eof", ends),
            chunked=params.flag("chunked", True),
        )


def _first_id(request: RecordedRequest) -> int:
    """The id to start from: one past a numeric ``Last-Event-ID``, else 1."""
    try:
        return max(1, int(request.headers.get("Last-Event-ID", "")) + 1)
    except ValueError:
        return 1


def _reject_if_asked(params: _Params, writer: StreamWriter) -> bool:
    """Answer the ``status`` parameter (with ``retry_after``) instead of a stream, if it asks."""
    status = params.integer("status", 200, minimum=100)
    if status == 200:
        return False
    if status > 599:
        raise HTTPError(400, f"query parameter status={status}: expected 100..599")
    extra = {}
    retry_after = params.text("retry_after", "")
    if retry_after:
        extra["Retry-After"] = retry_after
    writer.send_text(status, f"status {status} as requested", extra)
    return True


def _stream(
    writer: StreamWriter, script: _StreamScript, first: int, render: Callable[[int], bytes]
) -> bool:
    """Write events ``first..count`` with the script's delays and faults.

    Returns True when every event was written, False when the script cut or stalled the
    connection (the response is then over) or the server is closing.
    """
    for sent, i in enumerate(range(first, script.count + 1)):  # ``sent``: written before ``i``
        if script.stall_after is not None and sent >= script.stall_after:
            writer.hold()
            writer.close_abruptly()
            return False
        if sent and script.delay and not writer.sleep(script.delay):
            writer.close_abruptly()
            return False
        writer.write(render(i))
        if script.drop_every is not None and sent + 1 == script.drop_every and i < script.count:
            writer.close_abruptly()
            return False
    return True


def _finish(writer: StreamWriter, script: _StreamScript) -> None:
    """The ``end`` modes that need more than ending the body."""
    if script.end == "hold":
        writer.hold()
        writer.close_abruptly()


def _padded(text: str, size: int) -> str:
    return text.ljust(size, "x")


# -- /sse -------------------------------------------------------------------------------------


def sse(request: RecordedRequest, writer: StreamWriter) -> None:
    """``/sse``: events ``id: <i>`` / ``data: <payload>``; see the module docstring.

    Extra parameters: ``data`` (``text``: ``event <i>``, or ``json``: ``{"i": i, ...}``),
    ``retry`` (ms, sent first as a ``retry:`` field), ``comment_every=k`` (a ``: keep-alive``
    comment after every event whose id is a multiple of ``k``).

    :param request: the request (its query parameters script the stream).
    :param writer: the response.
    """
    params = _Params(request.query)
    script = _StreamScript.parse(params, ("eof", "sentinel", "204", "hold"))
    data = params.choice("data", "text", ("text", "json"))
    retry = params.optional_integer("retry")
    comment_every = params.optional_integer("comment_every", minimum=1)
    content_type = params.text("content_type", "text/event-stream")
    if _reject_if_asked(params, writer):
        return
    first = _first_id(request)
    if first > script.count:  # resumed after the last event: the stream is over
        writer.send_status(204)
        return
    writer.send_status(
        200, {"Content-Type": content_type, "Cache-Control": "no-cache"}, chunked=script.chunked
    )
    if retry is not None:
        writer.write(b"retry: %d\n\n" % retry)

    def render(i: int) -> bytes:
        if data == "json":
            payload = _json_payload(i, script.size)
        else:
            payload = _padded(f"event {i}", script.size)
        block = f"id: {i}\ndata: {payload}\n\n"
        if comment_every is not None and i % comment_every == 0:
            block += ": keep-alive\n\n"
        return block.encode()

    if _stream(writer, script, first, render):
        if script.end == "sentinel":
            writer.write(b"data: [DONE]\n\n")
        _finish(writer, script)


def _json_payload(i: int, size: int) -> str:
    payload = json.dumps({"i": i})
    missing = size - len(payload) - len(', "pad": ""')
    if missing > 0:
        payload = json.dumps({"i": i, "pad": "x" * missing})
    return payload


# -- /ndjson ----------------------------------------------------------------------------------


def _ndjson_line(i: int, size: int, eol: bytes = b"\n") -> bytes:
    return json.dumps({"id": i, "data": _padded(f"line {i}", size)}).encode() + eol


def ndjson(request: RecordedRequest, writer: StreamWriter) -> None:
    """``/ndjson``: lines ``{"id": i, "data": "..."}``; see the module docstring.

    Extra parameters: ``malformed_every=k`` (a malformed line after every line whose id is a
    multiple of ``k``), ``crlf=1`` (CRLF line ends).

    :param request: the request (its query parameters script the answer).
    :param writer: the response.
    """
    params = _Params(request.query)
    script = _StreamScript.parse(params, ("eof", "204", "hold"))
    malformed_every = params.optional_integer("malformed_every", minimum=1)
    eol = b"\r\n" if params.flag("crlf", False) else b"\n"
    content_type = params.text("content_type", "application/x-ndjson")
    if _reject_if_asked(params, writer):
        return
    first = _first_id(request)
    if first > script.count:  # resumed after the last line: the stream is over
        writer.send_status(204)
        return
    writer.send_status(200, {"Content-Type": content_type}, chunked=script.chunked)

    def render(i: int) -> bytes:
        line = _ndjson_line(i, script.size, eol)
        if malformed_every is not None and i % malformed_every == 0:
            line += b'{"malformed after": %d' % i + eol
        return line

    if _stream(writer, script, first, render):
        _finish(writer, script)


# -- /poll ------------------------------------------------------------------------------------


class LongPoll:
    """``/poll``: each request returns the lines after ``Last-Event-ID`` that are available yet.

    Parameters: ``count`` (events in all, default 10), ``batch`` (most lines per answer, default
    100), ``per_poll`` (events that become available with each poll, default all at once),
    ``empty_polls`` (the first polls that make nothing available, default 0), ``size``,
    ``status``, ``chunked`` (``1``: each line in an HTTP chunk of its own, default ``0``).
    Availability is counted per query string, so each test's stream is its own.
    Answers: 200 ``application/x-ndjson`` with ``Content-Length`` or chunked (the connection
    stays open for the next poll either way), or 204 when nothing is new.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._streams: Dict[Tuple[Tuple[str, str], ...], Tuple[int, int]] = {}  # polls, released

    def __call__(self, request: RecordedRequest, writer: StreamWriter) -> None:
        params = _Params(request.query)
        count = params.integer("count", 10)
        batch = params.integer("batch", 100, minimum=1)
        per_poll = params.integer("per_poll", count)
        empty_polls = params.integer("empty_polls", 0)
        size = params.integer("size", 0)
        if _reject_if_asked(params, writer):
            return
        key = tuple(sorted(request.query.items()))
        with self._lock:
            polls, released = self._streams.get(key, (0, 0))
            polls += 1
            if polls > empty_polls:
                released = min(count, released + per_poll)
            self._streams[key] = (polls, released)
        first = _first_id(request)
        last = min(released, first + batch - 1)
        if first > last:
            writer.send_status(204)
            return
        lines = [_ndjson_line(i, size) for i in range(first, last + 1)]
        if params.flag("chunked", False):
            writer.send_status(200, {"Content-Type": "application/x-ndjson"}, chunked=True)
            for line in lines:
                writer.write(line)
            return
        body = b"".join(lines)
        writer.send_status(
            200, {"Content-Type": "application/x-ndjson", "Content-Length": str(len(body))}
        )
        writer.write(body)


# -- /llm -------------------------------------------------------------------------------------

LLM_TOKENS = ("Hello", ",", " world", "!", " How", " are", " you", "?")


def llm(request: RecordedRequest, writer: StreamWriter) -> None:
    """``/llm``: the answer ``Hello, world! How are you?`` streamed token by token, to any
    method, as LLM APIs stream.

    ``style=openai`` (default): ``data: {"choices": [{"delta": {"content": "..."}}]}`` blocks,
    then ``data: [DONE]``. ``style=anthropic``: ``event: content_block_delta`` blocks with
    ``{"delta": {"text": "..."}}``, then ``event: message_stop``, then the body ends.
    ``ids=1`` numbers the tokens (``id:``) and resumes after ``Last-Event-ID``; ``cut_after=k``
    cuts a response that did not resume after ``k`` tokens; ``delay`` between tokens.
    """
    params = _Params(request.query)
    style = params.choice("style", "openai", ("openai", "anthropic"))
    with_ids = params.flag("ids", False)
    cut_after = params.optional_integer("cut_after", minimum=1)
    delay = params.number("delay", 0.0)
    if _reject_if_asked(params, writer):
        return
    resumed = with_ids and "Last-Event-ID" in request.headers
    first = _first_id(request) if with_ids else 1
    writer.send_status(200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    for sent, i in enumerate(range(first, len(LLM_TOKENS) + 1)):
        if sent and delay and not writer.sleep(delay):
            writer.close_abruptly()
            return
        token = LLM_TOKENS[i - 1]
        if style == "openai":
            block = f"data: {json.dumps({'choices': [{'delta': {'content': token}}]})}\n\n"
        else:
            block = (
                f"event: content_block_delta\ndata: {json.dumps({'delta': {'text': token}})}\n\n"
            )
        writer.write(((f"id: {i}\n" if with_ids else "") + block).encode())
        if cut_after is not None and not resumed and sent + 1 == cut_after:
            writer.close_abruptly()
            return
    if style == "openai":
        writer.write(b"data: [DONE]\n\n")
    else:
        writer.write(b'event: message_stop\ndata: {"type": "message_stop"}\n\n')


# -- /send ------------------------------------------------------------------------------------


def send(request: RecordedRequest, writer: StreamWriter) -> None:
    """``/send``: the body is recorded like every request's; answers 200 ``{"ok": true}``, or
    the ``status`` asked for (``204`` for no body).

    :param request: the request (its query parameters script the answer).
    :param writer: the response.
    """
    params = _Params(request.query)
    if _reject_if_asked(params, writer):
        return
    body = b'{"ok": true}'
    writer.send_status(200, {"Content-Type": "application/json", "Content-Length": str(len(body))})
    writer.write(body)


# -- /sse-fast --------------------------------------------------------------------------------


def sse_fast(request: RecordedRequest, writer: StreamWriter) -> None:
    """``/sse-fast?count=N&size=S``: ``count`` events of ``size`` payload bytes, rendered in
    batches and written 64 KiB at a time, for benchmarks. Resumes from ``Last-Event-ID``;
    ``chunked=0`` for a close-delimited body.

    :param request: the request (its query parameters script the stream).
    :param writer: the response.
    """
    params = _Params(request.query)
    count = params.integer("count", 10)
    size = params.integer("size", 16)
    chunked = params.flag("chunked", True)
    writer.send_status(
        200, {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}, chunked=chunked
    )
    data = "x" * size
    per_write = max(1, _FAST_WRITE_BYTES // (size + 24))
    first = _first_id(request)
    while first <= count and not writer.closing:
        last = min(count, first + per_write - 1)
        writer.write(
            "".join([f"id: {i}\ndata: {data}\n\n" for i in range(first, last + 1)]).encode()
        )
        first = last + 1


def builtin_routes() -> Dict[str, RouteHandler]:
    """A fresh set of the built-in routes (``/poll`` keeps state, so one set per server)."""
    return {
        "/sse": sse,
        "/ndjson": ndjson,
        "/llm": llm,
        "/poll": LongPoll(),
        "/send": send,
        "/sse-fast": sse_fast,
    }
