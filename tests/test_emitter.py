"""EventEmitter: on/once/off, unsubscribe callables, listener errors."""

from __future__ import annotations

import threading

from aikit_transports import EventEmitter


def test_on_emit_off() -> None:
    em = EventEmitter()
    seen: list[int] = []
    unsubscribe = em.on("x", seen.append)
    assert em.emit("x", 1) is True
    unsubscribe()
    assert em.emit("x", 2) is False
    assert seen == [1]
    assert em.listener_count("x") == 0


def test_once_runs_once_and_can_be_cancelled() -> None:
    em = EventEmitter()
    seen: list[int] = []
    em.once("x", seen.append)
    em.emit("x", 1)
    em.emit("x", 2)
    assert seen == [1]
    cancel = em.once("x", seen.append)
    cancel()
    em.emit("x", 3)
    assert seen == [1]


def test_off_removes_a_once_listener_by_its_callback() -> None:
    em = EventEmitter()
    seen: list[int] = []
    em.once("x", seen.append)
    em.off("x", seen.append)
    em.emit("x", 1)
    assert seen == []


def test_off_without_callback_removes_all() -> None:
    em = EventEmitter()
    em.on("x", lambda: None)
    em.on("x", lambda: None)
    em.off("x")
    assert em.listener_count("x") == 0


def test_listener_error_is_reported_and_others_still_run() -> None:
    reported: list[tuple[str, str]] = []
    em = EventEmitter(lambda exc, name: reported.append((name, str(exc))))
    seen: list[int] = []

    def boom(_: int) -> None:
        raise RuntimeError("boom")

    em.on("x", boom)
    em.on("x", seen.append)
    em.emit("x", 1)
    assert seen == [1]
    assert reported == [("x", "boom")]


def test_error_listener_failure_does_not_recurse() -> None:
    calls: list[str] = []
    em = EventEmitter(lambda exc, name: calls.append(name))

    def boom(_: object) -> None:
        raise RuntimeError("boom")

    em.on("error", boom)
    em.emit("error", ValueError())
    assert calls == []


def test_listeners_added_while_emitting_from_many_threads() -> None:
    em = EventEmitter()
    counter: list[int] = []
    lock = threading.Lock()

    def add() -> None:
        for _ in range(200):

            def cb() -> None:
                with lock:
                    counter.append(1)

            em.on("x", cb)

    threads = [threading.Thread(target=add) for _ in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(10)
    em.emit("x")
    assert em.listener_count("x") == 800
    assert len(counter) == 800
