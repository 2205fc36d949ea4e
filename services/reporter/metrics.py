"""The reporter's HTTP server: `GET /healthz`, `/readyz` and `/metrics` (prometheus_client's
text format, with the process's memory, CPU and GC).

Its own work, per process since it started (with several reporters, sum them): the
reports it ended, those it is gathering and their parts not stored yet, and the seconds
from planning to Complete of those it completed. Then how far each state partition's
owner is behind, read from Kafka at most every STATE_LAG_MAX_AGE_S: the same on every
reporter (take the max). While Kafka cannot be read, storemon_reporter_kafka_up is 0 and
those figures are left out; the rest is still served.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping
from contextlib import asynccontextmanager

import prometheus_client
from aiohttp import web
from prometheus_client.metrics_core import GaugeMetricFamily, Metric

from storemon.database.reports_db import REPORT_DURATION_BUCKETS_S
from storemon.observability import metric_names as names
from storemon.observability import prometheus
from storemon.observability.health import healthz, readiness
from storemon.state.lag import StateLag
from storemon.timebase import US_PER_SECOND

#: Consumer lag and newest polls are read from Kafka at most this often.
STATE_LAG_MAX_AGE_S = 5.0
#: How a report request handled here ends: completed, failed, or passed over (ended
#: elsewhere already).
REPORT_OUTCOMES = ("complete", "failed", "skipped")


class ReporterMetrics:
    def __init__(self) -> None:
        #: This reporter's own (the process, GC and platform collectors).
        self.registry = prometheus.registry()
        #: Report requests this process ended or passed over, by outcome (REPORT_OUTCOMES).
        self.reports = prometheus_client.Counter(
            names.REPORTER_REPORTS,
            "Report requests handled, by outcome.",
            ("outcome",),
            registry=self.registry,
        )
        # Every outcome from 0 on, so that rate() and increase() see its first report.
        for outcome in REPORT_OUTCOMES:
            self.reports.labels(outcome)
        #: report id -> its planned parts not stored yet, for the reports being gathered
        self.outstanding: dict[str, int] = {}
        prometheus_client.Gauge(
            names.REPORTER_REPORTS_GATHERING,
            "Reports this reporter is waiting on parts of.",
            registry=self.registry,
        ).set_function(lambda: len(self.outstanding))
        prometheus_client.Gauge(
            names.REPORTER_PARTS_OUTSTANDING,
            "Planned parts not stored yet, over the reports this reporter is gathering.",
            registry=self.registry,
        ).set_function(lambda: sum(self.outstanding.values()))
        #: Tasks sent again for parts still missing after a while.
        self.reasked_parts = prometheus_client.Counter(
            names.REPORTER_PARTS_REASKED,
            "Report tasks sent again because their part was still missing after a while"
            " (a task lost to its owner in a rebalance, or an owner behind or gone).",
            registry=self.registry,
        )
        #: Seconds from planning a report to its Complete, for those completed here.
        self.durations = prometheus_client.Histogram(
            names.REPORTER_REPORT_DURATION,
            "Seconds from this reporter planning a report (reading its as_of) to Complete,"
            " for the reports it completed.",
            buckets=REPORT_DURATION_BUCKETS_S,
            registry=self.registry,
        )

    def render(self, state: StateLag | None) -> str:
        """The exposition; the state's figures left out when `state` is None (Kafka away)."""
        return prometheus.exposition(self.registry, _state_lag_families(state))


def _state_lag_families(state: StateLag | None) -> Iterator[Metric]:
    yield GaugeMetricFamily(
        names.REPORTER_KAFKA_UP,
        "Whether the state's lag could be read.",
        0 if state is None else 1,
    )
    records = GaugeMetricFamily(
        names.STATE_LAG_RECORDS,
        "Records the worker group has not consumed, per input topic partition.",
        labels=("topic", "partition"),
    )
    seconds = GaugeMetricFamily(
        names.STATE_LAG_SECONDS,
        "Event time the partition's state lacks: the newest poll of the last store-status"
        " record minus the newest poll its owner accepted, at least 0 (absent while either"
        " is unknown).",
        labels=("partition",),
    )
    newest = GaugeMetricFamily(
        names.STATE_NEWEST_POLL,
        "Newest poll time the partition's owner accepted (Unix seconds).",
        labels=("partition",),
    )
    if state is not None:
        for row in state.records:
            records.add_metric((row.topic, str(row.partition)), row.lag)
        for partition, behind_s in sorted(state.seconds_behind().items()):
            seconds.add_metric((str(partition),), behind_s)
        for partition, newest_us in sorted(state.accepted_us.items()):
            newest.add_metric((str(partition),), newest_us / US_PER_SECOND)
    yield from (records, seconds, newest)


@asynccontextmanager
async def serving(
    host: str,
    port: int,
    metrics: Callable[[], Awaitable[str]],
    readiness_checks: Callable[[], Awaitable[Mapping[str, str]]],
) -> AsyncIterator[None]:
    """Serve /healthz, /readyz (`readiness_checks`) and /metrics (`metrics`) at
    http://host:port for the time of the `async with`."""

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=(await metrics()).encode(), headers={"Content-Type": prometheus.CONTENT_TYPE}
        )

    async def readyz(request: web.Request) -> web.Response:
        return readiness(await readiness_checks())

    app = web.Application()
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", serve_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()
