"""Django integration: relay a stream to the browser as Server-Sent Events, and one
:class:`~aikit_transports.TransportManager` per process. Needs the ``django`` extra.

``sse_response(source)`` turns a transport (or any iterable of events) into a
``StreamingHttpResponse`` of ``text/event-stream``; when the browser goes away the server closes
the response, and the relay closes the source. ``get_manager()`` is the process-wide manager,
created lazily (after a pre-forking server forked, never at import time) and shut down at exit.

How the browser's departure is noticed: a WSGI server finds out when a write fails, so the
keep-alive comments (every ``keepalive`` seconds of silence) bound how long an abandoned
upstream stays open. Under ASGI (Django >= 5.0 cancels the response when the client
disconnects) the response streams through ``async for`` and the source closes at once.
"""

from __future__ import annotations

import atexit
import base64
import json
import logging
import os
import queue
import re
import threading
import types
from collections.abc import AsyncIterator, Iterable, Iterator, Mapping
from typing import Any, Optional, Union

try:
    from django.http import StreamingHttpResponse
except ImportError as exc:  # the extra is not installed
    raise ModuleNotFoundError(
        "aikit_transports.contrib.django needs Django: pip install 'aikit-transports[django]'",
        name=exc.name,
    ) from exc

from ..buffer import MessageBuffer
from ..config import BufferConfig
from ..errors import TransportClosedError, TransportError
from ..events import Event
from ..logs import server_text
from ..manager import TransportManager
from ..redact import describe_exception
from ..transports.base import BaseTransport

__all__ = ["sse_response", "get_manager", "encode_sse", "KEEPALIVE_COMMENT"]

log = logging.getLogger("aikit_transports.django")

#: What the relay writes after ``keepalive`` seconds without an event.
KEEPALIVE_COMMENT = b": keep-alive\n\n"

#: Items an iterable source may run ahead of a slow browser (read on the relay's helper thread).
_RELAY_QUEUE_SIZE = 64

#: An error is logged by at most this many characters (it may quote what a server sent).
_LOGGED_ERROR_CHARS = 1000

_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_FIELD_UNSAFE = re.compile(r"[\r\n\x00]")


def encode_sse(event: Any) -> bytes:
    """One SSE block for ``event``: ``id:`` (when set), ``event:`` (when not ``"message"``),
    then one ``data:`` line per line of its data, and a blank line.

    ``str`` data is sent as it is; ``bytes`` as ``{"base64": "..."}`` and any other value as
    JSON (``default=str``). Anything that is not an :class:`~aikit_transports.Event` is sent as
    the data of a ``message``. CR, LF and NUL are removed from ids and types, which cannot hold
    them.

    :param event: an :class:`~aikit_transports.Event`, or any value to send as data.
    """
    if not isinstance(event, Event):
        event = Event(data=event)
    lines = []
    if event.id is not None:
        lines.append(f"id: {_FIELD_UNSAFE.sub('', event.id)}\n")
    kind = _FIELD_UNSAFE.sub("", event.type or "")
    if kind and kind != "message":
        lines.append(f"event: {kind}\n")
    data = event.data
    if isinstance(data, (bytes, bytearray, memoryview)):
        data = {"base64": base64.b64encode(bytes(data)).decode("ascii")}
    if not isinstance(data, str):
        data = json.dumps(data, ensure_ascii=False, separators=(",", ":"), default=str)
    lines.extend(f"data: {line}\n" for line in _LINE_BREAK.split(data))
    lines.append("\n")
    return "".join(lines).encode("utf-8")


def sse_response(
    source: Union[BaseTransport, Iterable[Any]],
    *,
    keepalive: Optional[float] = 15.0,
    headers: Optional[Mapping[str, str]] = None,
    close_source: bool = True,
) -> StreamingHttpResponse:
    """A ``StreamingHttpResponse`` of ``text/event-stream`` that relays ``source`` to the browser.

    ``source`` is a transport (its events are iterated; it is connected first if it is idle) or
    any iterable of :class:`~aikit_transports.Event` (other items are sent as ``message`` data).
    Each event becomes one SSE block (see :func:`encode_sse`); after ``keepalive`` seconds
    without one, a ``: keep-alive`` comment goes out (``None``: never). The response carries
    ``Cache-Control: no-cache`` and ``X-Accel-Buffering: no``; ``headers`` adds or replaces.

    When the browser goes away, or the stream ends, the relay stops reading and, with
    ``close_source`` (the default), closes the source: pass ``close_source=False`` for a
    transport shared by several responses (one from :func:`get_manager`). A transport that
    cannot connect raises its error here, before any byte is sent (so the view can answer with
    an error status); a failure in the middle ends the response (logged on the
    ``aikit_transports.django`` logger).

    :param source: a transport, or any iterable of events.
    :param keepalive: seconds without an event before a ``: keep-alive`` comment (``None``:
        never).
    :param headers: response headers to add or replace.
    :param close_source: close the source when the response ends.
    """
    if keepalive is not None and (
        isinstance(keepalive, bool) or not isinstance(keepalive, (int, float)) or keepalive <= 0
    ):
        raise ValueError(
            f"keepalive must be a positive number of seconds or None, not {keepalive!r}"
        )
    relay = _Relay(source, keepalive, close_source)
    response = _SSEStreamingResponse(relay, content_type="text/event-stream; charset=utf-8")
    response._relay = relay
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"
    for name, value in (headers or {}).items():
        response[name] = value
    return response


