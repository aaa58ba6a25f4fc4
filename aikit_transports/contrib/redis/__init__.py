"""Scale out over Redis Streams: one relay per upstream stream, any number of readers.

:class:`RedisRelay` runs one upstream transport and appends its events to a Redis Stream; a
lease in Redis makes one relay of many (processes, hosts) do it, and another take over when it
dies. :class:`RedisStreamTransport` reads that stream as a transport (every reader every entry,
or a consumer group sharing them). Needs the ``redis`` extra (``pip install
aikit-transports[redis]``); nothing of it is imported until this package is.
"""

from __future__ import annotations

try:
    import redis  # noqa: F401
except ImportError as exc:  # pragma: no cover - depends on the environment
    raise ImportError(
        "aikit_transports.contrib.redis needs redis-py: pip install 'aikit-transports[redis]'"
    ) from exc

from .connection import RedisReplyError, parse_redis_url
from .envelope import Envelope, decode_envelope, encode_end_marker, encode_envelope
from .relay import RedisRelay, RelayMetrics
from .transport import RedisStreamTransport
from .upstream import UpstreamFactory

__all__ = [
    "RedisRelay",
    "RedisStreamTransport",
    "RelayMetrics",
    "UpstreamFactory",
    "RedisReplyError",
    "Envelope",
    "encode_envelope",
    "encode_end_marker",
    "decode_envelope",
    "parse_redis_url",
]
