"""The `reports` table and the report CSVs as PostgreSQL large objects.

Shared by the API (which creates, reads, streams and deletes reports) and the
reporter (which completes or fails them). asyncpg has no large-object API, so
the server functions do the work, chunk by chunk: lo_create, lo_open, lowrite
and lo_close inside the transaction that completes a report (a large object
descriptor only lives as long as its transaction), lo_get to read one back
(each chunk on its own, so no connection stays busy between chunks) and
lo_unlink.

A report moves from `Running` to `Complete` or `Failed`, never back: every
update below is conditional on the row still being `Running`, so a late
reporter cannot overwrite a report that timed out or was done by another.
All timestamps are the database's clock (`now()`), so the timeout is judged
against one clock whoever checks it. Completing a report also counts its
request-to-Complete time in `report_duration_buckets`, the histogram the API
serves as storemon_report_duration_seconds.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg
from asyncpg.pool import PoolAcquireContext

from storemon.config import Settings

RUNNING = "Running"
COMPLETE = "Complete"
FAILED = "Failed"
TIMED_OUT = "timed out"

#: 128 random bits as lower-case hex (schemas/report-request.schema.json).
#: Bytes per lowrite / lo_get call.
CHUNK_BYTES = 1024 * 1024
#: How long a caller waits for a pooled connection at most (`acquire`).
ACQUIRE_TIMEOUT_S = 5.0
#: Upper bounds (seconds) of the report duration histogram's buckets, +Inf added.
#: Reports take about half a second (BENCHMARKS.md) and time out after
#: STOREMON_REPORT_TIMEOUT_S (300 by default). A bound added later starts at 0;
#: the reports before it stay counted under the next bound up.
REPORT_DURATION_BUCKETS_S = (0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0, 600.0)

_INV_WRITE = 0x20000
_SCHEMA_NAME_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")

_DDL = """
CREATE TABLE IF NOT EXISTS reports (
    report_id       text PRIMARY KEY CHECK (report_id ~ '^[0-9a-f]{32}$'),
    status          text NOT NULL CHECK (status IN ('Running', 'Complete', 'Failed')),
    requested_at    timestamptz NOT NULL,
    -- what was asked for: {"as_of": ..., "store_ids": [...]}, both optional
    request         jsonb NOT NULL,
    -- how many times a reporter started on it (more than one: redone after a crash)
    attempts        integer NOT NULL DEFAULT 0,
    started_at      timestamptz,
    finished_at     timestamptz,
    as_of           timestamptz,
    row_count       bigint,
    byte_size       bigint,
    checksum_sha256 text,
    lo_oid          oid,
    -- the state the report was computed from: changelog topic -> partition -> offset
    state_offsets   jsonb,
    error           text,
    CHECK (status <> 'Complete'
           OR (lo_oid IS NOT NULL AND byte_size IS NOT NULL AND checksum_sha256 IS NOT NULL)),
    CHECK (status <> 'Failed' OR error IS NOT NULL)
);
-- The state partitions a report was planned over (one part each), set when planned;
-- its as_of is set then too, so a reporter redoing the report asks the same.
ALTER TABLE reports ADD COLUMN IF NOT EXISTS partitions integer[];
CREATE INDEX IF NOT EXISTS reports_requested_at ON reports (requested_at);
CREATE INDEX IF NOT EXISTS reports_running ON reports (requested_at) WHERE status = 'Running';
-- Completed reports by seconds from request to Complete: a Prometheus histogram
-- kept here rather than in a process, so every API replica serves the same counts,
-- whichever reporter completed a report; kept apart from `reports`, so deleting
-- reports never lowers a count. Not cumulative: a report of d seconds counts once,
-- in the bucket with the smallest le >= d.
CREATE TABLE IF NOT EXISTS report_duration_buckets (
    le          double precision PRIMARY KEY,  -- upper bound, seconds; the last 'Infinity'
    reports     bigint NOT NULL DEFAULT 0,
    seconds_sum double precision NOT NULL DEFAULT 0
);
-- One row per part of a report stored by the owner of its state partition; its
-- rows wait in report_rows until the last part is in and the CSV is assembled.
CREATE TABLE IF NOT EXISTS report_parts (
    report_id     text NOT NULL REFERENCES reports ON DELETE CASCADE,
    partition     integer NOT NULL,
    row_count     integer NOT NULL,
    -- the input offsets the part's state had applied: topic -> partition -> offset
    state_offsets jsonb NOT NULL,
    computed_by   text NOT NULL,
    computed_at   timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (report_id, partition)
);
-- The CSV rows of stored parts; "C" collation: byte order, which is the order of
-- code points the engine sorts store_ids in, so the index yields the CSV's order.
CREATE TABLE IF NOT EXISTS report_rows (
    report_id text NOT NULL REFERENCES reports ON DELETE CASCADE,
    store_id  text COLLATE "C" NOT NULL,
    line      text NOT NULL,
    PRIMARY KEY (report_id, store_id)
);
-- When the report's ending (Complete or Failed) was published on report-events; until
-- then a reporter publishes it (again after a crash: at least once). Reports that
-- ended before the column existed count as published.
DO $$
BEGIN
    IF NOT EXISTS (
        SELECT 1 FROM information_schema.columns
        WHERE table_schema = current_schema() AND table_name = 'reports'
          AND column_name = 'announced_at'
    ) THEN
        ALTER TABLE reports ADD COLUMN announced_at timestamptz;
        UPDATE reports SET announced_at = finished_at WHERE status <> 'Running';
    END IF;
