"""ReconnectPolicy delays and retry rules; Event; errors and redaction."""

from __future__ import annotations

import pickle

import pytest

from aikit_transports import (
    ConnectError,
    Event,
    HTTPStatusError,
    ProtocolError,
    ReconnectPolicy,
    TransportError,
)
from aikit_transports.redact import redact_headers, redact_url


def test_delay_grows_and_is_capped() -> None:
    p = ReconnectPolicy(initial_delay=1.0, multiplier=2.0, max_delay=5.0, jitter=0)
    assert [p.delay(n) for n in (1, 2, 3, 4, 10)] == [1.0, 2.0, 4.0, 5.0, 5.0]


def test_jitter_takes_up_to_its_fraction_off() -> None:
    p = ReconnectPolicy(initial_delay=2.0, jitter=0.5)
    assert p.delay(1, rand=lambda: 0.0) == 2.0
    assert p.delay(1, rand=lambda: 1.0) == 1.0


def test_server_retry_replaces_initial_delay_and_stays_capped() -> None:
    p = ReconnectPolicy(initial_delay=1.0, max_delay=3.0, jitter=0)
    assert p.delay(1, server_retry_ms=250) == 0.25
    assert p.delay(1, server_retry_ms=60_000) == 3.0


def test_retry_after_is_honoured() -> None:
    p = ReconnectPolicy(jitter=0)
    assert p.delay(1, retry_after=7) == 7.0


def test_retry_after_gets_jitter_on_top_never_less() -> None:
    p = ReconnectPolicy(jitter=0.5)
    assert p.delay(1, retry_after=5, rand=lambda: 0.0) == 5.0
    assert p.delay(1, retry_after=5, rand=lambda: 1.0) == 7.5
    waits = [p.delay(1, retry_after=5) for _ in range(200)]
    assert min(waits) >= 5.0 and max(waits) <= 7.5
    assert len({round(w, 2) for w in waits}) > 50  # 200 clients told "5 s" spread out


def test_max_retry_after_is_checked() -> None:
    assert ReconnectPolicy().max_retry_after == 300.0
    with pytest.raises(ValueError, match="max_retry_after"):
        ReconnectPolicy(max_retry_after=-1)
    with pytest.raises(ValueError, match="max_retry_after"):
        ReconnectPolicy(max_retry_after=float("inf"))


def test_huge_attempt_numbers_do_not_overflow() -> None:
    assert ReconnectPolicy(jitter=0, max_delay=30).delay(100_000) == 30.0


def test_attempt_limits() -> None:
    assert ReconnectPolicy(max_attempts=None).allows(10**9)
    assert not ReconnectPolicy(max_attempts=0).allows(1)
    assert ReconnectPolicy(max_attempts=2).allows(2)
    assert not ReconnectPolicy(max_attempts=2).allows(3)


def test_status_rules() -> None:
    p = ReconnectPolicy()
    assert p.should_retry(HTTPStatusError("x", status_code=503))
    assert not p.should_retry(HTTPStatusError("x", status_code=404))
    assert p.should_retry(ConnectError("refused"))
    assert not p.should_retry(ProtocolError("bad type"))
    forced = ReconnectPolicy(retry_if=lambda e: True)
    assert forced.should_retry(HTTPStatusError("x", status_code=404))


@pytest.mark.parametrize(
    "kwargs, option",
    [
        ({"max_attempts": -1}, "max_attempts"),
        ({"initial_delay": -1}, "initial_delay"),
        ({"max_delay": -1}, "max_delay"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 2}, "jitter"),
    ],
)
def test_bad_policy_names_the_option(kwargs: dict[str, object], option: str) -> None:
    with pytest.raises(ValueError, match=option):
        ReconnectPolicy(**kwargs)  # type: ignore[arg-type]


def test_event_is_immutable_and_parses_json() -> None:
    ev = Event(data='{"a": 1}', id="7")
    assert ev.type == "message" and ev.retry is None and ev.received_at > 0
    assert ev.json() == {"a": 1}
    with pytest.raises(AttributeError):
        ev.data = "x"  # type: ignore[misc]
    with pytest.raises(ProtocolError, match="not valid JSON"):
        Event(data="{nope").json()


def test_error_carries_context_and_pickles() -> None:
    err = HTTPStatusError("HTTP 503", status_code=503, retry_after=2.0)
    err.with_context(transport_id="t1", url="http://h/x", attempt=3)
    assert str(err) == "HTTP 503 [transport=t1 url=http://h/x attempt=3]"
    back = pickle.loads(pickle.dumps(err))
    assert isinstance(back, HTTPStatusError) and back.status_code == 503
    assert str(back) == str(err)
    assert isinstance(back, TransportError)


def test_redaction() -> None:
    assert redact_url("https://me:pw@h/x?token=abc&q=1&api_key=k") == (
        "https://me:***@h/x?token=***&q=1&api_key=***"
    )
    assert redact_headers({"Authorization": "Bearer x", "X-Api-Key": "k", "Accept": "a"}) == {
        "Authorization": "***",
        "X-Api-Key": "***",
        "Accept": "a",
    }
