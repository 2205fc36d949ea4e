"""Liveness, readiness (Kafka and PostgreSQL reachable) and Prometheus metrics.

Liveness and the readiness checks are storemon/observability/health.py's, shared
with the reporter.
"""

from __future__ import annotations

import asyncio
import logging

from aiohttp import web

from storemon.api.context import METRICS, OWNERS, POOL, PRODUCER, SESSION, SETTINGS
from storemon.api.metrics import ReportFigures
from storemon.database import reports_db
from storemon.kafka.topics import TOPIC_REPORT_REQUESTS
from storemon.observability import prometheus
from storemon.observability.health import healthz, kafka_check, postgres_check, readiness

log = logging.getLogger("storemon.api")


async def readyz(request: web.Request) -> web.Response:
    topic = request.app[SETTINGS].topic(TOPIC_REPORT_REQUESTS)
    postgres, kafka = await asyncio.gather(
        postgres_check(request.app[POOL]),
        kafka_check(request.app[PRODUCER].topic_exists, topic),
    )
    return readiness({"postgres": postgres, "kafka": kafka})


async def _report_figures(request: web.Request) -> ReportFigures | None:
    """The reports' figures; None while the database cannot be reached."""
    try:
        async with reports_db.acquire(request.app[POOL]) as connection:
            return ReportFigures(
                await reports_db.count_by_status(connection),
                await reports_db.report_durations(connection),
            )
    except Exception as exc:
        if not reports_db.is_unavailable(exc):
            raise
        log.warning("GET /metrics without the reports: database unreachable: %s", exc)
        return None


async def metrics(request: web.Request) -> web.Response:
    """Whatever can be read: lag from Kafka does not wait for PostgreSQL, nor the reverse."""
    reports = await _report_figures(request)
    kafka = await request.app[METRICS].kafka_figures(request.app[SETTINGS])
    state = await request.app[METRICS].state_figures(request.app[OWNERS], request.app[SESSION])
    text = request.app[METRICS].render(reports, kafka, state)
    return web.Response(body=text.encode(), headers={"Content-Type": prometheus.CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
