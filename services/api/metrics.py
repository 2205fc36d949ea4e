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

from aiohttp import web
from aiohttp.typedefs import Handler
from confluent_kafka import KafkaException

from storemon.config import Settings
from storemon.database.reports_db import DurationBucket
from storemon.kafka.lag import PartitionLag, consumer_lag
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
        self._lag: Cached[list[PartitionLag]] | None = None

    async def consumer_lag(self, settings: Settings) -> list[PartitionLag] | None:
        """Lag of the deployment's groups, at most LAG_MAX_AGE_S old; None if Kafka is down."""
        if self._lag is None:
            self._lag = Cached(
                lambda: asyncio.to_thread(consumer_lag, settings, 3.0, None, True),
                (KafkaException, TimeoutError),
                LAG_MAX_AGE_S,
            )
        return await self._lag.get()

    def render(self, reports: ReportFigures | None, lag: list[PartitionLag] | None) -> str:
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
        lines.append(f"{names.KAFKA_UP} {0 if lag is None else 1}")
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
