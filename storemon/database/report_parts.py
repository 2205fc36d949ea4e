"""A report's plan and parts in PostgreSQL, and the CSV assembled from them.

A reporter plans a report (`plan_report`: its `as_of` and the state partitions
asked, fixed at the first attempt so a redo asks the same); the owner of each
state partition stores its part (`store_part`: the part's CSV rows, one table row
per store, and the input offsets its state had applied); when every planned part
is in, a reporter assembles the CSV (`assemble_report`): in one transaction it
reads the rows in store_id order through a cursor, a batch at a time, writes them
into one large object and marks the report Complete, so no process ever holds all
of a report's rows. Storing a part twice (a task redone after its owner died) is
harmless: the first stored wins, the second is a no-op. Nothing is stored for a
report that is no longer Running. A stored part is announced (NOTIFY on the
schema's parts channel, on commit), so the reporter gathering it assembles at once
instead of at its next look (storemon/database/notifications.py).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

import asyncpg

from storemon.database import notifications
from storemon.database.reports_db import (
    LargeObjectWriter,
    StoredCsv,
    lock_running,
    mark_complete,
)

log = logging.getLogger(__name__)

#: Rows fetched from the cursor at a time while assembling a CSV.
ASSEMBLY_BATCH_ROWS = 10_000


@dataclass(frozen=True)
class Plan:
    """What a report asks of the state: every part at `as_of`, one per partition."""

    as_of: datetime
    partitions: tuple[int, ...]


async def plan_report(
    connection: asyncpg.Connection, report_id: str, as_of: datetime, partitions: Iterable[int]
) -> Plan | None:
    """Record the report's plan unless it has one; the plan it has. None: not Running."""
    record = await connection.fetchrow(
        "UPDATE reports SET as_of = coalesce(as_of, $2),"
        " partitions = coalesce(partitions, $3::integer[])"
        " WHERE report_id = $1 AND status = 'Running' RETURNING as_of, partitions",
        report_id,
        as_of,
        sorted(set(partitions)),
    )
    if record is None:
        return None
    return Plan(record["as_of"], tuple(record["partitions"]))


@dataclass(frozen=True)
class Progress:
    #: Whether the report is still Running.
    running: bool
    #: The partitions whose part is stored.
    stored: set[int]
    #: Whether it has been Running for longer than the timeout asked about.
    overdue: bool


async def report_progress(
    connection: asyncpg.Connection, report_id: str, timeout_s: float
) -> Progress:
    """How far the report is (overdue: Running longer than `timeout_s`, if above 0)."""
    record = await connection.fetchrow(
        "SELECT status = 'Running' AS running,"
        " $2 > 0 AND requested_at < now() - make_interval(secs => $2) AS overdue,"
        " ARRAY(SELECT partition FROM report_parts AS part"
        "       WHERE part.report_id = report.report_id) AS stored"
        " FROM reports AS report WHERE report_id = $1",
        report_id,
        float(timeout_s),
    )
    if record is None:
        return Progress(False, set(), False)
    return Progress(record["running"], set(record["stored"]), record["overdue"])


async def part_wanted(connection: asyncpg.Connection, report_id: str, partition: int) -> bool:
    """Whether the report is Running and still lacks this partition's part."""
    wanted: bool = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM reports WHERE report_id = $1 AND status = 'Running')"
        " AND NOT EXISTS (SELECT 1 FROM report_parts"
        " WHERE report_id = $1 AND partition = $2)",
        report_id,
        partition,
    )
    return wanted


async def store_part(
    connection: asyncpg.Connection,
    report_id: str,
    partition: int,
    rows: list[tuple[str, str]],
    *,
    state_offsets: dict[str, dict[int, int]],
    computed_by: str,
) -> bool:
    """Store one part: its (store_id, CSV line) rows; False, storing nothing, if the
    report is no longer Running or the part is already stored."""
    async with connection.transaction():
        # Shared: parts of one report are stored side by side, while the report's end
        # (assembled, failed, timed out) waits for them and they for it.
        status = await connection.fetchval(
            "SELECT status FROM reports WHERE report_id = $1 FOR SHARE", report_id
        )
        if status != "Running":
            return False
        inserted = await connection.fetchval(
            "INSERT INTO report_parts (report_id, partition, row_count, state_offsets,"
            " computed_by) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING true",
            report_id,
            partition,
            len(rows),
            state_offsets,
            computed_by,
        )
        if not inserted:
            return False
        if rows:
            await connection.copy_records_to_table(
                "report_rows",
                records=((report_id, store_id, line) for store_id, line in rows),
                columns=("report_id", "store_id", "line"),
            )
        await connection.execute(
            "SELECT pg_notify($1 || current_schema(), $2)", notifications.PARTS, report_id
        )
    return True


async def assemble_report(
    connection: asyncpg.Connection, report_id: str, header: str
) -> StoredCsv | None:
    """The CSV of a report whose planned parts are all stored, into one large object,
    and the report Complete, in one transaction. None, writing nothing: the report is
    not Running, has no plan, or lacks a part."""
    async with connection.transaction():
        if not await lock_running(connection, report_id):
            return None
        report = await connection.fetchrow(
            "SELECT as_of, partitions FROM reports WHERE report_id = $1", report_id
        )
        parts = await connection.fetch(
            "SELECT partition, row_count, state_offsets FROM report_parts WHERE report_id = $1",
            report_id,
        )
        if report["partitions"] is None or {part["partition"] for part in parts} != set(
            report["partitions"]
        ):
            return None
        writer = LargeObjectWriter(connection)
        await writer.open()
        await writer.write(f"{header}\n".encode())
        cursor = connection.cursor(
            "SELECT line FROM report_rows WHERE report_id = $1 ORDER BY store_id",
            report_id,
            prefetch=ASSEMBLY_BATCH_ROWS,
        )
        batch: list[str] = []
        async for record in cursor:
            batch.append(record["line"])
            if len(batch) == ASSEMBLY_BATCH_ROWS:
                await writer.write(("\n".join(batch) + "\n").encode())
                batch.clear()
        if batch:
            await writer.write(("\n".join(batch) + "\n").encode())
        stored = await writer.close()
        offsets: dict[str, dict[int, int]] = {}
        for part in parts:
            for topic, by_partition in part["state_offsets"].items():
                offsets.setdefault(topic, {}).update(by_partition)
        await mark_complete(
            connection,
            report_id,
            stored,
            row_count=sum(part["row_count"] for part in parts),
            as_of=report["as_of"],
            state_offsets=offsets,
        )
        await connection.execute("DELETE FROM report_rows WHERE report_id = $1", report_id)
    return stored
