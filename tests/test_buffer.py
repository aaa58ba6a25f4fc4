"""MessageBuffer: the four strategies, water marks, blocking, closing."""

from __future__ import annotations

import queue
import threading

import pytest

from aikit_transports import BufferConfig, BufferStrategy, MessageBuffer, TransportClosedError


def make(strategy: str, size: int = 4, **kw: float) -> MessageBuffer[int]:
    return MessageBuffer(BufferConfig(max_size=size, strategy=strategy, **kw))


def test_drop_oldest_keeps_the_latest_and_counts() -> None:
    buf = make("drop-oldest")
    assert buf.put_many(list(range(6))) == 6
    assert buf.get_batch() == [2, 3, 4, 5]
    assert buf.dropped == 2


def test_drop_newest_refuses_new_items() -> None:
    buf = make("drop-newest")
    assert buf.put_many(list(range(6))) == 4
    assert buf.put(9) is False
    assert buf.get_batch() == [0, 1, 2, 3]
    assert buf.dropped == 3


def test_unlimited_never_refuses() -> None:
    buf = make("unlimited")
    buf.put_many(list(range(100)))
    assert len(buf) == 100 and buf.dropped == 0


def test_block_waits_for_room_and_loses_nothing() -> None:
    buf = make("block", size=3)
    got: list[int] = []

    def consume() -> None:
        while len(got) < 10:
            got.extend(buf.get_batch(timeout=5))

    consumer = threading.Thread(target=consume)
    consumer.start()
    assert buf.put_many(list(range(10))) == 10
    consumer.join(5)
    assert got == list(range(10))


def test_block_put_times_out_when_full() -> None:
    buf = make("block", size=2)
    buf.put_many([1, 2])
    assert buf.put(3, timeout=0.01) is False


def test_interrupt_put_returns_early_with_count() -> None:
    buf = make("block", size=2)
    result: list[int] = []
    started = threading.Event()

    def produce() -> None:
        started.set()
        result.append(buf.put_many([1, 2, 3, 4]))

    producer = threading.Thread(target=produce)
    producer.start()
    started.wait(5)
    while len(buf) < 2:  # the producer filled the buffer and now waits for room
        pass
    buf.interrupt_put()
    producer.join(5)
    assert result == [2]


def test_get_timeout_raises_empty() -> None:
    with pytest.raises(queue.Empty):
        make("block").get(timeout=0.01)


def test_close_wakes_waiters_and_keeps_what_was_buffered() -> None:
    buf = make("block", size=1)
    buf.put(1)
    errors: list[BaseException] = []

    def produce() -> None:
        try:
            buf.put(2)
        except TransportClosedError as exc:
            errors.append(exc)

    producer = threading.Thread(target=produce)
    producer.start()
    buf.close()
    producer.join(5)
    assert len(errors) == 1
    assert buf.get() == 1
    with pytest.raises(TransportClosedError):
        buf.get(timeout=1)
    with pytest.raises(TransportClosedError):
        buf.put(3)


def test_water_marks_fire_once_per_crossing() -> None:
    high: list[int] = []
    low: list[int] = []
    buf: MessageBuffer[int] = MessageBuffer(
        BufferConfig(max_size=10, strategy="drop-oldest"),
        on_backpressure=lambda info: high.append(info.size),
        on_drain=lambda info: low.append(info.size),
    )
    buf.put_many(list(range(7)))
    assert high == []
    buf.put(7)  # 8 = 80 %
    buf.put(8)
    assert high == [8]
    buf.get_batch(max_items=3)  # 6 left: above the low mark
    assert low == []
    buf.get_batch(max_items=1)  # 5 = 50 %
    assert low == [5]
    buf.put_many([1, 2, 3])
    assert high == [8, 8]
    info_strategy = buf._info().strategy
    assert info_strategy is BufferStrategy.DROP_OLDEST


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"max_size": 0}, "max_size"),
        ({"strategy": "sometimes"}, "strategy"),
        ({"high_water_mark": 1.5}, "high_water_mark"),
        ({"low_water_mark": 0.9}, "low_water_mark"),
    ],
)
def test_bad_config_names_the_option(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(ValueError, match=option):
        BufferConfig(**kwargs)  # type: ignore[arg-type]


def test_requeue_puts_items_back_at_the_head() -> None:
    buf = make("block", size=3)
    buf.put_many([4, 5])
    buf.requeue([1, 2, 3])
    assert len(buf) == 5
    buf.close()
    assert buf.get_batch() == [1, 2, 3, 4, 5]
