"""Prometheus text exposition (format 0.0.4), shared by every service's /metrics."""

from __future__ import annotations

import asyncio
import bisect
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"

T = TypeVar("T")


def family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    """Start a metric family: its HELP and TYPE lines."""
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**pairs: str) -> str:
    """`{name="value",...}`, values escaped; empty when there are none."""
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs.items()) + "}"


def family_by_label(
    lines: list[str], name: str, kind: str, help_text: str, label: str, values: Mapping[str, int]
) -> None:
    """A family of one sample per value of one label, in label order."""
    family(lines, name, kind, help_text)
    for value, count in sorted(values.items()):
        lines.append(f"{name}{labels(**{label: value})} {count}")


def histogram(
    lines: list[str],
    name: str,
    help_text: str,
    buckets: Iterable[tuple[float, int, float]],
) -> None:
    """A histogram family from its buckets, by increasing upper bound `le` (the last
    +Inf): each (le, observations above the previous bound and at most le, their sum)."""
    family(lines, name, "histogram", help_text)
    count = 0
    total = 0.0
    for le, observations, observed_sum in buckets:
        count += observations
        total += observed_sum
        bound = "+Inf" if math.isinf(le) else repr(le)
        lines.append(f"{name}_bucket{labels(le=bound)} {count}")
    lines.append(f"{name}_sum {total:.6f}")
    lines.append(f"{name}_count {count}")


class Histogram:
    """Observations counted in buckets of the given upper bounds (+Inf added), per process."""

    def __init__(self, bounds: Sequence[float]) -> None:
        self.bounds = (*sorted(bounds), math.inf)
        self._counts = [0] * len(self.bounds)
        self._sums = [0.0] * len(self.bounds)

    def observe(self, value: float) -> None:
        index = bisect.bisect_left(self.bounds, value)
        self._counts[index] += 1
        self._sums[index] += value

    def buckets(self) -> list[tuple[float, int, float]]:
        """What `histogram` renders."""
        return list(zip(self.bounds, self._counts, self._sums, strict=True))


class Cached(Generic[T]):
    """A reading (of Kafka, say) made at most every `max_age_s`, however often a scrape
    asks, and never two at once; None while the last attempt failed with `failures`."""

    def __init__(
        self,
        read: Callable[[], Awaitable[T]],
        failures: tuple[type[BaseException], ...],
        max_age_s: float,
    ) -> None:
        self._read = read
        self._failures = failures
        self._max_age_s = max_age_s
        self._value: T | None = None
        self._read_at = -math.inf
        self._lock = asyncio.Lock()

    async def get(self) -> T | None:
        async with self._lock:
            if time.monotonic() - self._read_at >= self._max_age_s:
                try:
                    self._value = await self._read()
                except self._failures:
                    self._value = None
                self._read_at = time.monotonic()
            return self._value