END $$;
CREATE INDEX IF NOT EXISTS reports_unannounced ON reports (finished_at)
    WHERE status <> 'Running' AND announced_at IS NULL;
-- A report's webhook (POST /trigger_report's callback_url): its attempts, each
-- {"at", "status" or "error"}, and when it was delivered or given up. An API replica
-- leases a due one (next_attempt_at moved past the attempt) before posting it.
CREATE TABLE IF NOT EXISTS report_webhooks (
    report_id       text PRIMARY KEY REFERENCES reports ON DELETE CASCADE,
    url             text NOT NULL,
    attempts        jsonb NOT NULL DEFAULT '[]',
    next_attempt_at timestamptz NOT NULL DEFAULT now(),
    delivered_at    timestamptz,
    given_up_at     timestamptz
);
CREATE INDEX IF NOT EXISTS report_webhooks_due ON report_webhooks (next_attempt_at)
    WHERE delivered_at IS NULL AND given_up_at IS NULL;
-- Every change of a report's status, whoever makes it (reporter, worker, housekeeping),
-- is announced on the channel storemon_reports_<schema> (storemon/database/notifications.py).
CREATE OR REPLACE FUNCTION report_status_changed() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('storemon_reports_' || TG_TABLE_SCHEMA, NEW.report_id);
    RETURN NULL;
END $$;
CREATE OR REPLACE TRIGGER reports_status_changed
    AFTER UPDATE OF status ON reports FOR EACH ROW
    WHEN (OLD.status IS DISTINCT FROM NEW.status)
    EXECUTE FUNCTION report_status_changed();
