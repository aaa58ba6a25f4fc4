"""The relay's records in Redis, kept by Lua scripts so that each change is atomic.

Two keys beside the stream ``S``:

``S:relay:lease``  the lease: the holder's token, set with ``NX`` and a ``PX`` expiry, renewed
                   by every append and by a renewal when idle
``S:relay:state``  a hash: ``holder`` (the token that last acquired the lease), ``last_entry``
                   (the stream id of the last append), ``upstream_id`` (the last upstream event
                   id appended), ``opened`` (the token of a relay that opened an upstream whose
                   request may not be sent again) and ``done`` (set with the end marker)

An append checks the lease and appends in one script, so a relay that lost its lease (paused,
cut off) can never write after its successor. It also compares ``last_entry`` with the id the
relay last saw acknowledged: when a reply was lost (the connection broke after the script ran),
the retry finds its batch already there and does not write it twice. A relay whose lease expired
while nobody else took it (Redis restarted, a long pause) takes it back on its next call.
"""

from __future__ import annotations

from typing import Any, NamedTuple, Optional

from .connection import RedisLink, Script
from .envelope import F_UPSTREAM_ID, PackedEntries

__all__ = ["RelayStore", "AcquireResult", "AppendResult"]

_NEWER = """
local function newer(a, b)
  local am, as = string.match(a, '^(%d+)-(%d+)$')
  local bm, bs = string.match(b, '^(%d+)-(%d+)$')
  if not am or not bm then return false end
  am = tonumber(am)
  bm = tonumber(bm)
  if am ~= bm then return am > bm end
  return tonumber(as) > tonumber(bs)
end
"""

# KEYS: lease, state. ARGV: token, ttl_ms.
_ACQUIRE = """
if redis.call('HGET', KEYS[2], 'done') then return {'done'} end
local h = redis.call('GET', KEYS[1])
if h and h ~= ARGV[1] then return {'held', h} end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'holder', ARGV[1])
local s = redis.call('HMGET', KEYS[2], 'last_entry', 'upstream_id', 'opened')
return {'ok', s[1] or '', s[2] or '', s[3] or ''}
"""

# Keep the lease (or take it back when it expired and nobody else took it). KEYS: lease,
# state. ARGV: token, ttl_ms. Returns 1 when held.
_KEEP = """
local function keep(token, ttl)
  local h = redis.call('GET', KEYS[1])
  if h ~= token then
    if h then return false end
    local owner = redis.call('HGET', KEYS[2], 'holder')
    if owner and owner ~= token then return false end
    redis.call('HSET', KEYS[2], 'holder', token)
  end
  redis.call('SET', KEYS[1], token, 'PX', ttl)
  return true
end
"""

# ARGV[3] '1': record that this relay opens an upstream that may not be sent again.
_RENEW = (
    _KEEP
    + """
if not keep(ARGV[1], ARGV[2]) then return 0 end
if ARGV[3] == '1' then redis.call('HSET', KEYS[2], 'opened', ARGV[1]) end
return 1
"""
)

# KEYS: lease, state, stream. ARGV: token, ttl_ms, maxlen ('' = none), expected last entry
# ('' = none), last upstream id ('' = unchanged), final ('1' = end marker: done, release),
# then per entry: the number of field arguments, the fields.
_APPEND = (
    _NEWER
    + _KEEP
    + """
if not keep(ARGV[1], ARGV[2]) then return {'lost', redis.call('GET', KEYS[1]) or ''} end
local last = redis.call('HGET', KEYS[2], 'last_entry') or ''
local expected = ARGV[4]
if last ~= expected and last ~= '' and (expected == '' or newer(last, expected)) then
  return {'dup', last}
end
local id = last
local i = 7
local n = #ARGV
local maxlen = ARGV[3]
while i <= n do
  local count = tonumber(ARGV[i])
  if maxlen ~= '' then
    id = redis.call('XADD', KEYS[3], 'MAXLEN', '~', maxlen, '*', unpack(ARGV, i + 1, i + count))
  else
    id = redis.call('XADD', KEYS[3], '*', unpack(ARGV, i + 1, i + count))
  end
  i = i + count + 1
end
local update = {'HSET', KEYS[2], 'last_entry', id}
if ARGV[5] ~= '' then
  update[#update + 1] = 'upstream_id'
  update[#update + 1] = ARGV[5]
end
if ARGV[6] == '1' then
  update[#update + 1] = 'done'
  update[#update + 1] = '1'
end
redis.call(unpack(update))
if ARGV[6] == '1' then redis.call('DEL', KEYS[1]) end
return {'ok', id}
"""
)

