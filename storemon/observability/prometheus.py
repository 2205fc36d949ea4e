"""Prometheus exposition, shared by every service's /metrics: prometheus_client's text
format (0.0.4) of a registry per service instance, with the process, GC and platform
figures, and of the families made for each scrape."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from typing import Generic, TypeVar

import prometheus_client
from prometheus_client.exposition import CONTENT_TYPE_PLAIN_0_0_4
from prometheus_client.metrics_core import CounterMetricFamily, Metric

#: What generate_latest writes (prometheus_client's CONTENT_TYPE_LATEST names another).
CONTENT_TYPE = CONTENT_TYPE_PLAIN_0_0_4

T = TypeVar("T")


def registry() -> prometheus_client.CollectorRegistry:
    """A registry of one service instance's metrics (not the global one: tests run several
    apps in one process), with the process's memory, CPU, file descriptors, GC and Python."""
    # No `<name>_created` gauge next to each counter and histogram: nothing reads them.
    # Process-wide, and before any metric of this registry is made.
    prometheus_client.disable_created_metrics()
    made = prometheus_client.CollectorRegistry()
    prometheus_client.ProcessCollector(registry=made)
    prometheus_client.GCCollector(registry=made)
    prometheus_client.PlatformCollector(registry=made)
    return made


def counter_family(
    name: str,
    help_text: str,
    label_names: Sequence[str],
    counts: Mapping[str, int] | Mapping[tuple[str, ...], int],
) -> CounterMetricFamily:
    """A counter family from a plain Counter (keys: the label values, a str for one
    label), in key order."""
    family = CounterMetricFamily(name, help_text, labels=label_names)
    for key, count in sorted(counts.items()):
        family.add_metric([key] if isinstance(key, str) else key, count)
    return family


class _Families:
    """Families already made, as a collector generate_latest takes."""

    def __init__(self, families: Iterable[Metric]) -> None:
        self._families = families

    def collect(self) -> Iterable[Metric]:
        return self._families


def exposition(
    registered: prometheus_client.CollectorRegistry, made: Iterable[Metric] = ()
) -> str:
    """The text of the registry's metrics, then of `made`: families made for this scrape,
    of figures read for it (from Kafka, PostgreSQL, other processes: a registered
    collector is called synchronously, so it could not await them) or kept in plain
    counters."""
    return (
        prometheus_client.generate_latest(registered)
        + prometheus_client.generate_latest(_Families(made))
    ).decode()


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
