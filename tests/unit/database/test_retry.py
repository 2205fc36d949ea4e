"""The database retry policy (storemon/database/retry.py), with a fake clock: no database."""
from __future__ import annotations

import pytest

from storemon.database.retry import RetriesExhausted, RetryPolicy


class Transient(Exception):
    pass


class Clock:
    def __init__(self) -> None:
        self.pauses: list[float] = []

    async def sleep(self, seconds: float) -> None:
        self.pauses.append(seconds)


def failing(times: int, error: Exception):
    calls = {"n": 0}

    async def work() -> str:
        calls["n"] += 1
        if calls["n"] <= times:
            raise error
        return "done"

    return work, calls


def policy(**overrides) -> RetryPolicy:
    return RetryPolicy(is_transient=lambda e: isinstance(e, Transient), **overrides)


async def test_pauses_double_up_to_the_cap_without_jitter():
    clock = Clock()
    work, calls = failing(6, Transient())
    result = await policy(jitter=0.0).run(work, sleep=clock.sleep)
    assert result == "done" and calls["n"] == 7
    assert clock.pauses == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]


async def test_jitter_spreads_each_pause_within_its_bounds():
    low = policy(jitter=0.2, uniform=lambda: 0.0)
    high = policy(jitter=0.2, uniform=lambda: 1.0)
    assert [low.pause_s(a) for a in (1, 2, 5)] == pytest.approx([0.4, 0.8, 6.4])
    assert [high.pause_s(a) for a in (1, 2, 5)] == pytest.approx([0.6, 1.2, 9.6])


async def test_gives_up_after_the_attempts_with_the_last_error():
    clock = Clock()
    last = Transient("still down")
    work, calls = failing(100, last)
    with pytest.raises(RetriesExhausted) as raised:
        await policy(attempts=3).run(work, sleep=clock.sleep)
    assert calls["n"] == 3 and len(clock.pauses) == 2
    assert raised.value.last is last and raised.value.attempts == 3


async def test_until_done_outlasts_the_attempts():
    work, calls = failing(20, Transient())
    assert await policy(attempts=3).run(work, sleep=Clock().sleep, until_done=True) == "done"
    assert calls["n"] == 21


async def test_an_error_that_is_not_transient_is_raised_at_once():
    clock = Clock()
    work, calls = failing(1, ValueError("a bug"))
    with pytest.raises(ValueError):
        await policy().run(work, sleep=clock.sleep)
    assert calls["n"] == 1 and clock.pauses == []


async def test_stopping_ends_retries_at_the_next_failure():
    work, calls = failing(100, Transient())
    with pytest.raises(RetriesExhausted):
        await policy().run(work, sleep=Clock().sleep, stopping=lambda: calls["n"] >= 2)
    assert calls["n"] == 2


async def test_each_retry_is_reported_before_its_pause():
    heard = []
    work, _ = failing(2, Transient())
    await policy(jitter=0.0).run(
        work, sleep=Clock().sleep, on_retry=lambda a, p, e: heard.append((a, p, type(e)))
    )
    assert heard == [(1, 0.5, Transient), (2, 1.0, Transient)]
