"""Liveness, readiness (Kafka and PostgreSQL reachable) and Prometheus metrics."""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from aiohttp import web
from confluent_kafka import KafkaException

from storemon.api.context import METRICS, POOL, PRODUCER, SETTINGS
from storemon.api.errors import error_response
from storemon.api.metrics import ReportFigures
from storemon.database import reports_db
from storemon.kafka.topics import TOPIC_REPORT_REQUESTS
from storemon.observability import prometheus

log = logging.getLogger("storemon.api")

#: How long readiness waits for each server.
READY_TIMEOUT_S = 3.0


async def healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _postgres_check(request: web.Request) -> str:
    try:
        async with reports_db.acquire(request.app[POOL], READY_TIMEOUT_S) as connection:
            await connection.fetchval("SELECT 1", timeout=READY_TIMEOUT_S)
    except Exception as exc:
        # Any error of the server's, or any meaning it cannot be reached (OSError
        # covers timeouts), such as a pooled connection its restart broke.
        if not (isinstance(exc, asyncpg.PostgresError) or reports_db.is_unavailable(exc)):
            raise
        return f"unreachable: {exc or type(exc).__name__}"
    return "ok"


async def _kafka_check(request: web.Request) -> str:
    topic = request.app[SETTINGS].topic(TOPIC_REPORT_REQUESTS)
    try:
        if not await request.app[PRODUCER].topic_exists(topic, READY_TIMEOUT_S):
            return f"topic {topic} missing"
    except KafkaException as exc:
        return f"unreachable: {exc}"
    return "ok"


async def readyz(request: web.Request) -> web.Response:
    postgres, kafka = await asyncio.gather(_postgres_check(request), _kafka_check(request))
    checks = {"postgres": postgres, "kafka": kafka}
    if postgres == kafka == "ok":
        return web.json_response({"status": "ready", "checks": checks})
    failing = ", ".join(f"{name} {state}" for name, state in checks.items() if state != "ok")
    return error_response(503, "not_ready", failing, checks=checks)


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
    lag = await request.app[METRICS].consumer_lag(request.app[SETTINGS])
    text = request.app[METRICS].render(reports, lag)
    return web.Response(body=text.encode(), headers={"Content-Type": prometheus.CONTENT_TYPE})


def add_routes(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
    app.router.add_get("/metrics", metrics)
