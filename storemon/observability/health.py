"""Liveness and readiness answers of the services' HTTP servers (the API, the reporter).

Each service names its checks (`postgres`, `kafka`, ...); a check is "ok" or what is
wrong. `/readyz` answers 200 `{"status": "ready", "checks"}` when all are "ok", else
503 with the usual error body (`{"error": {"code": "not_ready", "message"}}`) and the
checks.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

import asyncpg
from aiohttp import web
from confluent_kafka import KafkaException

from storemon.database import reports_db

#: How long readiness waits for each server.
READY_TIMEOUT_S = 3.0
OK = "ok"


def error_response(
    status: int,
    code: str,
    message: str,
    headers: dict[str, str] | None = None,
    **extra: Any,
) -> web.Response:
    """An error as JSON `{"error": {"code", "message"}, ...extra}`."""
    return web.json_response(
        {"error": {"code": code, "message": message}, **extra}, status=status, headers=headers
    )


async def healthz(request: web.Request) -> web.Response:
    """Liveness: answered while the process's event loop runs."""
    return web.json_response({"status": OK})


async def postgres_check(pool: asyncpg.Pool) -> str:
    """"ok", or why a pooled connection could not run a query."""
    try:
        async with reports_db.acquire(pool, READY_TIMEOUT_S) as connection:
            await connection.fetchval("SELECT 1", timeout=READY_TIMEOUT_S)
    except Exception as exc:
        # Any error of the server's, or any meaning it cannot be reached (OSError
        # covers timeouts), such as a pooled connection its restart broke.
        if not (isinstance(exc, asyncpg.PostgresError) or reports_db.is_unavailable(exc)):
            raise
        return f"unreachable: {exc or type(exc).__name__}"
    return OK


async def kafka_check(topic_exists: Callable[[str, float], Awaitable[bool]], topic: str) -> str:
    """"ok", or why the broker did not confirm `topic` (asked with `topic_exists`)."""
    try:
        if not await topic_exists(topic, READY_TIMEOUT_S):
            return f"topic {topic} missing"
    except KafkaException as exc:
        return f"unreachable: {exc}"
    return OK


def readiness(checks: Mapping[str, str]) -> web.Response:
    """200 when every check is "ok", else 503 naming those that are not."""
    if all(state == OK for state in checks.values()):
        return web.json_response({"status": "ready", "checks": dict(checks)})
    failing = ", ".join(f"{name} {state}" for name, state in checks.items() if state != OK)
    return error_response(503, "not_ready", failing, checks=dict(checks))
