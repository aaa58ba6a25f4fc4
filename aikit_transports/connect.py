"""``connect()``: try several wires in turn and keep the first that connects.

Useful where a proxy or firewall blocks one of them (WebSocket upgrades are the usual victim).
Each wire gets one connection attempt; the winner keeps its full reconnection policy for later.
"""

from __future__ import annotations

import threading
from typing import Any, Dict, List, Optional, Sequence, Tuple, Type, Union
from urllib.parse import urlsplit, urlunsplit

from .errors import ConnectError, NotSupportedError, TransportError
from .events import TransportState, TransportType
from .manager import TransportManager
from .redact import redact_url
from .transports.base import BaseTransport
from .transports.registry import WireSpec, accepts_option, resolve_transport

__all__ = ["connect", "FallbackError", "DEFAULT_WIRES"]

DEFAULT_WIRES: Tuple[str, ...] = ("websocket", "sse", "http-stream")

# A scheme of one family, and its counterpart in the other.
_SCHEME_MAP = {"http": "ws", "https": "wss", "ws": "http", "wss": "https"}

WireChoice = Union[WireSpec, Tuple[WireSpec, str]]


class FallbackError(ConnectError):
    """No wire connected. The message names each wire and why it failed; ``errors`` maps each
    wire's name to its error.

    :param errors: each wire's name (numbered, ``sse#2``, when one came twice) to its error,
        in the order tried.
    :param context: ``transport_id``, ``url`` and ``attempt``, as for every error.
    """

    def __init__(self, message: str, errors: Dict[str, TransportError], **context: Any) -> None:
        super().__init__(message, **context)
        self.errors = errors
        self.retryable = any(e.retryable for e in errors.values())


def map_scheme(url: str, cls: Type[BaseTransport]) -> str:
    """``url`` with its scheme changed to the counterpart this wire speaks (``http``↔``ws``,
    ``https``↔``wss``); ``ValueError`` when it has none."""
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if not cls.schemes or scheme in cls.schemes:
        return url
    mapped = _SCHEME_MAP.get(scheme)
    if mapped is None or mapped not in cls.schemes:
        raise ValueError(
            f"{cls.__name__} cannot use a {scheme or '(none)'!r} URL (it takes "
            f"{', '.join(cls.schemes)})"
        )
    return urlunsplit((mapped, *parts[1:]))


def connect(
    url: str,
    transports: Sequence[WireChoice] = DEFAULT_WIRES,
    *,
    manager: Optional[TransportManager] = None,
    **options: Any,
) -> BaseTransport:
    """Return the first of ``transports`` that connects to ``url``, connected.

    Wires are tried in order, one connection attempt each (bounded by the ``timeout`` option);
    the URL's scheme is mapped per wire (``http``↔``ws``, ``https``↔``wss``). An item may also
    be a ``(wire, url)`` pair for an endpoint at another address. ``options`` go to every wire
    that takes them (an option no wire takes is a ``TypeError``). With ``manager``, the
    transports are created by it (its limits, timers and shared session apply).

    Raises :class:`FallbackError` (a ``ConnectError``) naming each wire and why it failed;
    every transport that did not win is closed.

    :param url: the endpoint, its scheme mapped for each wire.
    :param transports: the wires to try, in order: names, :class:`TransportType` members,
        transport classes, or ``(wire, url)`` pairs (default: WebSocket, SSE, HTTP stream).
    :param manager: the :class:`TransportManager` that creates the transports (``None``: they
        are created directly).
    :param options: keyword arguments for each wire's constructor, given to the wires that
        take them.
    """
    if not transports:
        raise ValueError("transports must name at least one wire")
    # (key, class or None, url); keys are wire names, numbered when a wire comes twice
    plan: List[Tuple[str, Optional[Type[BaseTransport]], str]] = []
    errors: Dict[str, TransportError] = {}
    for choice in transports:
        wire, wire_url = choice if isinstance(choice, tuple) else (choice, url)
        key = name = _wire_name(wire)
        count = 1
        while any(key == k for k, _, _ in plan):
            count += 1
            key = f"{name}#{count}"
        try:
            plan.append((key, resolve_transport(wire), wire_url))
        except NotSupportedError as exc:  # the wire's module is missing: only this wire fails
            plan.append((key, None, wire_url))
            errors[key] = exc
    usable = [cls for _, cls, _ in plan if cls is not None]
    unknown = [k for k in options if not any(accepts_option(c, k) for c in usable)]
    if usable and unknown:
        raise TypeError(f"no transport takes the option(s): {', '.join(sorted(unknown))}")

    for key, cls, wire_url in plan:
        if cls is None:
            continue
        try:
            target = map_scheme(wire_url, cls)
        except ValueError as exc:
            errors[key] = NotSupportedError(str(exc), url=redact_url(wire_url))
            continue
        kwargs = {k: v for k, v in options.items() if accepts_option(cls, k)}
        transport = (
            manager.create(cls, target, **kwargs) if manager is not None else cls(target, **kwargs)
        )
        error = _try(transport)
        if error is None:
            return transport
        errors[key] = error

    errors = {key: errors[key] for key, _, _ in plan}  # in the order tried
    lines = "; ".join(f"{key}: {_describe(err)}" for key, err in errors.items())
    raise FallbackError(
        f"could not connect with any transport ({lines})", errors, url=redact_url(url)
    )


def _wire_name(wire: WireSpec) -> str:
    if isinstance(wire, type):
        kind = getattr(wire, "type", None)
        return kind.value if isinstance(kind, TransportType) else wire.__name__
    return wire.value if isinstance(wire, TransportType) else str(wire)


def _try(transport: BaseTransport) -> Optional[TransportError]:
    """Connect with a single attempt: the first failure closes the transport and is returned."""
    first_failure: Dict[str, TransportError] = {}
    lock = threading.Lock()

    def on_reconnecting(attempt: int, delay: float, error: TransportError) -> None:
        # CONNECTING: the first connection was never made, so this is a failed first attempt.
        # (RECONNECTING means the winner lost its connection later: that is its own business.)
        if transport.state is TransportState.CONNECTING:
            with lock:
                first_failure.setdefault("error", error)
            transport.close()

    unsubscribe = transport.on("reconnecting", on_reconnecting)
    try:
        transport.connect()
    except TransportError as exc:
        transport.close()
        with lock:
            return first_failure.get("error", exc)
    except BaseException:
        transport.close()
        raise
    finally:
        unsubscribe()
    return None


def _describe(error: TransportError) -> str:
    where = f" ({error.url})" if error.url else ""
    return f"{error.message}{where}"
