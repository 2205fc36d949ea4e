"""Report webhooks in PostgreSQL: registered with the report, leased when due, their
attempts recorded (storemon/webhooks.py says what is sent; the API sends it)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from storemon.database.reports_db import ReportRow


@dataclass(frozen=True)
class Webhook:
    report_id: str
    url: str
    attempts: list[dict[str, Any]]
    delivered_at: datetime | None
    given_up_at: datetime | None


async def register(connection: asyncpg.Connection, report_id: str, url: str) -> None:
    await connection.execute(
        "INSERT INTO report_webhooks (report_id, url) VALUES ($1, $2)", report_id, url
    )


async def of_report(connection: asyncpg.Connection, report_id: str) -> Webhook | None:
    record = await connection.fetchrow(
        "SELECT report_id, url, attempts, delivered_at, given_up_at FROM report_webhooks"
        " WHERE report_id = $1",
        report_id,
    )
    return None if record is None else Webhook(**dict(record.items()))


async def lease_due(
    connection: asyncpg.Connection, limit: int, lease_s: float
) -> list[tuple[ReportRow, Webhook]]:
    """Webhooks of ended reports due for an attempt, each leased for `lease_s` (another
    API replica leaves it alone until then; a replica that dies mid-attempt leaves it
    to be tried again when the lease ends)."""
    async with connection.transaction():
        records = await connection.fetch(
            "SELECT r.*, w.url AS webhook_url, w.attempts AS webhook_attempts"
            " FROM report_webhooks w JOIN reports r USING (report_id)"
            " WHERE r.status <> 'Running' AND w.delivered_at IS NULL"
            " AND w.given_up_at IS NULL AND w.next_attempt_at <= now()"
            " ORDER BY w.next_attempt_at LIMIT $1 FOR UPDATE OF w SKIP LOCKED",
            limit,
        )
        await connection.execute(
            "UPDATE report_webhooks SET next_attempt_at = now() + make_interval(secs => $2)"
            " WHERE report_id = ANY($1::text[])",
            [record["report_id"] for record in records],
            lease_s,
        )
    due = []
    for record in records:
        fields = dict(record.items())
        url, attempts = fields.pop("webhook_url"), fields.pop("webhook_attempts")
        due.append((ReportRow(**fields), Webhook(fields["report_id"], url, attempts, None, None)))
    return due


async def record_attempt(
    connection: asyncpg.Connection,
    report_id: str,
    attempt: dict[str, Any],
    *,
    delivered: bool,
    next_in_s: float | None,
) -> None:
    """Add the attempt; delivered, or tried again in `next_in_s` (None: given up)."""
    await connection.execute(
        "UPDATE report_webhooks SET attempts = attempts || $2::jsonb,"
        " delivered_at = CASE WHEN $3 THEN now() END,"
        " given_up_at = CASE WHEN NOT $3 AND $4::float8 IS NULL THEN now() END,"
        " next_attempt_at = now() + make_interval(secs => coalesce($4::float8, 0))"
        " WHERE report_id = $1",
        report_id,
        [attempt],
        delivered,
        next_in_s,
    )