"""


#: What a refused, lost or shutting-down connection raises: the server is away, not
#: the query wrong. OSError covers refused and reset connections and timeouts.
#:
#: InternalClientError is asyncpg's protocol out of step with the server. A server
#: restart does that to a pooled connection that was idle: the loop reads the
#: server's farewell (an error no query asked for) on one turn and the connection's
#: end only on a later one, and in between the pool still hands the connection out;
#: its first query then fails with "cannot switch to state ...; another operation
#: (2) is in progress". A process frozen or busy while the server stopped meets this
#: on its first query. Such an error is never the query's fault (that is a
#: PostgresError, or an InterfaceError such as DataError for bad arguments), and the
#: connection is not used again (closed once its end is read, or terminated by the
#: pool when its reset on release fails), so the work tried again gets a fresh
#: connection, which finds out whether the server is there.
_UNAVAILABLE: tuple[type[Exception], ...] = (
    OSError,
    asyncpg.PostgresConnectionError,
    asyncpg.AdminShutdownError,
    asyncpg.CrashShutdownError,
    asyncpg.CannotConnectNowError,
    asyncpg.InternalClientError,
)


def is_unavailable(error: BaseException) -> bool:
    """Whether `error` means the database cannot be reached (so the work may be retried)."""
    if isinstance(error, asyncpg.InterfaceError) and error.__context__ is not None:
        # E.g. a transaction's rollback on the connection the server just closed:
        # what counts is why it was closed.
        error = error.__context__
    return isinstance(error, _UNAVAILABLE)


def is_database_error(error: BaseException) -> bool:
    """Whether `error` came from the database or the way to it (not from storemon's code)."""
    return is_unavailable(error) or isinstance(
        error, asyncpg.PostgresError | asyncpg.InterfaceError
    )


@dataclass(frozen=True)
class ReportRow:
    report_id: str
    status: str
    requested_at: datetime
    request: dict[str, Any]
    attempts: int
    started_at: datetime | None
    finished_at: datetime | None
    as_of: datetime | None
    row_count: int | None
    byte_size: int | None
    checksum_sha256: str | None
    lo_oid: int | None
    state_offsets: dict[str, dict[str, int]] | None
    error: str | None
    #: The state partitions it was planned over (None: not planned yet, or no polls).
    partitions: list[int] | None
    #: When its ending was published on report-events (None: not yet, or Running).
    announced_at: datetime | None = None

    @classmethod
    def from_record(cls, record: asyncpg.Record) -> ReportRow:
        return cls(**dict(record.items()))


@dataclass(frozen=True)
class StoredCsv:
    """What `complete_report` wrote."""

    lo_oid: int
    byte_size: int
    checksum_sha256: str


# ---------------------------------------------------------------------------------------
# Connections and schema
# ---------------------------------------------------------------------------------------


def acquire(pool: asyncpg.Pool, timeout: float = ACQUIRE_TIMEOUT_S) -> PoolAcquireContext:
    """A connection of `pool`, waited for at most `timeout` seconds: a pool all busy
    raises TimeoutError, which counts as the database unavailable (is_unavailable)."""
    return pool.acquire(timeout=timeout)


async def _init_connection(connection: asyncpg.Connection) -> None:
    for type_name in ("json", "jsonb"):
        await connection.set_type_codec(
            type_name, encoder=json.dumps, decoder=json.loads, schema="pg_catalog"
        )


async def create_pool(
    settings: Settings, application_name: str, min_size: int = 1, max_size: int = 10
) -> asyncpg.Pool:
    """A pool whose connections find the reports table in `settings.db_schema`.

    Creates the schema and table when missing (idempotent, safe to race).
    """
    if _SCHEMA_NAME_RE.fullmatch(settings.db_schema) is None:
        raise ValueError(
            f"STOREMON_DB_SCHEMA must be a plain identifier (letters, digits, _), "
            f"got {settings.db_schema!r}"
        )
    pool = await asyncpg.create_pool(
        settings.database_url,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        server_settings={"search_path": settings.db_schema, "application_name": application_name},
    )
    try:
        async with acquire(pool) as connection:
            await _ensure_schema(connection, settings.db_schema)
    except BaseException:
        await pool.close()
        raise
    return pool


async def _ensure_schema(connection: asyncpg.Connection, schema: str) -> None:
    async with connection.transaction():
        # Services starting together would otherwise race on CREATE ... IF NOT EXISTS.
        await connection.execute("SELECT pg_advisory_xact_lock(hashtext('storemon.reports'))")
        exists = await connection.fetchval(
            "SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)", schema
        )
        if not exists:
            # An identifier cannot be a parameter: the server quotes it (%I).
            create = await connection.fetchval(
                "SELECT format('CREATE SCHEMA %I', $1::text)", schema
            )
            await connection.execute(create)
        await connection.execute(_DDL)
        await connection.execute(
            "INSERT INTO report_duration_buckets (le) SELECT unnest($1::float8[])"
            " ON CONFLICT DO NOTHING",
            [*REPORT_DURATION_BUCKETS_S, math.inf],
        )


# ---------------------------------------------------------------------------------------
# Report rows
# ---------------------------------------------------------------------------------------


async def insert_running(
    connection: asyncpg.Connection, report_id: str, request: dict[str, Any]
) -> datetime:
    """Register a new report as Running; returns its requested_at."""
    requested_at: datetime = await connection.fetchval(
        "INSERT INTO reports (report_id, status, requested_at, request)"
        " VALUES ($1, 'Running', now(), $2) RETURNING requested_at",
        report_id,
        request,
    )
    return requested_at


async def fetch_report(connection: asyncpg.Connection, report_id: str) -> ReportRow | None:
    record = await connection.fetchrow("SELECT * FROM reports WHERE report_id = $1", report_id)
    return None if record is None else ReportRow.from_record(record)


async def list_reports(
    connection: asyncpg.Connection,
    limit: int,
    *,
    status: str | None = None,
    since: datetime | None = None,
    before: tuple[datetime, str] | None = None,
) -> list[ReportRow]:
    """The most recently requested reports, newest first (ties: report_id descending):
    only those with `status`, requested at or after `since`, and after the (requested_at,
    report_id) `before` in that order (a page's cursor)."""
    records = await connection.fetch(
        "SELECT * FROM reports"
        " WHERE ($2::text IS NULL OR status = $2)"
        " AND ($3::timestamptz IS NULL OR requested_at >= $3)"
        " AND ($4::timestamptz IS NULL OR (requested_at, report_id) < ($4, $5::text))"
        " ORDER BY requested_at DESC, report_id DESC LIMIT $1",
        limit,
        status,
        since,
        None if before is None else before[0],
        None if before is None else before[1],
    )
    return [ReportRow.from_record(record) for record in records]


async def count_by_status(connection: asyncpg.Connection) -> dict[str, int]:
    records = await connection.fetch("SELECT status, count(*) FROM reports GROUP BY status")
    return {status: 0 for status in (RUNNING, COMPLETE, FAILED)} | {
        record["status"]: record["count"] for record in records
    }


@dataclass(frozen=True)
class DurationBucket:
    """Completed reports whose request-to-Complete time was at most `le` seconds and more
    than the previous bucket's `le`, and those times summed."""

    le: float
    reports: int
    seconds_sum: float


async def report_durations(connection: asyncpg.Connection) -> list[DurationBucket]:
    """The report duration histogram's buckets, by increasing `le` (the last is +Inf)."""
    records = await connection.fetch(
        "SELECT le, reports, seconds_sum FROM report_duration_buckets ORDER BY le"
    )
    return [DurationBucket(**dict(record.items())) for record in records]


#: Counts a report just marked Complete in its duration's bucket: finished_at is
#: now(), the database's clock, like requested_at.
_COUNT_REPORT_DURATION = """
UPDATE report_duration_buckets AS bucket
SET reports = bucket.reports + 1, seconds_sum = bucket.seconds_sum + report.seconds
FROM (SELECT extract(epoch FROM finished_at - requested_at)::float8 AS seconds
      FROM reports WHERE report_id = $1) AS report
WHERE bucket.le = (SELECT min(le) FROM report_duration_buckets WHERE le >= report.seconds)
"""


async def start_attempt(connection: asyncpg.Connection, report_id: str) -> ReportRow | None:
    """Count a reporter's attempt at a Running report; None if it is not Running (any more)."""
    record = await connection.fetchrow(
        "UPDATE reports SET attempts = attempts + 1, started_at = now()"
        " WHERE report_id = $1 AND status = 'Running' RETURNING *",
        report_id,
    )
    return None if record is None else ReportRow.from_record(record)


async def complete_report(
    connection: asyncpg.Connection,
    report_id: str,
    csv: bytes,
    *,
    row_count: int,
    as_of: datetime | None,
    state_offsets: dict[str, dict[int, int]],
) -> StoredCsv | None:
    """Store the CSV as a large object and mark the report Complete, in one transaction.

    Returns None, writing nothing, when the report is no longer Running (done by
    another reporter, timed out, or deleted).
    """
    async with connection.transaction():
        if not await lock_running(connection, report_id):
            return None
        stored = await _write_large_object(connection, csv)
        await mark_complete(
            connection,
            report_id,
            stored,
            row_count=row_count,
            as_of=as_of,
            state_offsets=state_offsets,
        )
    return stored


class LargeObjectWriter:
    """Writes one new large object in CHUNK_BYTES calls, inside the caller's transaction."""

    def __init__(self, connection: asyncpg.Connection) -> None:
        self._connection = connection
        self._buffer = bytearray()
        self._digest = hashlib.sha256()
        self._size = 0
        self._oid = 0
        self._descriptor = 0

    async def open(self) -> None:
        self._oid = await self._connection.fetchval("SELECT lo_create(0)")
        self._descriptor = await self._connection.fetchval(
            "SELECT lo_open($1, $2)", self._oid, _INV_WRITE
        )

    async def write(self, data: bytes) -> None:
        self._buffer += data
        if len(self._buffer) >= CHUNK_BYTES:
            await self._flush()

    async def _flush(self) -> None:
        data = bytes(self._buffer)
        self._buffer.clear()
        for start in range(0, len(data), CHUNK_BYTES):
            chunk = data[start : start + CHUNK_BYTES]
            await self._connection.execute("SELECT lowrite($1, $2)", self._descriptor, chunk)
            self._digest.update(chunk)
            self._size += len(chunk)

    async def close(self) -> StoredCsv:
        await self._flush()
        await self._connection.execute("SELECT lo_close($1)", self._descriptor)
        return StoredCsv(self._oid, self._size, self._digest.hexdigest())


async def _write_large_object(connection: asyncpg.Connection, data: bytes) -> StoredCsv:
    writer = LargeObjectWriter(connection)
    await writer.open()
    await writer.write(data)
    return await writer.close()


async def mark_complete(
    connection: asyncpg.Connection,
    report_id: str,
    stored: StoredCsv,
    *,
    row_count: int,
    as_of: datetime | None,
    state_offsets: dict[str, dict[int, int]],
) -> None:
    """Mark a Running report, locked by the caller's transaction, Complete with its CSV."""
    await connection.execute(
        "UPDATE reports SET status = 'Complete', finished_at = now(), as_of = $2,"
        " row_count = $3, byte_size = $4, checksum_sha256 = $5, lo_oid = $6,"
        " state_offsets = $7 WHERE report_id = $1",
        report_id,
        as_of,
        row_count,
        stored.byte_size,
        stored.checksum_sha256,
        stored.lo_oid,
        state_offsets,
    )
    # Last, so the bucket's row is locked only until the commit just after.
    await connection.execute(_COUNT_REPORT_DURATION, report_id)


async def lock_running(connection: asyncpg.Connection, report_id: str) -> bool:
    """Lock the report's row for the caller's transaction; whether it is Running."""
    status = await connection.fetchval(
        "SELECT status FROM reports WHERE report_id = $1 FOR UPDATE", report_id
    )
    return bool(status == RUNNING)


async def fail_report(connection: asyncpg.Connection, report_id: str, reason: str) -> bool:
    """Mark a Running report Failed; False if it was not Running."""
    async with connection.transaction():
        result = await connection.execute(
            "UPDATE reports SET status = 'Failed', finished_at = now(), error = $2"
            " WHERE report_id = $1 AND status = 'Running'",
            report_id,
            reason,
        )
        await _drop_parts(connection, [report_id])
    return bool(result == "UPDATE 1")


#: A report planned over partitions names those without a part in its error.
_FAIL_OVERDUE = """
UPDATE reports AS report SET status = 'Failed', finished_at = now(), error = $3 || coalesce(
    ': no part from partition(s) ' || (
        SELECT string_agg(planned::text, ', ' ORDER BY planned)
        FROM unnest(report.partitions) AS planned
        WHERE NOT EXISTS (SELECT 1 FROM report_parts AS part
                          WHERE part.report_id = report.report_id
                          AND part.partition = planned)),
    '')
WHERE status = 'Running' AND requested_at < now() - make_interval(secs => $1)
AND ($2::text IS NULL OR report_id = $2) RETURNING report_id
"""


async def fail_overdue(
    connection: asyncpg.Connection, timeout_s: float, report_id: str | None = None
) -> list[str]:
    """Mark Failed ('timed out') the reports Running for longer than `timeout_s`.

    All of them, or only `report_id`. Returns the ids marked.
    """
    async with connection.transaction():
        records = await connection.fetch(_FAIL_OVERDUE, float(timeout_s), report_id, TIMED_OUT)
        failed = [record["report_id"] for record in records]
        await _drop_parts(connection, failed)
    return failed


async def _drop_parts(connection: asyncpg.Connection, report_ids: list[str]) -> None:
    """The stored parts of reports that ended: their rows are of no more use."""
    if report_ids:
        await connection.execute(
            "DELETE FROM report_rows WHERE report_id = ANY($1::text[])", report_ids
        )


async def ended_unannounced(connection: asyncpg.Connection, limit: int) -> list[ReportRow]:
    """Ended reports whose ending is not published yet, oldest ending first, locked for
    this transaction (another reporter publishing at once skips them)."""
    records = await connection.fetch(
        "SELECT * FROM reports WHERE status <> 'Running' AND announced_at IS NULL"
        " ORDER BY finished_at, report_id LIMIT $1 FOR UPDATE SKIP LOCKED",
        limit,
    )
    return [ReportRow.from_record(record) for record in records]


async def mark_announced(connection: asyncpg.Connection, report_ids: list[str]) -> None:
    await connection.execute(
        "UPDATE reports SET announced_at = now() WHERE report_id = ANY($1::text[])", report_ids
    )


async def delete_report(connection: asyncpg.Connection, report_id: str) -> bool:
    """Delete a report and unlink its CSV; False if there was no such report."""
    async with connection.transaction():
        deleted = await connection.fetch(
            "DELETE FROM reports WHERE report_id = $1 RETURNING lo_oid", report_id
        )
        await _unlink(connection, deleted)
    return bool(deleted)


async def delete_older_than(connection: asyncpg.Connection, days: int) -> int:
    """Delete the reports requested more than `days` ago, and their CSVs; returns how many.

    Never a Running report, whatever `days` says: a reporter may be writing it (one stuck
    Running is first failed by fail_overdue, then deleted)."""
    async with connection.transaction():
        deleted = await connection.fetch(
            "DELETE FROM reports WHERE requested_at < now() - make_interval(days => $1)"
            " AND status <> $2 RETURNING lo_oid",
            days,
            RUNNING,
        )
        await _unlink(connection, deleted)
    return len(deleted)


async def _unlink(connection: asyncpg.Connection, deleted: list[asyncpg.Record]) -> None:
    await connection.execute(
        "SELECT lo_unlink(oid) FROM unnest($1::oid[]) AS oid WHERE oid IS NOT NULL",
        [record["lo_oid"] for record in deleted],
    )


# ---------------------------------------------------------------------------------------
# Reading a CSV back
# ---------------------------------------------------------------------------------------


async def large_object_chunks(
    pool: asyncpg.Pool, oid: int, byte_size: int, size: int = CHUNK_BYTES
) -> AsyncIterator[bytes]:
    """A large object of `byte_size` bytes, a chunk of at most `size` bytes at a time.

    Each chunk is read on a connection acquired for that read alone and released
    before the chunk is yielded, so no connection waits on what the caller does with
    it (such as a client's download, at whatever speed). Raises
    asyncpg.UndefinedObjectError if the object does not exist (any more): a
    download of a report deleted meanwhile ends short.
    """
    for offset in range(0, byte_size, size):
        async with acquire(pool) as connection:
            chunk: bytes = await connection.fetchval("SELECT lo_get($1, $2, $3)", oid, offset, size)
        if not chunk:
            return
        yield chunk


async def large_object_exists(connection: asyncpg.Connection, oid: int) -> bool:
    exists: bool = await connection.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata WHERE oid = $1)", oid
    )
    return exists
