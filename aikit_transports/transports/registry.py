"""Which class speaks which wire: names (``"sse"``, ``"websocket"``, ...) resolved to classes.

Classes are imported on first use, so an optional wire (the Redis one needs the ``redis``
extra) costs nothing until someone asks for it, and a missing one fails only when named.
"""

from __future__ import annotations

import importlib
import inspect
import threading
from typing import Dict, Tuple, Type, Union

from ..errors import NotSupportedError
from ..events import TransportType
from .base import BaseTransport, url_scheme

__all__ = [
    "WireSpec",
    "register_transport",
    "resolve_transport",
    "accepts_option",
    "wire_for_scheme",
    "normalise_wire",
]

WireSpec = Union[str, TransportType, Type[BaseTransport]]

# name -> "module:Class" (imported on first use) or the class itself
_WIRES: Dict[str, Union[str, Type[BaseTransport]]] = {
    TransportType.SSE.value: "aikit_transports.transports.sse:SSETransport",
    TransportType.WEBSOCKET.value: "aikit_transports.transports.websocket:WebSocketTransport",
    TransportType.HTTP_STREAM.value: "aikit_transports.transports.http_stream:HTTPStreamTransport",
    TransportType.REDIS_STREAM.value: "aikit_transports.contrib.redis:RedisStreamTransport",
}
_ALIASES: Dict[str, str] = {"ws": TransportType.WEBSOCKET.value}
_WIRES_LOCK = threading.Lock()

_SCHEME_WIRES: Dict[str, TransportType] = {
    "http": TransportType.SSE,
    "https": TransportType.SSE,
    "ws": TransportType.WEBSOCKET,
    "wss": TransportType.WEBSOCKET,
    "redis": TransportType.REDIS_STREAM,
    "rediss": TransportType.REDIS_STREAM,
}


def register_transport(
    name: Union[str, TransportType], target: Union[str, Type[BaseTransport]]
) -> None:
    """Make a wire available to managers and :func:`~aikit_transports.connect` under ``name``.

    ``target`` is a transport class, or ``"package.module:ClassName"`` imported on first use.

    :param name: the wire's name (``str`` or :class:`TransportType`).
    :param target: the class, or where to import it from.
    """
    key = normalise_wire(name)
    if isinstance(target, str):
        if ":" not in target:
            raise ValueError("target must be 'package.module:ClassName' or a transport class")
    elif not (isinstance(target, type) and issubclass(target, BaseTransport)):
        raise ValueError("target must be a BaseTransport subclass or 'package.module:ClassName'")
    with _WIRES_LOCK:
        _WIRES[key] = target


def normalise_wire(name: Union[str, TransportType]) -> str:
    if isinstance(name, TransportType):
        return name.value
    if not isinstance(name, str) or not name.strip():
        raise ValueError(f"a wire name must be a non-empty string, not {name!r}")
    key = name.strip().lower().replace("_", "-")
    return _ALIASES.get(key, key)


def resolve_transport(wire: WireSpec) -> Type[BaseTransport]:
    """The transport class for a wire name, a :class:`TransportType` or a class.

    ``ValueError`` for an unknown name; ``NotSupportedError`` when the wire's module (or the
    library it needs) cannot be imported.

    :param wire: a registered name, a :class:`TransportType` or a transport class.
    """
    if isinstance(wire, type):
        if issubclass(wire, BaseTransport):
            return wire
        raise ValueError(f"{wire.__name__} is not a transport class")
    key = normalise_wire(wire)
    with _WIRES_LOCK:
        target = _WIRES.get(key)
        known = sorted(_WIRES)
    if target is None:
        raise ValueError(f"unknown transport type {wire!r}; use one of {', '.join(known)}")
    if not isinstance(target, str):
        return target
    module_name, _, attr = target.partition(":")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise NotSupportedError(
            f"the {key} transport is not available ({type(exc).__name__}: {exc})"
        ) from exc
    if not (isinstance(cls, type) and issubclass(cls, BaseTransport)):
        raise NotSupportedError(f"the {key} transport {target} is not a BaseTransport subclass")
    with _WIRES_LOCK:
        _WIRES[key] = cls
    return cls


_ACCEPTS: Dict[Tuple[type, str], bool] = {}


def accepts_option(cls: type, name: str) -> bool:
    """Whether ``cls(...)`` takes the keyword ``name`` (following ``**options`` up the MRO)."""
    found = _ACCEPTS.get((cls, name))
    if found is None:
        found = _ACCEPTS[(cls, name)] = _accepts_option(cls, name)
    return found


def _accepts_option(cls: type, name: str) -> bool:
    for klass in cls.__mro__:
        init = klass.__dict__.get("__init__")
        if init is None:
            continue
        try:
            params = inspect.signature(init).parameters
        except (TypeError, ValueError):
            return False
        param = params.get(name)
        if param is not None and param.kind in (
            inspect.Parameter.KEYWORD_ONLY,
            inspect.Parameter.POSITIONAL_OR_KEYWORD,
        ):
            return True
        if not any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
            return False
    return False


def wire_for_scheme(url: str) -> TransportType:
    """The default wire for a URL: ``ws``/``wss`` → WebSocket, ``http``/``https`` → SSE,
    ``redis``/``rediss`` → Redis Streams.

    :param url: the stream's URL (only its scheme counts).
    """
    scheme = url_scheme(url)
    try:
        return _SCHEME_WIRES[scheme]
    except KeyError:
        raise ValueError(f"unsupported URL scheme {scheme or '(none)'!r}") from None
