"""Entries a reader never got are never skipped silently (issue 16), against a real redis-server.

A stream trimmed (``MAXLEN``) past a slow reader: ``EventsMissed`` comes before the first event
after the gap, for plain readers and consumer groups. A consumer group destroyed under its
readers is recreated after the last entry they delivered: nothing twice, nothing skipped.
"""

from __future__ import annotations

import threading
from typing import Any, Union

import pytest
from redis_fixtures import RedisServer

from aikit_transports import Event, EventsMissed, ReconnectPolicy, TransportError, TransportState

pytest.importorskip("redis")

from aikit_transports.contrib.redis import (  # needs redis-py: after the skip above
    RedisReplyError,
    RedisStreamTransport,
    encode_end_marker,
    encode_envelope,
)
from aikit_transports.contrib.redis.gaps import StreamInfo, missed

pytestmark = pytest.mark.redis

FAST = ReconnectPolicy(max_attempts=None, initial_delay=0.05, max_delay=0.5)
Logged = Union[Event, TransportError]


def fill(client: Any, stream: str, first: int, last: int) -> list[str]:
    """Append envelopes ``event first`` .. ``event last`` (pipelined); their entry ids."""
    pipe = client.pipeline(transaction=False)
    for i in range(first, last + 1):
        flat = encode_envelope(f"event {i}")
        pipe.xadd(stream, dict(zip(flat[::2], flat[1::2])))
    return [entry_id.decode() for entry_id in pipe.execute()]


def end(client: Any, stream: str) -> None:
    flat = encode_end_marker()
    client.xadd(stream, dict(zip(flat[::2], flat[1::2])))


def reader(server: RedisServer, **kw: Any) -> RedisStreamTransport:
    kw.setdefault("block_ms", 200)
    return RedisStreamTransport(server.url, "s", reconnect=FAST, **kw)


def numbers(log: list[Logged]) -> list[int]:
    return [int(x.data.split()[1]) for x in log if isinstance(x, Event)]


def logging_reader(t: RedisStreamTransport, pause_after: int = 0) -> tuple[list[Logged], Any]:
    """Events and errors of ``t`` in one list, in the order the listeners saw them; with
    ``pause_after``, delivery pauses after that many events (the reader keeps buffering)."""
    log: list[Logged] = []
    ended = threading.Event()

    def on_event(event: Event) -> None:
        log.append(event)
        if len(log) == pause_after:
            t.pause()

    t.on("event", on_event)
    t.on("error", log.append)
    t.on("closed", lambda reason: ended.set())
    return log, ended


# --- MAXLEN trimming past a slow reader -----------------------------------------------------

# a stream that had 1000 entries added and keeps the last 100: 901-0 .. 1000-0
TRIMMED = StreamInfo(added=1000, length=100, first="901-0", last="1000-0")


@pytest.mark.parametrize(
    ("after", "position", "first_read", "expected"),
    [
        ("950-0", 950, "951-0", None),  # the read does not start at the first entry
        ("900-0", 900, "901-0", None),  # the reader's entry was the last one trimmed
        ("800-0", 800, "901-0", (100,)),  # 801..900 were trimmed
        ("800-0", None, "901-0", (None,)),  # how many is not known
        ("0", None, "901-0", None),  # "0": what Redis has, from its first entry
        ("800-0", 800, "950-0", None),  # not from the first entry: nothing between was trimmed
    ],
)
def test_the_gap_rule(after: str, position: Any, first_read: str, expected: Any) -> None:
    assert missed(TRIMMED, after, position, first_read) == expected
    untrimmed = StreamInfo(added=100, length=100, first="1-0", last="100-0")
    assert missed(untrimmed, "0-5", None, "1-0") is None  # nothing was ever trimmed
    assert missed(TRIMMED._replace(added=-1), after, position, first_read) is None  # Redis 6


@pytest.mark.parametrize("group", [None, "g"], ids=["plain", "group"])
def test_trimming_past_a_paused_reader_is_reported_before_the_next_event(
    redis_server: RedisServer, redis_client: Any, wait_until: Any, group: Any
) -> None:
    ids = fill(redis_client, "s", 1, 2000)
    t = reader(redis_server, last_event_id=None if group else "0", group=group, count=100)
    log, ended = logging_reader(t, pause_after=10)
    t.connect()
    wait_until(lambda: t.paused and t.metrics.buffer_size == 1000, 10, "the reader is full")
    redis_client.xtrim("s", maxlen=100, approximate=False)  # keeps events 1901..2000
    end(redis_client, "s")
    t.resume()
    assert ended.wait(20) and t.state is TransportState.CLOSED
    got = numbers(log)
    errors = [x for x in log if not isinstance(x, Event)]
    assert len(errors) == 1 and isinstance(errors[0], EventsMissed), errors
    gap = log.index(errors[0])
    before, after = numbers(log[:gap]), numbers(log[gap + 1 :])
    assert before == list(range(1, len(before) + 1)) and len(before) >= 10
    assert after == list(range(1901, 2001))  # the rest of the stream, once, in order
    missed = errors[0]
    assert missed.last_delivered_id == ids[before[-1] - 1]
    assert missed.first_available_id == ids[1900]
    assert f"{1900 - len(before)} entries" in missed.message
    assert len(got) == len(set(got))
    if group:
        assert redis_client.xpending("s", "g")["pending"] == 0
    t.close()


