"""Option checks shared by every constructor: a bad value is a ``ValueError`` naming the option."""

from __future__ import annotations

from typing import Any

__all__ = ["check_seconds", "check_int"]


def check_seconds(name: str, value: Any, *, allow_none: bool = True) -> None:
    """``value`` must be a positive number of seconds (or ``None`` when allowed)."""
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
        more = " or None" if allow_none else ""
        raise ValueError(f"{name} must be a positive number of seconds{more}, not {value!r}")


def check_int(name: str, value: Any, *, minimum: int = 1) -> None:
    """``value`` must be an integer (not a bool) of at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        what = "a positive integer" if minimum == 1 else f"an integer >= {minimum}"
        raise ValueError(f"{name} must be {what}, not {value!r}")