class _SSEStreamingResponse(StreamingHttpResponse):  # type: ignore[misc]
    """``StreamingHttpResponse`` that also streams under ASGI, one event at a time.

    Django consumes a synchronous iterator whole before sending it under ASGI, which would never
    end for a live stream; here each chunk is read on a worker thread instead, and the relay is
    closed when Django cancels the response (the client disconnected).
    """

    _relay: _Relay

    async def __aiter__(self) -> AsyncIterator[bytes]:
        relay = self._relay
        if self._iterator is not relay:  # a middleware wrapped the content: Django's own way
            async for part in super().__aiter__():
                yield part
            return
        from asgiref.sync import sync_to_async

        step = sync_to_async(relay.next_chunk, thread_sensitive=False)
        try:
            while True:
                chunk = await step()
                if chunk is None:
                    return
                yield chunk
        finally:
            await sync_to_async(relay.close, thread_sensitive=False)()


class _Relay(Iterator[bytes]):
    """The body of an SSE response: SSE bytes for each event of the source, keep-alives between.

    A transport is read in the server's thread with ``iter_events(timeout=keepalive)``. Another
    iterable is read on a helper thread (``aikit-django-relay``) into a small queue, so that
    keep-alives go out while it blocks; a list or tuple (nothing to wait for), or any iterable
    when ``keepalive`` is ``None``, is read directly.
    """

    def __init__(
        self,
        source: Union[BaseTransport, Iterable[Any]],
        keepalive: Optional[float],
        close_source: bool,
    ) -> None:
        self._source: Any = source
        self._keepalive = keepalive
        self._close_source = close_source
        self._lock = threading.Lock()
        self._closed = False
        self._queue: Optional[MessageBuffer[Any]] = None
        self._pump: Optional[threading.Thread] = None
        self._pump_error: Optional[BaseException] = None
        self._transport: Optional[BaseTransport] = None
        self._items: Iterator[Any]
        if isinstance(source, BaseTransport):
            self._transport = source
            # Registered at once: nothing that arrives from now on is missed.
            self._items = source.iter_events(timeout=keepalive)
            failure = source._failure
            if failure is not None:  # it could not connect: say why, now
                self.close()
                raise failure
        else:
            self._items = iter(source)
            if keepalive is not None and not isinstance(source, (list, tuple)):
                self._queue = MessageBuffer(BufferConfig(max_size=_RELAY_QUEUE_SIZE))

    def __iter__(self) -> _Relay:
        return self

    def __next__(self) -> bytes:
        chunk = self.next_chunk()
        if chunk is None:
            raise StopIteration
        return chunk

    def next_chunk(self) -> Optional[bytes]:
        """The next piece of the body: an SSE block or a keep-alive; ``None`` at the end."""
        if self._closed:
            return None
        if self._queue is not None:
            return self._next_from_queue(self._queue)
        try:
            item = next(self._items)
        except TimeoutError:
            return KEEPALIVE_COMMENT
        except StopIteration:
            self.close()
            return None
        except Exception as exc:
            self._source_failed(exc)
            return None
        return encode_sse(item)

    def _next_from_queue(self, queue_: MessageBuffer[Any]) -> Optional[bytes]:
        if self._pump is None:
            self._start_pump()
        try:
            item = queue_.get(timeout=self._keepalive)
        except queue.Empty:
            return KEEPALIVE_COMMENT
        except TransportClosedError:  # the source ended (or failed), and everything was sent
            error = self._pump_error
            if error is not None:
                self._source_failed(error)
            else:
                self.close()
            return None
        return encode_sse(item)

    def _source_failed(self, exc: BaseException) -> None:
        if isinstance(exc, TransportError):
            log.warning(
                "upstream stream failed, ending the response: %s",
                server_text(exc, _LOGGED_ERROR_CHARS),
            )
        else:
            log.error(
                "the event source raised %s, ending the response",
                describe_exception(exc),
                exc_info=exc,
            )
        self.close()

    def _start_pump(self) -> None:
        with self._lock:
            if self._pump is not None or self._closed:
                return
            self._pump = threading.Thread(
                target=self._run_pump, name="aikit-django-relay", daemon=True
            )
        self._pump.start()

    def _run_pump(self) -> None:
        """Helper thread: move the source's items into the queue until it ends or we close."""
        queue_ = self._queue
        assert queue_ is not None
        try:
            for item in self._items:
                queue_.put(item)  # waits for room; TransportClosedError once the relay closed
        except TransportClosedError:
            pass
        except BaseException as exc:
            self._pump_error = exc
        finally:
            queue_.close()
            if self._closed and self._close_source:
                _close_quietly(self._source)  # on the thread that iterates it: always allowed

    def close(self) -> None:
        """Stop relaying and, with ``close_source``, close the source; idempotent.

        Django calls it (through the response's ``close()``) when the response ends, also when
        the browser went away.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            pump = self._pump
        transport = self._transport
        if transport is not None:
            close_iterator = getattr(self._items, "close", None)
            if close_iterator is not None:
                close_iterator()  # this consumer leaves a shared transport at once
            if self._close_source:
                transport.close()
            return
        if self._queue is not None:
            self._queue.close()
        if not self._close_source:
            return
        if pump is not None and pump.is_alive() and isinstance(self._source, types.GeneratorType):
            return  # a running generator is closed by the helper thread when it yields next
        _close_quietly(self._source)


def _close_quietly(source: Any) -> None:
    close = getattr(source, "close", None)
    if close is None:
        return
    try:
        close()
    except ValueError:  # "generator already executing": its own thread closes it later
        pass
    except Exception as exc:
        log.warning("closing the event source failed: %s", describe_exception(exc))


# -- the process-wide manager ------------------------------------------------------------------

_manager: Optional[TransportManager] = None
_manager_pid: Optional[int] = None
_manager_options: dict[str, Any] = {}
_manager_lock = threading.Lock()
_exiting = False
_atexit_registered = False

_MISSING = object()


def get_manager(**options: Any) -> TransportManager:
    """The process-wide :class:`~aikit_transports.TransportManager`, created on first use.

    Created once per process, thread-safely, with ``options`` (on top of the
    ``AIKIT_TRANSPORTS_MANAGER`` dict of Django settings, when there is one), and shut down at
    interpreter exit. Later calls return the same manager: calling again with an option that
    differs from the one it was created with raises ``ValueError`` rather than being ignored. A
    forked child process (pre-forking servers) gets a manager of its own on first use, and so
    does a process whose manager was shut down by hand.

    :param options: keyword arguments of :class:`~aikit_transports.TransportManager`.
    """
    manager = _manager
    if manager is None or _manager_pid != os.getpid() or (manager.closed and not _exiting):
        manager = _create_manager(options)
    _check_options(options)
    return manager


def _create_manager(options: Mapping[str, Any]) -> TransportManager:
    global _manager, _manager_pid, _manager_options, _atexit_registered
    with _manager_lock:
        manager = _manager
        pid = os.getpid()
        if manager is not None and _manager_pid == pid and (not manager.closed or _exiting):
            return manager  # another thread created it meanwhile
        merged = {**_settings_options(), **options}
        # After a fork the parent's manager is dropped, not shut down: its threads are not here.
        manager = TransportManager(**merged)
        _manager, _manager_pid, _manager_options = manager, pid, merged
        if not _atexit_registered:
            atexit.register(_shutdown_at_exit)
            _atexit_registered = True
        log.debug("created the process-wide manager (%s)", merged or "defaults")
        return manager


def _check_options(options: Mapping[str, Any]) -> None:
    differing = sorted(k for k, v in options.items() if _manager_options.get(k, _MISSING) != v)
    if differing:
        current = ", ".join(f"{k}={_manager_options.get(k)!r}" for k in differing)
        raise ValueError(
            f"get_manager(): the process-wide manager already exists with {current}; pass "
            "options on the first call only, or in settings.AIKIT_TRANSPORTS_MANAGER"
        )


def _settings_options() -> dict[str, Any]:
    """``settings.AIKIT_TRANSPORTS_MANAGER``, when Django settings are configured and hold it."""
    from django.conf import settings

    if not settings.configured:
        return {}
    value = getattr(settings, "AIKIT_TRANSPORTS_MANAGER", None) or {}
    if not isinstance(value, Mapping):
        raise ValueError("settings.AIKIT_TRANSPORTS_MANAGER must be a dict of manager options")
    return dict(value)


def _shutdown_at_exit() -> None:
    global _exiting
    _exiting = True
    manager = _manager
    if manager is not None and _manager_pid == os.getpid():
        manager.shutdown(timeout=2.0)


def _reset_manager() -> None:
    """Shut the process-wide manager down and forget it (for tests)."""
    global _manager, _manager_pid, _manager_options
    with _manager_lock:
        manager, _manager, _manager_pid, _manager_options = _manager, None, None, {}
    if manager is not None:
        manager.shutdown()