def test_a_reader_resuming_from_a_trimmed_id_is_told(
    redis_server: RedisServer, redis_client: Any
) -> None:
    ids = fill(redis_client, "s", 1, 300)
    redis_client.xtrim("s", maxlen=100, approximate=False)
    end(redis_client, "s")
    t = reader(redis_server, last_event_id=ids[49])  # a browser back after a long while
    log, ended = logging_reader(t)
    t.connect()
    assert ended.wait(20)
    assert isinstance(log[0], EventsMissed) and numbers(log[1:]) == list(range(201, 301))
    assert log[0].last_delivered_id == ids[49] and log[0].first_available_id == ids[200]
    t.close()


def test_a_reader_from_0_or_one_that_keeps_up_is_never_told(
    redis_server: RedisServer, redis_client: Any, wait_until: Any
) -> None:
    fill(redis_client, "s", 1, 300)
    redis_client.xtrim("s", maxlen=100, approximate=False)  # "0": what Redis still has
    keeping_up = reader(redis_server)  # "$"
    from_start = reader(redis_server, last_event_id="0")
    logs = [logging_reader(keeping_up)[0], logging_reader(from_start)[0]]
    keeping_up.connect()
    from_start.connect()
    for start in range(301, 1301, 100):  # trimmed to 100 as it goes: the readers keep up
        fill(redis_client, "s", start, start + 99)
        redis_client.xtrim("s", maxlen=100, approximate=False)
        wait_until(lambda start=start: all(numbers(log)[-1:] == [start + 99] for log in logs))
    assert numbers(logs[0]) == list(range(301, 1301))
    assert numbers(logs[1]) == list(range(201, 1301))
    assert all(isinstance(x, Event) for log in logs for x in log)
    keeping_up.close()
    from_start.close()


def test_pending_entries_trimmed_before_delivery_are_reported_and_acknowledged(
    redis_server: RedisServer, redis_client: Any
) -> None:
    ids = fill(redis_client, "s", 1, 30)
    redis_client.xgroup_create("s", "g", id="0")
    redis_client.xreadgroup("g", "c", {"s": ">"}, count=5)  # "c" took 1..5 and died
    redis_client.xreadgroup("g", "dead", {"s": ">"}, count=5)  # "dead" took 6..10
    redis_client.xtrim("s", maxlen=20, approximate=False)  # 1..10 are gone
    end(redis_client, "s")
    t = reader(redis_server, group="g", consumer="c", claim_idle=0.1)
    log, ended = logging_reader(t)
    t.connect()
    assert ended.wait(20)
    errors = [x for x in log if not isinstance(x, Event)]
    assert [type(e) for e in errors] == [EventsMissed, EventsMissed]
    assert "5 pending entries" in errors[0].message and ids[0] in errors[0].message
    assert "5 pending entries" in errors[1].message
    assert numbers(log) == list(range(11, 31))
    assert redis_client.xpending("s", "g")["pending"] == 0
    t.close()


# --- XGROUP DESTROY under a group reader ---------------------------------------------------


def test_a_destroyed_group_is_recreated_after_the_last_entry_delivered(
    redis_server: RedisServer, redis_client: Any, wait_until: Any
) -> None:
    fill(redis_client, "s", 1, 100)
    t = reader(redis_server, group="g", consumer="c")
    log, ended = logging_reader(t)
    t.connect()
    wait_until(lambda: len(log) == 100 and redis_client.xpending("s", "g")["pending"] == 0)
    redis_client.xgroup_destroy("s", "g")
    fill(redis_client, "s", 101, 110)
    end(redis_client, "s")
    assert ended.wait(20) and t.state is TransportState.CLOSED
    assert numbers(log) == list(range(1, 111))  # nothing twice, nothing skipped
    errors = [x for x in log if not isinstance(x, Event)]
    assert len(errors) == 1 and isinstance(errors[0], RedisReplyError), errors
    assert errors[0].code == "NOGROUP" and "recreated" in errors[0].message
    assert log.index(errors[0]) == 100
    t.close()
