"""Telling entries trimmed past a reader (``MAXLEN``) from entries that never existed.

Redis answers ``XREAD`` (and ``XREADGROUP ... >``) with the entries after the reader's cursor
that it still has: when trimming removed some the reader never got, nothing in the reply says
so. Entry ids cannot tell either (they are times, not counters). What can is the stream's count
of entries ever added (``entries-added`` of ``XINFO STREAM``, Redis 7.0 and later): trimming
only removes the oldest entries, so the stream's first entry is number ``entries-added -
length + 1`` of all time, and every entry after it follows in order. The rule:

- a read whose first entry is not the stream's first one skipped nothing (what lay between the
  cursor and it is still there);
- a read that starts at the stream's first entry skipped ``entries-added - length - position``
  entries, ``position`` being the number of the entry at the reader's cursor; a reader learns it
  from any read that starts at the stream's first entry or ends at its last one. A plain
  reader tracks it (:class:`Position`); Redis tracks a group's (``entries-read``), which the
  group script sets right after such a gap (Redis would count on from the old number);
- when the position is not known (a reader that started from an id given to it, and has not
  reached either end of the stream since) and some entries were trimmed, some may have been
  skipped: how many is not known. A reader that asked for the whole stream (``"0"``) is owed
  only what Redis has.

Entries deleted with ``XDEL`` (which the relay never does) are not told apart from trimmed ones.
Each check runs atomically with its read (``MULTI``, or the group script).
"""

from __future__ import annotations

from typing import Any, List, NamedTuple, Optional, Tuple

from .connection import Script

__all__ = ["StreamInfo", "Position", "missed", "STREAM_INFO", "GROUP_READ", "entry_key"]

# Where a stream stands: {entries-added, length, first entry id or false, last generated id}.
_INFO = """
local function stream_info(key)
  if redis.call('EXISTS', key) == 0 then return {0, 0, false, '0-0'} end
  local raw = redis.call('XINFO', 'STREAM', key)
  local f = {}
  for i = 1, #raw, 2 do f[raw[i]] = raw[i + 1] end
  local first = f['first-entry']
  return {f['entries-added'] or -1, f['length'], first and first[1] or false,
          f['last-generated-id']}
end
"""

#: KEYS: stream. Where it stands (read in the same ``MULTI`` as the plain reader's ``XREAD``).
STREAM_INFO = Script(_INFO + "return stream_info(KEYS[1])")

#: KEYS: stream. ARGV: group, consumer, count. Reads the group's new entries and returns {the
#: group's last delivered id and entries-read (or false) before the read, then stream_info's
#: four values, then the entries}. ``NOGROUP`` when the group (or the stream) is gone.
GROUP_READ = Script(
    _INFO
    + """
local key, group = KEYS[1], ARGV[1]
local last, read
if redis.call('EXISTS', key) == 1 then
  for _, raw in ipairs(redis.call('XINFO', 'GROUPS', key)) do
    local g = {}
    for i = 1, #raw, 2 do g[raw[i]] = raw[i + 1] end
    if g['name'] == group then last, read = g['last-delivered-id'], g['entries-read'] end
  end
end
if not last then
  return redis.error_reply('NOGROUP the consumer group ' .. group .. ' of ' .. key .. ' is gone')
end
local info = stream_info(key)
local reply = redis.call('XREADGROUP', 'GROUP', group, ARGV[2], 'COUNT', ARGV[3],
                         'STREAMS', key, '>')
local entries = reply and reply[1][2] or {}
if #entries > 0 and entries[1][1] == info[3] and info[1] >= 0 then
  -- read from the stream's first entry: the group's count of entries read is known exactly
  redis.call('XGROUP', 'SETID', key, group, entries[#entries][1],
             'ENTRIESREAD', info[1] - info[2] + #entries)
end
return {last, read or false, info[1], info[2], info[3], info[4], entries}
"""
)


class StreamInfo(NamedTuple):
    """Where a stream stands: entries ever ``added`` (-1 before Redis 7.0), its ``length``, its
    ``first`` entry id (``None`` when empty) and ``last`` generated id."""

    added: int
    length: int
    first: Optional[str]
    last: str

    @classmethod
    def parse(cls, reply: List[Any]) -> StreamInfo:
        """From the four values of the scripts' ``stream_info``."""
        added, length, first, last = reply
        first_id = None if first is None else first.decode("ascii")
        return cls(int(added), int(length), first_id, last.decode("ascii"))


def entry_key(entry_id: str) -> Tuple[int, int]:
    """An entry id as a sortable pair (``"5"`` is ``5-0``)."""
    ms, _, seq = entry_id.partition("-")
    return int(ms), int(seq or 0)


def missed(
    info: StreamInfo, after: str, position: Optional[int], first_read: str
) -> Optional[Tuple[Optional[int]]]:
    """Whether a read of the entries after ``after`` (the entry number ``position`` of all
    time, when known) that began with ``first_read`` skipped trimmed entries: ``None`` when
    not, else ``(count,)``, the count being ``None`` when not known."""
    if first_read != info.first or info.added < 0 or entry_key(after) == (0, 0):
        return None
    trimmed = info.added - info.length
    if position is None:
        return (None,) if trimmed > 0 else None
    count = trimmed - position
    return (count,) if count > 0 else None


class Position:
    """A plain reader's place in the stream's numbering of all time (see the module)."""

    __slots__ = ("number",)

    def __init__(self) -> None:
        self.number: Optional[int] = None

    def opened(self, info: StreamInfo, cursor: str) -> str:
        """On (re)connecting: learn the number if the cursor is at the end; ``"$"`` becomes
        the last entry's id. Returns the cursor."""
        if cursor == "$":
            cursor = info.last
        if info.added >= 0 and entry_key(cursor) >= entry_key(info.last):
            self.number = info.added
        return cursor

    def read(self, info: StreamInfo, first: str, last: str, count: int) -> None:
        """After a read of ``count`` entries from ``first`` to ``last``."""
        if info.added < 0:
            return
        if last == info.last:
            self.number = info.added
        elif first == info.first:
            self.number = info.added - info.length + count
        elif self.number is not None:
            self.number += count
