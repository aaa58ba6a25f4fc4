"""A small, lock-guarded, synchronous event emitter (``on`` / ``once`` / ``off`` / ``emit``)."""

from __future__ import annotations

import difflib
import logging
import threading
from collections.abc import Collection
from typing import Any, Callable, Optional, TypeVar, Union, overload

from .events import EVENT_ALIASES

__all__ = ["EventEmitter", "Listener", "check_event_name", "registrar"]

Listener = Callable[..., Any]
F = TypeVar("F", bound=Callable[..., Any])
log = logging.getLogger("aikit_transports")


def check_event_name(name: str, known: Collection[str]) -> None:
    """``ValueError`` unless ``name`` is one of ``known``: it lists them and suggests the closest
    (a misspelt name, or another library's name for one of ours: ``"message"`` → ``"event"``)."""
    if not isinstance(name, str):
        raise TypeError(f"an event name must be a string, not {type(name).__name__}")
    if name in known:
        return
    choices = ", ".join(repr(n) for n in known)
    aliases = {alias: target for alias, target in EVENT_ALIASES.items() if target in known}
    key = name.strip().lower()
    guess = aliases.get(key) or (key if key in known else None)
    if guess is None:
        close = difflib.get_close_matches(key, [*known, *aliases], n=1, cutoff=0.6)
        guess = aliases.get(close[0], close[0]) if close else None
    hint = f" (did you mean {guess!r}?)" if guess is not None else ""
    raise ValueError(f"unknown event {name!r}{hint}; the events are {choices}")


def registrar(register: Callable[[Listener], object]) -> Callable[[F], F]:
    """A decorator that hands the function it decorates to ``register`` and returns it as is
    (the ``@t.on("event")`` form of ``on(name, callback)``)."""

    def decorate(callback: F) -> F:
        register(callback)
        return callback

    return decorate


class _Once:
    """Wraps a listener so that it runs once, then unregisters itself."""

    __slots__ = ("callback", "emitter", "name")

    def __init__(self, emitter: EventEmitter, name: str, callback: Listener) -> None:
        self.emitter = emitter
        self.name = name
        self.callback = callback

    def __call__(self, *args: Any) -> Any:
        if self.emitter._remove(self.name, self):
            return self.callback(*args)
        return None


class EventEmitter:
    """Registry of named listeners, safe to use from any thread.

    Listeners are kept in copy-on-write tuples, so ``emit`` reads them without a lock.
    An exception raised by a listener never propagates: it is logged and passed to
    ``on_listener_error`` (the transports turn it into an ``error`` event).

    :param on_listener_error: ``on_listener_error(exc, name)``, called when a listener of
        ``name`` raised ``exc``, except a listener of ``error`` (``None``: only logged).
    """

    def __init__(
        self, on_listener_error: Optional[Callable[[BaseException, str], None]] = None
    ) -> None:
        self._lock = threading.Lock()
        self._listeners: dict[str, tuple[Listener, ...]] = {}
        self._on_listener_error = on_listener_error

    @overload
    def on(self, name: str) -> Callable[[F], F]: ...
    @overload
    def on(self, name: str, callback: Listener) -> Callable[[], None]: ...
    def on(
        self, name: str, callback: Optional[Listener] = None
    ) -> Union[Callable[[], None], Callable[[F], F]]:
        """Register ``callback`` for ``name``; returns a callable that unregisters it.

        Without ``callback``, a decorator: ``@emitter.on("x")`` registers the function below.

        :param name: the event.
        :param callback: called with the event's arguments on each ``emit`` of ``name``
            (``None``: return a decorator).
        """
        if callback is None:
            return registrar(lambda cb: self.on(name, cb))
        if not callable(callback):
            raise TypeError("callback must be callable")
        with self._lock:
            self._listeners[name] = (*self._listeners.get(name, ()), callback)
        return lambda: self.off(name, callback)

    @overload
    def once(self, name: str) -> Callable[[F], F]: ...
    @overload
    def once(self, name: str, callback: Listener) -> Callable[[], None]: ...
    def once(
        self, name: str, callback: Optional[Listener] = None
    ) -> Union[Callable[[], None], Callable[[F], F]]:
        """Register ``callback`` for the next ``name`` only (without it, a decorator).

        :param name: the event.
        :param callback: called with the event's arguments on the next ``emit`` of ``name``
            (``None``: return a decorator).
        """
        if callback is None:
            return registrar(lambda cb: self.once(name, cb))
        if not callable(callback):
            raise TypeError("callback must be callable")
        wrapper = _Once(self, name, callback)
        self.on(name, wrapper)

        def cancel() -> None:
            self._remove(name, wrapper)

        return cancel

    def off(self, name: str, callback: Optional[Listener] = None) -> None:
        """Unregister ``callback`` (also a ``once`` one), or every listener of ``name``.

        :param name: the event.
        :param callback: the listener to remove (``None``: every listener of ``name``).
        """
        if callback is None:
            with self._lock:
                self._listeners.pop(name, None)
            return
        with self._lock:
            current = self._listeners.get(name, ())
            for cb in current:
                if cb == callback or (isinstance(cb, _Once) and cb.callback == callback):
                    self._drop(name, current, cb)
                    return

    def _remove(self, name: str, callback: Listener) -> bool:
        with self._lock:
            current = self._listeners.get(name, ())
            if callback not in current:
                return False
            self._drop(name, current, callback)
            return True

    def _drop(self, name: str, current: tuple[Listener, ...], callback: Listener) -> None:
        items = list(current)
        items.remove(callback)
        if items:
            self._listeners[name] = tuple(items)
        else:
            del self._listeners[name]

    def listener_count(self, name: str) -> int:
        """How many listeners ``name`` has.

        :param name: the event.
        """
        return len(self._listeners.get(name, ()))

    def has_listeners(self, name: str) -> bool:
        """Whether anyone listens to ``name`` (cheap; used to skip building arguments).

        :param name: the event.
        """
        return name in self._listeners

    def emit(self, name: str, *args: Any) -> bool:
        """Call every listener of ``name`` in registration order; ``True`` if there was one.

        :param name: the event.
        """
        listeners = self._listeners.get(name)
        if not listeners:
            return False
        for callback in listeners:
            try:
                callback(*args)
            except Exception as exc:  # a listener must never kill the emitting thread
                self._listener_failed(exc, name)
        return True

    def lookup(self) -> Callable[[str, tuple[Listener, ...]], tuple[Listener, ...]]:
        """``lookup(name, default)``: the listeners of ``name`` now (a tuple never changed
        in place) or ``default``. It is the registry's ``dict.get``, for dispatch loops that
        must see ``on`` / ``off`` take effect between items without a Python call per item."""
        return self._listeners.get

    def listener_failed(self, exc: BaseException, name: str) -> None:
        """Report ``exc``, raised by a listener of ``name``, as :meth:`emit` does.

        :param exc: the exception the listener raised.
        :param name: the event the listener was called for.
        """
        self._listener_failed(exc, name)

    def _listener_failed(self, exc: BaseException, name: str) -> None:
        log.error("listener for %r raised %s: %s", name, type(exc).__name__, exc)
        if self._on_listener_error is not None and name != "error":
            try:
                self._on_listener_error(exc, name)
            except Exception:  # the error hook failed as well: logged above, nothing more to do
                log.exception("error handler failed")
