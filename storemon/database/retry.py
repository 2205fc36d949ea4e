"""A retry policy: how often, how long apart, and for which errors work is tried again.

An object, so it is tested without a database: the clock (`sleep`) and the
randomness of the jitter are injected. Pauses double from `first_pause_s` up to
`max_pause_s`, each spread by ±`jitter` so that services cut off by one outage
do not all come back in the same instant.
"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")


class RetriesExhausted(Exception):
    """Every attempt the policy allows failed with a transient error (the last is the cause)."""

    def __init__(self, attempts: int, last: BaseException) -> None:
        super().__init__(f"{attempts} attempts failed: {last}")
        self.attempts = attempts
        self.last = last


def _never_stopping() -> bool:
    return False


@dataclass(frozen=True)
class RetryPolicy:
    #: Which errors are worth another try; any other is raised at once.
    is_transient: Callable[[BaseException], bool]
    attempts: int = 7
    first_pause_s: float = 0.5
    max_pause_s: float = 8.0
    jitter: float = 0.2
    uniform: Callable[[], float] = field(default=random.random, repr=False)

    def pause_s(self, attempt: int) -> float:
        """The pause after failed attempt number `attempt` (1 for the first)."""
        base = min(self.first_pause_s * 2 ** (attempt - 1), self.max_pause_s)
        return base * (1 - self.jitter + 2 * self.jitter * self.uniform())

    async def run(
        self,
        work: Callable[[], Awaitable[T]],
        *,
        sleep: Callable[[float], Awaitable[object]] = asyncio.sleep,
        stopping: Callable[[], bool] = _never_stopping,
        until_done: bool = False,
        on_retry: Callable[[int, float, BaseException], None] | None = None,
    ) -> T:
        """`work()`, tried again after each transient error.

        Gives up with RetriesExhausted after `attempts` attempts (never, with
        `until_done`), or at the first failure once `stopping()` is true.
        `on_retry(attempt, pause_s, error)` hears of each retry before its pause.
        """
        attempt = 1
        while True:
            try:
                return await work()
            except Exception as exc:
                if not self.is_transient(exc):
                    raise
                if stopping() or (attempt >= self.attempts and not until_done):
                    raise RetriesExhausted(attempt, exc) from exc
                pause = self.pause_s(attempt)
                if on_retry is not None:
                    on_retry(attempt, pause, exc)
            await sleep(pause)
            attempt += 1
