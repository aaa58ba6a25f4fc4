"""The wires: each a thin subclass of :class:`~.base.BaseTransport`, resolved by name in
:mod:`.registry`."""

from __future__ import annotations

from .base import BaseTransport
from .registry import register_transport, resolve_transport, wire_for_scheme

__all__ = ["BaseTransport", "register_transport", "resolve_transport", "wire_for_scheme"]
