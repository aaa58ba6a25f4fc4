"""Waiting on a condition variable, for the test servers and tests."""

from __future__ import annotations

import threading
import time
from typing import Callable, TypeVar

T = TypeVar("T")


def wait_for(
    cond: threading.Condition,
    predicate: Callable[[], T],
    timeout: float,
    what: str = "server condition",
) -> T:
    """Wait on ``cond`` until ``predicate()`` is truthy and return that value.

    :param cond: notified whenever what ``predicate`` reads changes; it is held while it runs.
    :param predicate: a function of no arguments.
    :param timeout: the longest wait in seconds; then ``TimeoutError``.
    :param what: names the condition in the ``TimeoutError``.
    """
    deadline = time.monotonic() + timeout
    with cond:
        while True:
            value = predicate()
            if value:
                return value
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"{what} not met within {timeout} s")
            cond.wait(remaining)
