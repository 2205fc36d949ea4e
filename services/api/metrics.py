"""`GET /metrics`: the API's counters, reports by status and duration, and consumer lag,
in prometheus_client's text format, with this process's memory, CPU and GC.

Request and event counters and the request duration histogram (per route) are this
process's own: with several API replicas, sum them. Reports (by status, and the
request-to-Complete histogram) come from PostgreSQL and consumer lag from Kafka, so
every replica serves the same figures: take one (max), not their sum. The report
duration histogram is counted in the database because no API process sees a report
complete (a reporter does), and its counts live apart from the reports so that
deleting reports never lowers them. What a source that cannot be read would give is
left out, its gauge (storemon_database_up, storemon_kafka_up) 0: the rest is still
served.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass

import aiohttp
import prometheus_client
from aiohttp import web
from aiohttp.typedefs import Handler
from confluent_kafka import KafkaException
from prometheus_client.metrics_core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.utils import floatToGoString

from storemon.api.owners import Owners, PartitionState, state_sizes
from storemon.config import Settings
from storemon.database.reports_db import DurationBucket
from storemon.kafka.lag import PartitionLag, consumer_lag
from storemon.kafka.offsets import end_offsets
from storemon.kafka.topics import TOPIC_STATUS_DLQ
from storemon.observability import metric_names as names
from storemon.observability import prometheus
from storemon.observability.prometheus import Cached, counter_family

#: Consumer lag is read from the broker at most this often, however often it is scraped.
LAG_MAX_AGE_S = 5.0
#: Upper bounds of the request duration buckets, seconds: from an answer out of memory
#: to a large CSV download or a slow database.
HTTP_DURATION_BUCKETS_S = (
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
)


class Metrics:
    def __init__(self) -> None:
        self.registry = prometheus.registry()
        self.requests = prometheus_client.Counter(
            names.HTTP_REQUESTS,
            "HTTP requests answered.",
            ("method", "route", "status"),
            registry=self.registry,
        )
        self.durations = prometheus_client.Histogram(
            names.HTTP_REQUEST_DURATION,
            "Time spent answering HTTP requests, per route.",
            ("route",),
            buckets=HTTP_DURATION_BUCKETS_S,
            registry=self.registry,
        )
        #: "accepted" / "rejected" -> polls received on POST /events
        self.events: Counter[str] = Counter()
        self._kafka: Cached[KafkaFigures] | None = None
        self._state: Cached[dict[int, PartitionState]] | None = None

    async def kafka_figures(self, settings: Settings) -> KafkaFigures | None:
        """Lag of the deployment's groups and the dead letters, at most LAG_MAX_AGE_S old;
        None if Kafka is down."""
        if self._kafka is None:
            self._kafka = Cached(
                lambda: asyncio.to_thread(_read_kafka_figures, settings),
                (KafkaException, TimeoutError, KeyError),
                LAG_MAX_AGE_S,
            )
        return await self._kafka.get()

    async def state_figures(
        self, owners: Owners, session: aiohttp.ClientSession
    ) -> dict[int, PartitionState]:
        """Each state partition's size and newest poll, from its owner (those answering)."""
        if self._state is None:
            self._state = Cached(lambda: state_sizes(owners, session), (), LAG_MAX_AGE_S)
        return await self._state.get() or {}

    def render(
        self,
        reports: ReportFigures | None,
        kafka: KafkaFigures | None,
        state: dict[int, PartitionState],
    ) -> str:
        """The metrics; those of the reports left out when `reports` is None (the
        database could not be read), those of Kafka when `kafka` is None."""
        events = counter_family(
            names.EVENTS,
            "Polls received on POST /events.",
            ("outcome",),
            {outcome: self.events[outcome] for outcome in ("accepted", "rejected")},
        )
        return prometheus.exposition(
            self.registry, [events, *_read_families(reports, kafka, state)]
        )


