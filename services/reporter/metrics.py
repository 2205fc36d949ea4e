"""The reporter's HTTP server: `GET /healthz`, `/readyz` and `/metrics` (Prometheus text).

Its own work, per process since it started (with several reporters, sum them): the
reports it ended, those it is gathering and their parts not stored yet, and the seconds
from planning to Complete of those it completed. Then how far each state partition's
owner is behind, read from Kafka at most every STATE_LAG_MAX_AGE_S: the same on every
reporter (take the max). While Kafka cannot be read, storemon_reporter_kafka_up is 0 and
those figures are left out; the rest is still served.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager

from aiohttp import web

from storemon.database.reports_db import REPORT_DURATION_BUCKETS_S
from storemon.observability import metric_names as names
from storemon.observability import prometheus
from storemon.observability.health import healthz, readiness
from storemon.observability.prometheus import Histogram, family, family_by_label, histogram, labels
from storemon.state.lag import StateLag
from storemon.timebase import US_PER_SECOND

#: Consumer lag and newest polls are read from Kafka at most this often.
STATE_LAG_MAX_AGE_S = 5.0


class ReporterMetrics:
    def __init__(self) -> None:
        #: "complete" / "failed" / "skipped" -> reports this process ended or passed over
        self.reports: Counter[str] = Counter()
        #: report id -> its planned parts not stored yet, for the reports being gathered
        self.outstanding: dict[str, int] = {}
        #: Tasks sent again for parts still missing after a while.
        self.reasked_parts = 0
        #: Seconds from planning a report to its Complete, for those completed here.
        self.durations = Histogram(REPORT_DURATION_BUCKETS_S)

    def render(self, state: StateLag | None) -> str:
        """The exposition; the state's figures left out when `state` is None (Kafka away)."""
        lines: list[str] = []
        family_by_label(
            lines,
            names.REPORTER_REPORTS,
            "counter",
            "Report requests handled, by outcome.",
            "outcome",
            self.reports,
        )
        family(
            lines,
            names.REPORTER_REPORTS_GATHERING,
            "gauge",
            "Reports this reporter is waiting on parts of.",
        )
        lines.append(f"{names.REPORTER_REPORTS_GATHERING} {len(self.outstanding)}")
        family(
            lines,
            names.REPORTER_PARTS_REASKED,
            "counter",
            "Report tasks sent again because their part was still missing after a while"
            " (a task lost to its owner in a rebalance, or an owner behind or gone).",
        )
        lines.append(f"{names.REPORTER_PARTS_REASKED} {self.reasked_parts}")
        family(
            lines,
            names.REPORTER_PARTS_OUTSTANDING,
            "gauge",
            "Planned parts not stored yet, over the reports this reporter is gathering.",
        )
        lines.append(f"{names.REPORTER_PARTS_OUTSTANDING} {sum(self.outstanding.values())}")
        histogram(
            lines,
            names.REPORTER_REPORT_DURATION,
            "Seconds from this reporter planning a report (reading its as_of) to Complete,"
            " for the reports it completed.",
            self.durations.buckets(),
        )
        family(lines, names.REPORTER_KAFKA_UP, "gauge", "Whether the state's lag could be read.")
        lines.append(f"{names.REPORTER_KAFKA_UP} {0 if state is None else 1}")
        _render_state_lag(lines, state)
        return "\n".join(lines) + "\n"


def _render_state_lag(lines: list[str], state: StateLag | None) -> None:
    family(
        lines,
        names.STATE_LAG_RECORDS,
        "gauge",
        "Records the worker group has not consumed, per input topic partition.",
    )
    for row in state.records if state is not None else ():
        row_labels = labels(topic=row.topic, partition=str(row.partition))
        lines.append(f"{names.STATE_LAG_RECORDS}{row_labels} {row.lag}")
    family(
        lines,
        names.STATE_LAG_SECONDS,
        "gauge",
        "Event time the partition's state lacks: the newest poll of the last store-status"
        " record minus the newest poll its owner accepted, at least 0 (absent while either"
        " is unknown).",
    )
    for partition, seconds in sorted((state.seconds_behind() if state else {}).items()):
        lines.append(f"{names.STATE_LAG_SECONDS}{labels(partition=str(partition))} {seconds:.6f}")
    family(
        lines,
        names.STATE_NEWEST_POLL,
        "gauge",
        "Newest poll time the partition's owner accepted (Unix seconds).",
    )
    for partition, newest_us in sorted((state.accepted_us if state else {}).items()):
        value = newest_us / US_PER_SECOND
        lines.append(f"{names.STATE_NEWEST_POLL}{labels(partition=str(partition))} {value:.6f}")


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
