"""Shared fixtures, and a guard that fails any test leaving threads or file descriptors behind.

The library promises that once every transport and manager is closed no thread of it is left, and
that ``close()`` releases its sockets. Every test is checked for that: threads alive after the
test that were not alive before it, and a grown count of open file descriptors, fail the test
(after waiting up to ``LEAK_GRACE`` seconds for them to go away on their own).
"""

from __future__ import annotations

import gc
import os
import shutil
import sys
import threading
import time
import traceback
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any, Callable, Optional, TypeVar

import pytest

if TYPE_CHECKING:
    from aikit_transports.testing import StreamServer

T = TypeVar("T")

#: The redis_server, redis_server_aof, redis_client and procs fixtures (tests marked ``redis``).
pytest_plugins = ("redis_fixtures",)

#: How long a test's threads and sockets get to wind down before they count as leaked.
LEAK_GRACE = 3.0
_FD_DIR = "/proc/self/fd"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip the tests marked ``redis`` when no redis-server binary is installed."""
    if shutil.which("redis-server") is not None:
        return
    skip = pytest.mark.skip(reason="redis-server is not installed (`make test` installs it)")
    for item in items:
        if "redis" in item.keywords:
            item.add_marker(skip)


# --- leak guard ---------------------------------------------------------------------------------


def _open_fds() -> Optional[dict[int, str]]:
    """The open file descriptors of this process and what they point to (``None`` without /proc)."""
    try:
        names = os.listdir(_FD_DIR)
    except OSError:
        return None
    fds: dict[int, str] = {}
    for name in names:
        try:
            fds[int(name)] = os.readlink(os.path.join(_FD_DIR, name))
        except OSError:  # the descriptor listdir itself used, already closed
            continue
    return fds


def _thread_report(thread: threading.Thread) -> str:
    """One leaked thread: its name, and the innermost frames of where it is stuck."""
    head = f"  - {thread.name!r} (daemon={thread.daemon}, ident={thread.ident})"
    frame = sys._current_frames().get(thread.ident or -1)
    if frame is None:
        return head
    stack = "".join(traceback.format_stack(frame, limit=6))
    return head + "\n" + "\n".join("      " + line for line in stack.rstrip().splitlines())


def _wait_for_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Join the threads started since ``before`` for up to ``LEAK_GRACE`` seconds; the survivors."""
    deadline = time.monotonic() + LEAK_GRACE
    for thread in _new_threads(before):
        remaining = deadline - time.monotonic()
        if remaining > 0:
            thread.join(remaining)
    return [t for t in _new_threads(before) if t.is_alive()]


def _new_threads(before: set[threading.Thread]) -> list[threading.Thread]:
    """Threads started since ``before`` (foreign threads seen by ``threading`` are ignored)."""
    return [
        t
        for t in threading.enumerate()
        if t not in before
        and t is not threading.current_thread()
        and not isinstance(t, threading._DummyThread)
    ]


def _wait_for_fds(before_count: int) -> Optional[dict[int, str]]:
    """Poll until no more descriptors are open than ``before_count``; the open ones if never.

    Garbage is collected first: a descriptor that only unreachable objects hold is not held by
    anyone (``websockets``' sync server, for one, leaves its selector to the garbage collector).
    """
    deadline = time.monotonic() + LEAK_GRACE
    fds = _open_fds()
    if fds is not None and len(fds) > before_count:
        gc.collect()
    while True:
        fds = _open_fds()
        if fds is None or len(fds) <= before_count:
            return None
        if time.monotonic() >= deadline:
            return fds
        time.sleep(0.01)  # polls a condition (sockets closing in other threads), bounded above


@pytest.fixture(autouse=True)
def _no_leaks(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail the test if it leaves new threads or more open file descriptors than it found.

    Autouse and function-scoped, so it is set up before and torn down after the test's other
    function fixtures (``stream_server`` included): their threads and sockets are checked too.
    ``@pytest.mark.allow_leaks(reason)`` turns it off, for process-wide singletons only.
    """
    if request.node.get_closest_marker("allow_leaks") is not None:
        yield
        return
    threads_before = set(threading.enumerate())
    fds_before = _open_fds()
    yield
    problems: list[str] = []
    leaked = _wait_for_threads(threads_before)
    if leaked:
        problems.append(
            f"{len(leaked)} thread(s) still running {LEAK_GRACE:g} s after the test:\n"
            + "\n".join(_thread_report(t) for t in leaked)
        )
    if fds_before is not None:
        fds_after = _wait_for_fds(len(fds_before))
        if fds_after is not None:
            new = {fd: target for fd, target in fds_after.items() if fds_before.get(fd) != target}
            problems.append(
                f"open file descriptors grew from {len(fds_before)} to {len(fds_after)}; "
                "new ones: " + ", ".join(f"{fd} -> {target}" for fd, target in sorted(new.items()))
            )
    if problems:
        pytest.fail("resource leak: " + "\n".join(problems), pytrace=False)


# --- helpers ------------------------------------------------------------------------------------


def _wait_until(
    predicate: Callable[[], T], timeout: float = 5.0, message: Optional[str] = None
) -> T:
    """Wait until ``predicate()`` is truthy and return its value; fail after ``timeout`` seconds.

    For conditions that no event signals (a counter in another thread, a server-side state).
    """
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() >= deadline:
            what = message or getattr(predicate, "__name__", repr(predicate))
            pytest.fail(f"condition not met within {timeout:g} s: {what}", pytrace=False)
        time.sleep(0.005)  # polls a condition, bounded by the deadline above


@pytest.fixture
def wait_until() -> Callable[..., Any]:
    """``wait_until(predicate, timeout=5.0, message=None)``: poll a condition, return its value."""
    return _wait_until


@pytest.fixture
def shared_io(monkeypatch: pytest.MonkeyPatch) -> None:
    """Transports started in the test run on the shared I/O threads (whatever the environment)."""
    monkeypatch.setenv("AIKIT_TRANSPORTS_IO", "shared")


@pytest.fixture
def reader_threads(monkeypatch: pytest.MonkeyPatch) -> None:
    """Transports started in the test each run on a reader thread of their own."""
    monkeypatch.setenv("AIKIT_TRANSPORTS_IO", "threads")


@pytest.fixture
def servers() -> Iterator[dict[str, Any]]:
    """A :class:`StreamServer` (``"http"``) and a ``WebSocketServer`` (``"ws"``), both started."""
    from aikit_transports.testing import StreamServer
    from aikit_transports.testing.ws import WebSocketServer

    with StreamServer() as http, WebSocketServer() as ws:
        yield {"http": http, "ws": ws}


@pytest.fixture
def stream_server() -> Iterator[StreamServer]:
    """A started :class:`aikit_transports.testing.StreamServer` on 127.0.0.1, closed afterwards."""
    from aikit_transports.testing import StreamServer

    with StreamServer() as server:  # starts on enter, closes (and joins its threads) on exit
        yield server