def _read_families(
    reports: ReportFigures | None,
    kafka: KafkaFigures | None,
    state: dict[int, PartitionState],
) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        names.DATABASE_UP, "Whether the reports could be read.", 0 if reports is None else 1
    )
    if reports is not None:
        yield from _report_families(reports)
    yield GaugeMetricFamily(
        names.KAFKA_UP, "Whether consumer lag could be read.", 0 if kafka is None else 1
    )
    if kafka is not None:
        yield CounterMetricFamily(
            names.DEAD_LETTERS,
            "Records written to store-status-dlq (rejected polls, hours, zones).",
            kafka.dead_letters,
        )
    yield from _state_families(state)
    lag = GaugeMetricFamily(
        names.CONSUMER_LAG,
        "Records behind, per group and partition.",
        labels=("group", "topic", "partition"),
    )
    lag_seconds = GaugeMetricFamily(
        names.CONSUMER_LAG_SECONDS,
        "How long the oldest record not yet consumed has waited, per group and partition.",
        labels=("group", "topic", "partition"),
    )
    for row in kafka.lag if kafka is not None else ():
        row_labels = (row.group, row.topic, str(row.partition))
        lag.add_metric(row_labels, row.lag)
        if row.lag_seconds is not None:
            lag_seconds.add_metric(row_labels, row.lag_seconds)
    yield lag
    yield lag_seconds


@dataclass(frozen=True)
class KafkaFigures:
    """What /metrics reads from Kafka."""

    lag: list[PartitionLag]
    dead_letters: int


def _read_kafka_figures(settings: Settings) -> KafkaFigures:
    dlq = settings.topic(TOPIC_STATUS_DLQ)
    return KafkaFigures(
        consumer_lag(settings, 3.0, None, True), sum(end_offsets(settings, dlq, 3.0).values())
    )


def _state_families(state: dict[int, PartitionState]) -> Iterator[Metric]:
    """Each state partition's size and greatest poll, as its owner holds it."""
    for name, help_text, value_of in (
        (names.STATE_STORES, "Stores held, per state partition (from its owner).",
         lambda held: held.stores),
        (names.STATE_POLLS, "Polls held, per state partition (from its owner).",
         lambda held: held.polls),
        (names.STATE_GREATEST_POLL,
         "Greatest poll time held, per state partition (Unix seconds).",
         lambda held: None if held.newest_poll_us is None else held.newest_poll_us / 1e6),
    ):
        family = GaugeMetricFamily(name, help_text, labels=("partition",))
        for partition, held in sorted(state.items()):
            value = value_of(held)
            if value is not None:
                family.add_metric((str(partition),), value)
        yield family


@dataclass(frozen=True)
class ReportFigures:
    """What /metrics reads from PostgreSQL."""

    by_status: dict[str, int]
    durations: list[DurationBucket]


def _report_families(reports: ReportFigures) -> Iterator[Metric]:
    by_status = GaugeMetricFamily(
        names.REPORTS, "Reports in the database, by status.", labels=("status",)
    )
    for status, count in sorted(reports.by_status.items()):
        by_status.add_metric((status,), count)
    yield by_status
    durations = HistogramMetricFamily(
        names.REPORT_DURATION,
        "Seconds from a report's request to Complete, over every completed report.",
        labels=(),
    )
    # The database counts each bucket apart; the exposition's are cumulative.
    cumulative: list[tuple[str, float]] = []
    count = 0
    for bucket in reports.durations:
        count += bucket.reports
        cumulative.append((floatToGoString(bucket.le), count))
    if cumulative:
        seconds = sum(bucket.seconds_sum for bucket in reports.durations)
        durations.add_metric((), cumulative, seconds)
    yield durations


def counting_middleware(metrics: Metrics) -> web.middleware:
    """Counts every answer by method, route and status, and the time spent on it."""

    @web.middleware
    async def count_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
        started = time.perf_counter()
        status = 500
        try:
            response = await handler(request)
            status = response.status
            return response
        except web.HTTPException as exc:
            status = exc.status
            raise
        finally:
            resource = request.match_info.route.resource
            route = "(unmatched)" if resource is None else resource.canonical
            metrics.requests.labels(request.method, route, str(status)).inc()
            metrics.durations.labels(route).observe(time.perf_counter() - started)

    return count_requests
