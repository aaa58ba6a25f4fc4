"""Logging: one hierarchy under ``aikit_transports``, and ``debug=True`` for one transport.

Loggers: ``aikit_transports.sse``, ``.websocket``, ``.http_stream`` (one per wire),
``.manager``, ``.django``, ``.redis`` and ``aikit_transports`` itself. The library only adds a
``NullHandler``: configure logging as usual to see its lines (``INFO``: connects and
reconnects; ``WARNING``: every error; ``DEBUG``: the wire).

A transport created with ``debug=True`` logs its wire-level ``DEBUG`` lines (requests and
handshakes with their headers, responses, bytes read, events, state changes) whatever the
level of its logger, so one stream can be traced in a busy process. They go to the handlers
that logging is configured with; when there are none, to stderr. Credentials never appear:
URLs and headers are redacted by :mod:`aikit_transports.redact`.
"""

from __future__ import annotations

import logging
import sys
from typing import Any, Optional

__all__ = ["TransportLog", "snippet", "server_text"]

_stderr_handler: Optional[logging.Handler] = None


def _fallback_handler() -> logging.Handler:
    """A stderr handler for ``debug=True`` when logging is not configured at all."""
    global _stderr_handler
    if _stderr_handler is None:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        _stderr_handler = handler
    return _stderr_handler


def _has_handlers(logger: logging.Logger) -> bool:
    """Whether a record of ``logger`` reaches a handler that is not a ``NullHandler``."""
    current: Optional[logging.Logger] = logger
    while current is not None:
        if any(not isinstance(h, logging.NullHandler) for h in current.handlers):
            return True
        if not current.propagate:
            return False
        current = current.parent
    return False


def snippet(data: Any, limit: int = 200) -> str:
    """``repr(data)`` cut to ``limit`` characters, for debug lines."""
    text = repr(data)
    return text if len(text) <= limit else f"{text[: limit - 3]}..."


_CONTROL = {c: f"\\x{c:02x}" for c in (*range(0x20), *range(0x7F, 0xA0))}
_CONTROL.update({0x09: "\\t", 0x0A: "\\n", 0x0D: "\\r"})


def server_text(text: object, limit: int = 200) -> str:
    """Text a server chose (a status reason, a close reason, a snippet) made safe to show:
    control characters escaped (no forged log lines or terminal escapes), ``limit`` characters
    at most."""
    if isinstance(text, (bytes, bytearray, memoryview)):
        shown = bytes(text[: limit * 4]).decode("utf-8", "replace")
    else:
        shown = text if isinstance(text, str) else str(text)
    escaped = shown[: limit + 1].translate(_CONTROL)
    if len(shown) > limit or len(escaped) > limit:
        return f"{escaped[: limit - 3]}..."
    return escaped


class TransportLog:
    """The logger of one transport: the usual logger methods, plus ``debug=True``.

    With ``debug`` on, every line of this transport is emitted whatever the logger's level
    (handlers and filters still apply); with it off, this is the plain logger.

    :param logger: the logger the lines go to.
    :param debug: emit every line whatever the logger's level.
    """

    __slots__ = ("debug_enabled", "logger")

    def __init__(self, logger: logging.Logger, debug: bool = False) -> None:
        self.logger = logger
        self.debug_enabled = bool(debug)

    @property
    def name(self) -> str:
        return self.logger.name

    def isEnabledFor(self, level: int) -> bool:
        return self.debug_enabled or self.logger.isEnabledFor(level)

    def log(self, level: int, msg: object, *args: Any, **kwargs: Any) -> None:
        logger = self.logger
        kwargs["stacklevel"] = kwargs.get("stacklevel", 1) + 2
        if not self.debug_enabled:
            if logger.isEnabledFor(level):
                logger._log(level, msg, args, **kwargs)
            return
        if logger.disabled:
            return
        if _has_handlers(logger):
            logger._log(level, msg, args, **kwargs)  # skips the level check, not the handlers
            return
        record = logger.makeRecord(
            logger.name, level, "(debug)", 0, msg, args, _exc_info(kwargs.get("exc_info"))
        )
        if logger.filter(record):
            _fallback_handler().handle(record)

    def debug(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.DEBUG, msg, *args, **kwargs)

    def info(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.INFO, msg, *args, **kwargs)

    def warning(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.WARNING, msg, *args, **kwargs)

    def error(self, msg: object, *args: Any, **kwargs: Any) -> None:
        self.log(logging.ERROR, msg, *args, **kwargs)

    def exception(self, msg: object, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("exc_info", True)
        self.log(logging.ERROR, msg, *args, **kwargs)

    def __repr__(self) -> str:
        return f"<TransportLog {self.logger.name} debug={self.debug_enabled}>"


def _exc_info(value: Any) -> Any:
    if value is True:
        return sys.exc_info()
    if isinstance(value, BaseException):
        return (type(value), value, value.__traceback__)
    return value or None
