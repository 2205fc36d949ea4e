"""`GET /metrics`: the API's counters, reports by status and duration, and consumer lag,
as Prometheus text.

Request and event counters are this process's own: with several API replicas,
sum them. Reports (by status, and the request-to-Complete histogram) come from
PostgreSQL and consumer lag from Kafka, so every replica serves the same figures:
take one (max), not their sum. The duration histogram is counted in the database
because no API process sees a report complete (a reporter does), and its counts
live apart from the reports so that deleting reports never lowers them. What a
source that cannot be read would give is left out, its gauge
(storemon_database_up, storemon_kafka_up) 0: the rest is still served.
"""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from dataclasses import dataclass

import aiohttp
from aiohttp import web
from aiohttp.typedefs import Handler
from confluent_kafka import KafkaException

from storemon.api.owners import Owners, PartitionState, state_sizes
from storemon.config import Settings
from storemon.database.reports_db import DurationBucket
from storemon.kafka.lag import PartitionLag, consumer_lag
from storemon.kafka.offsets import end_offsets
from storemon.kafka.topics import TOPIC_STATUS_DLQ
from storemon.observability import metric_names as names
from storemon.observability.prometheus import Cached, family, family_by_label, histogram
from storemon.observability.prometheus import labels as prom_labels

#: Consumer lag is read from the broker at most this often, however often it is scraped.
LAG_MAX_AGE_S = 5.0


class Metrics:
    def __init__(self) -> None:
        #: (method, route, status) -> requests answered
        self.requests: Counter[tuple[str, str, int]] = Counter()
        #: route -> seconds spent answering, summed
        self.seconds: Counter[str] = Counter()
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
        database could not be read)."""
        lines: list[str] = []
        family(lines, names.HTTP_REQUESTS, "counter", "HTTP requests answered.")
        for (method, route, status), count in sorted(self.requests.items()):
            labels = prom_labels(method=method, route=route, status=str(status))
            lines.append(f"{names.HTTP_REQUESTS}{labels} {count}")
        family(
            lines,
            names.HTTP_REQUEST_DURATION,
            "summary",
            "Time spent answering HTTP requests, per route.",
        )
        answered: Counter[str] = Counter()
        for (_, route, _), count in self.requests.items():
            answered[route] += count
        for route, seconds in sorted(self.seconds.items()):
            labels = prom_labels(route=route)
            lines.append(f"{names.HTTP_REQUEST_DURATION}_sum{labels} {seconds:.6f}")
            lines.append(f"{names.HTTP_REQUEST_DURATION}_count{labels} {answered[route]}")
        family(lines, names.EVENTS, "counter", "Polls received on POST /events.")
        for outcome in ("accepted", "rejected"):
            lines.append(f"{names.EVENTS}{prom_labels(outcome=outcome)} {self.events[outcome]}")
        family(lines, names.DATABASE_UP, "gauge", "Whether the reports could be read.")
        lines.append(f"{names.DATABASE_UP} {0 if reports is None else 1}")
        if reports is not None:
            _render_reports(lines, reports)
        family(lines, names.KAFKA_UP, "gauge", "Whether consumer lag could be read.")
        lines.append(f"{names.KAFKA_UP} {0 if kafka is None else 1}")
        lag = None if kafka is None else kafka.lag
        if kafka is not None:
            family(lines, names.DEAD_LETTERS, "counter",
                   "Records written to store-status-dlq (rejected polls, hours, zones).")
            lines.append(f"{names.DEAD_LETTERS} {kafka.dead_letters}")
        _render_state(lines, state)
        family(lines, names.CONSUMER_LAG, "gauge", "Records behind, per group and partition.")
        for row in lag or ():
            labels = prom_labels(group=row.group, topic=row.topic, partition=str(row.partition))
            lines.append(f"{names.CONSUMER_LAG}{labels} {row.lag}")
        family(
            lines, names.CONSUMER_LAG_SECONDS, "gauge",
            "How long the oldest record not yet consumed has waited, per group and partition.",
        )
        for row in lag or ():
            if row.lag_seconds is not None:
                labels = prom_labels(group=row.group, topic=row.topic, partition=str(row.partition))
                lines.append(f"{names.CONSUMER_LAG_SECONDS}{labels} {row.lag_seconds:.3f}")
        return "\n".join(lines) + "\n"


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


def _render_state(lines: list[str], state: dict[int, PartitionState]) -> None:
    """Each state partition's size and greatest poll, as its owner holds it."""
    for name, kind, help_text, value_of in (
        (names.STATE_STORES, "gauge", "Stores held, per state partition (from its owner).",
         lambda held: held.stores),
        (names.STATE_POLLS, "gauge", "Polls held, per state partition (from its owner).",
         lambda held: held.polls),
        (names.STATE_GREATEST_POLL, "gauge",
         "Greatest poll time held, per state partition (Unix seconds).",
         lambda held: None if held.newest_poll_us is None else held.newest_poll_us / 1e6),
    ):
        family(lines, name, kind, help_text)
        for partition, held in sorted(state.items()):
            value = value_of(held)
            if value is not None:
                lines.append(f"{name}{prom_labels(partition=str(partition))} {value}")


@dataclass(frozen=True)
class ReportFigures:
    """What /metrics reads from PostgreSQL."""

    by_status: dict[str, int]
    durations: list[DurationBucket]


def _render_reports(lines: list[str], reports: ReportFigures) -> None:
    family_by_label(
        lines,
        names.REPORTS,
        "gauge",
        "Reports in the database, by status.",
        "status",
        reports.by_status,
    )
    histogram(
        lines,
        names.REPORT_DURATION,
        "Seconds from a report's request to Complete, over every completed report.",
        ((bucket.le, bucket.reports, bucket.seconds_sum) for bucket in reports.durations),
    )


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
            metrics.requests[(request.method, route, status)] += 1
            metrics.seconds[route] += time.perf_counter() - started

    return count_requests
