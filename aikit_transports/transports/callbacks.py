"""Registering callbacks on a transport: ``on``, ``once`` and ``off``, typed per event name.

A mixin of :class:`~aikit_transports.transports.BaseTransport`: the overloads give each event
name its callback's signature, so that editors and type checkers know that
``t.on("event", lambda e: e.data)`` gets an ``Event``, and reject a name that is not an event.
"""

from __future__ import annotations

from typing import Any, Callable, Literal, Optional, overload

from ..buffer import BackpressureInfo
from ..emitter import EventEmitter, F, Listener, check_event_name, registrar
from ..errors import TransportError
from ..events import TRANSPORT_EVENTS, Event, EventName

__all__ = ["Callbacks"]


class Callbacks:
    """``on`` / ``once`` / ``off`` over the transport's emitter (see the module docstring)."""

    _emitter: EventEmitter

    def _listeners_changed(self) -> None:
        """The set of ``event`` listeners changed (the transport adjusts its consumers)."""

    @overload
    def on(self, name: EventName) -> Callable[[F], F]: ...
    @overload
    def on(
        self, name: Literal["event"], callback: Callable[[Event], Any]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self, name: Literal["connecting", "connected", "done"], callback: Callable[[], Any]
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self,
        name: Literal["reconnecting"],
        callback: Callable[[int, float, TransportError], Any],
    ) -> Callable[[], None]: ...
    @overload
    def on(
        self, name: Literal["error"], callback: Callable[[TransportError], Any]
    ) -> Callable[[], None]: ...
    @overload
    def on(self, name: Literal["closed"], callback: Callable[[str], Any]) -> Callable[[], None]: ...
    @overload
    def on(
        self, name: Literal["backpressure", "drain"], callback: Callable[[BackpressureInfo], Any]
    ) -> Callable[[], None]: ...
    def on(self, name: EventName, callback: Optional[Listener] = None) -> Any:
        """Register ``callback`` for the event ``name``; returns a function that unregisters it.

        Without ``callback``, a decorator (``@t.on("event")`` above a function registers it and
        leaves it as it is). A name that is not an event is a ``ValueError`` listing them.

        :param name: the event: ``event``, ``connected``, ``error``, ``closed``, ...
        :param callback: called with the event's arguments (``None``: return a decorator).
        """
        check_event_name(name, TRANSPORT_EVENTS)
        if callback is None:
            return registrar(lambda cb: self.on(name, cb))
        self._emitter.on(name, callback)
        if name == "event":
            self._listeners_changed()
        return lambda: self.off(name, callback)

    @overload
    def once(self, name: EventName) -> Callable[[F], F]: ...
    @overload
    def once(
        self, name: Literal["event"], callback: Callable[[Event], Any]
    ) -> Callable[[], None]: ...
    @overload
    def once(
        self, name: Literal["connecting", "connected", "done"], callback: Callable[[], Any]
    ) -> Callable[[], None]: ...
    @overload
    def once(
        self,
        name: Literal["reconnecting"],
        callback: Callable[[int, float, TransportError], Any],
    ) -> Callable[[], None]: ...
    @overload
    def once(
        self, name: Literal["error"], callback: Callable[[TransportError], Any]
    ) -> Callable[[], None]: ...
    @overload
    def once(
        self, name: Literal["closed"], callback: Callable[[str], Any]
    ) -> Callable[[], None]: ...
    @overload
    def once(
        self, name: Literal["backpressure", "drain"], callback: Callable[[BackpressureInfo], Any]
    ) -> Callable[[], None]: ...
    def once(self, name: EventName, callback: Optional[Listener] = None) -> Any:
        """Register ``callback`` for the next ``name`` event only (without it, a decorator).

        :param name: the event: ``event``, ``connected``, ``error``, ``closed``, ...
        :param callback: called with the event's arguments, once (``None``: return a decorator).
        """
        check_event_name(name, TRANSPORT_EVENTS)
        if callback is None:
            return registrar(lambda cb: self.once(name, cb))
        unsubscribe = self._emitter.once(name, callback)
        if name == "event":
            self._listeners_changed()

        def off() -> None:
            unsubscribe()
            if name == "event":
                self._listeners_changed()

        return off

    def off(self, name: EventName, callback: Optional[Listener] = None) -> None:
        """Unregister ``callback`` (or every listener of ``name``).

        :param name: the event.
        :param callback: the listener to remove (``None``: every listener of ``name``).
        """
        check_event_name(name, TRANSPORT_EVENTS)
        self._emitter.off(name, callback)
        if name == "event":
            self._listeners_changed()