# KEYS: lease. ARGV: token.
_RELEASE = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  redis.call('DEL', KEYS[1])
  return 1
end
return 0
"""


class AcquireResult(NamedTuple):
    """The answer to an attempt to take the lease: ``status`` is ``ok``, ``held`` (by
    ``holder``) or ``done`` (the stream was finished); with ``ok``, where the stream stands
    and who ``opened`` an upstream that may not be sent again (``None``: nobody)."""

    status: str
    holder: Optional[str] = None
    last_entry: str = ""
    upstream_id: Optional[str] = None
    opened: Optional[str] = None


class AppendResult(NamedTuple):
    """``status`` ``ok`` (appended), ``dup`` (an earlier try of this batch was appended) or
    ``lost`` (another relay holds the lease); ``last_entry`` is the stream's newest id then."""

    status: str
    last_entry: str


def _text(value: Any) -> str:
    return value.decode("utf-8", "surrogatepass") if isinstance(value, bytes) else str(value)


class RelayStore:
    """The lease and state keys of one stream, operated through one :class:`RedisLink`."""

    _acquire = Script(_ACQUIRE)
    _renew = Script(_RENEW)
    _append = Script(_APPEND)
    _release = Script(_RELEASE)

    def __init__(self, stream: str) -> None:
        self.stream = stream
        self.lease_key = f"{stream}:relay:lease"
        self.state_key = f"{stream}:relay:state"

    def acquire(self, link: RedisLink, token: str, ttl_ms: int) -> AcquireResult:
        """Take the lease if it is free."""
        reply = self._acquire(link, (self.lease_key, self.state_key), (token, ttl_ms))
        status = _text(reply[0])
        if status == "held":
            return AcquireResult("held", holder=_text(reply[1]) or None)
        if status == "done":
            return AcquireResult("done")
        return AcquireResult(
            "ok",
            last_entry=_text(reply[1]),
            upstream_id=_text(reply[2]) or None,
            opened=_text(reply[3]) or None,
        )

    def renew(self, link: RedisLink, token: str, ttl_ms: int, opening: bool = False) -> bool:
        """Extend the lease (``opening``: and record that this relay opens an upstream that
        may not be sent again); ``False`` when another relay holds it now."""
        keys = (self.lease_key, self.state_key)
        return bool(self._renew(link, keys, (token, ttl_ms, "1" if opening else "0")))

    def append(
        self,
        link: RedisLink,
        token: str,
        ttl_ms: int,
        maxlen: Optional[int],
        expected: str,
        upstream_id: Optional[str],
        entries: PackedEntries,
        final: bool = False,
    ) -> AppendResult:
        """Append ``entries`` (see :func:`.envelope.pack_entry`) if the lease is ours; renews it."""
        args = (
            token,
            ttl_ms,
            "" if maxlen is None else maxlen,
            expected,
            upstream_id or "",
            "1" if final else "0",
        )
        reply = self._append(
            link, (self.lease_key, self.state_key, self.stream), args, entries[0], entries[1]
        )
        return AppendResult(_text(reply[0]), _text(reply[1]))

    def release(self, link: RedisLink, token: str) -> bool:
        """Give the lease up if it is ours."""
        return bool(self._release(link, (self.lease_key,), (token,)))

    def recent_upstream_ids(self, link: RedisLink, count: int) -> set[str]:
        """The upstream ids of the newest ``count`` entries (for skipping replays)."""
        found: set[str] = set()
        if count <= 0:
            return found
        for _entry_id, flat in link.call("XREVRANGE", self.stream, "+", "-", "COUNT", count):
            if not flat:
                continue
            fields = dict(zip(flat[::2], flat[1::2]))
            value = fields.get(F_UPSTREAM_ID)
            if value is not None:
                found.add(_text(value))
        return found
