"""The reports table and the CSV large objects (storemon.reports_db) on a real PostgreSQL."""

import asyncio
import hashlib
import math
import os
from collections import Counter

import asyncpg
import pytest

from storemon.database import notifications, report_parts, reports_db
from storemon.database.notifications import Listener
from storemon.database.reports_db import COMPLETE, FAILED, RUNNING, TIMED_OUT
from storemon.messages.report_requests import is_report_id, new_report_id
from storemon.timebase import datetime_from_us

OFFSETS = {"t-worker-polls-changelog": {0: 12, 1: 7}}


async def new_report(connection, request=None) -> str:
    report_id = new_report_id()
    await reports_db.insert_running(connection, report_id, request or {})
    return report_id


async def read_back(pool, stored, chunk_bytes=reports_db.CHUNK_BYTES) -> bytes:
    """The CSV of a StoredCsv or a ReportRow, read back chunk by chunk."""
    chunks = reports_db.large_object_chunks(pool, stored.lo_oid, stored.byte_size, chunk_bytes)
    return b"".join([chunk async for chunk in chunks])


async def test_schema_creation_is_idempotent_even_when_services_race(report_settings, pool):
    others = await asyncio.gather(
        *(reports_db.create_pool(report_settings, "storemon-tests", max_size=1) for _ in range(4))
    )
    for other in others:
        await other.close()
    async with pool.acquire() as connection:
        assert await connection.fetchval("SELECT count(*) FROM reports") == 0


async def test_report_ids_are_128_random_bits_in_hex():
    ids = {new_report_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(is_report_id(report_id) for report_id in ids)
    assert not is_report_id("0123456789ABCDEF0123456789ABCDEF")


async def test_a_complete_report_holds_its_csv_in_chunks_with_size_and_checksum(pool):
    # Several write chunks and a partial last one.
    csv = os.urandom(3 * reports_db.CHUNK_BYTES + 12_345)
    async with pool.acquire() as connection:
        report_id = await new_report(connection, {"store_ids": ["a"]})
        assert (await reports_db.start_attempt(connection, report_id)).attempts == 1
        as_of = datetime_from_us(1_674_670_402_479_220)
        stored = await reports_db.complete_report(
            connection, report_id, csv, row_count=3, as_of=as_of, state_offsets=OFFSETS
        )
        row = await reports_db.fetch_report(connection, report_id)
    assert stored is not None
    assert row.status == COMPLETE
    assert (row.byte_size, row.checksum_sha256, row.lo_oid) == (
        len(csv),
        hashlib.sha256(csv).hexdigest(),
        stored.lo_oid,
    )
    assert row.row_count == 3
    assert row.as_of == as_of
    assert row.request == {"store_ids": ["a"]}
    assert row.state_offsets == {"t-worker-polls-changelog": {"0": 12, "1": 7}}
    assert await read_back(pool, row) == csv
    # Read chunks that do not line up with the written ones.
    assert await read_back(pool, row, chunk_bytes=1_000_003) == csv


async def test_only_a_running_report_can_complete_or_fail(pool):
    async with pool.acquire() as connection:
        report_id = await new_report(connection)
        first = await reports_db.complete_report(
            connection, report_id, b"a\n", row_count=0, as_of=None, state_offsets={}
        )
        again = await reports_db.complete_report(
            connection, report_id, b"b\n", row_count=0, as_of=None, state_offsets={}
        )
        assert first is not None and again is None
        assert not await reports_db.fail_report(connection, report_id, "late failure")
        assert await reports_db.start_attempt(connection, report_id) is None
        row = await reports_db.fetch_report(connection, report_id)
        assert (row.status, row.lo_oid) == (COMPLETE, first.lo_oid)

        failed_id = await new_report(connection)
        assert await reports_db.fail_report(connection, failed_id, "no state")
        assert (
            await reports_db.complete_report(
                connection, failed_id, b"x", row_count=0, as_of=None, state_offsets={}
            )
            is None
        )
        row = await reports_db.fetch_report(connection, failed_id)
        assert (row.status, row.error, row.lo_oid) == (FAILED, "no state", None)


async def test_reports_running_past_the_timeout_are_failed_as_timed_out(pool):
    async with pool.acquire() as connection:
        old_id = await new_report(connection)
        fresh_id = await new_report(connection)
        await connection.execute(
            "UPDATE reports SET requested_at = now() - interval '10 minutes' WHERE report_id = $1",
            old_id,
        )
        assert await reports_db.fail_overdue(connection, 300, fresh_id) == []
        assert await reports_db.fail_overdue(connection, 300) == [old_id]
        assert await reports_db.fail_overdue(connection, 300) == []
        old = await reports_db.fetch_report(connection, old_id)
        fresh = await reports_db.fetch_report(connection, fresh_id)
        assert (old.status, old.error) == (FAILED, TIMED_OUT)
        assert fresh.status == RUNNING


async def test_deleting_a_report_unlinks_its_large_object(pool):
    async with pool.acquire() as connection:
        report_id = await new_report(connection)
        stored = await reports_db.complete_report(
            connection, report_id, b"csv\n", row_count=0, as_of=None, state_offsets={}
        )
        assert await reports_db.large_object_exists(connection, stored.lo_oid)
        assert await reports_db.delete_report(connection, report_id)
        assert not await reports_db.large_object_exists(connection, stored.lo_oid)
        assert await reports_db.fetch_report(connection, report_id) is None
        assert not await reports_db.delete_report(connection, report_id)
    with pytest.raises(asyncpg.UndefinedObjectError):
        await read_back(pool, stored)


async def test_retention_deletes_old_reports_and_their_large_objects(pool):
    async with pool.acquire() as connection:
        old_id, recent_id = await new_report(connection), await new_report(connection)
        old, recent = [
            await reports_db.complete_report(
                connection, i, b"csv\n", row_count=0, as_of=None, state_offsets={}
            )
            for i in (old_id, recent_id)
        ]
        running_old_id = await new_report(connection)
        await connection.execute(
            "UPDATE reports SET requested_at = now() - interval '31 days'"
            " WHERE report_id = ANY($1::text[])",
            [old_id, running_old_id],
        )
        assert await reports_db.delete_older_than(connection, 30) == 1
        assert not await reports_db.large_object_exists(connection, old.lo_oid)
        assert await reports_db.large_object_exists(connection, recent.lo_oid)
        # A Running report is never deleted, however old (fail_overdue ends it first).
        assert [row.report_id for row in await reports_db.list_reports(connection, 10)] == [
            recent_id,
            running_old_id,
        ]


async def test_reports_are_listed_newest_first_and_counted_by_status(pool):
    async with pool.acquire() as connection:
        ids = [await new_report(connection) for _ in range(3)]
        await reports_db.fail_report(connection, ids[0], "x")
        listed = await reports_db.list_reports(connection, 2)
        assert [row.report_id for row in listed] == ids[:0:-1]
        assert await reports_db.count_by_status(connection) == {
            RUNNING: 2,
            COMPLETE: 0,
            FAILED: 1,
        }


async def test_completing_a_report_counts_its_duration_once_and_deleting_it_uncounts_nothing(pool):
    bounds = [*reports_db.REPORT_DURATION_BUCKETS_S, math.inf]
    async with pool.acquire() as connection:
        empty = await reports_db.report_durations(connection)
        assert [bucket.le for bucket in empty] == bounds
        assert {(bucket.reports, bucket.seconds_sum) for bucket in empty} == {(0, 0.0)}
        quick_id, slow_id, failed_id = [await new_report(connection) for _ in range(3)]
        await connection.execute(
            "UPDATE reports SET requested_at = now() - interval '42 seconds' WHERE report_id = $1",
            slow_id,
        )
        for report_id in (quick_id, slow_id, quick_id):  # the second completion is refused
            await reports_db.complete_report(
                connection, report_id, b"csv\n", row_count=0, as_of=None, state_offsets={}
            )
        await reports_db.fail_report(connection, failed_id, "no state")
        rows = {row.report_id: row for row in await reports_db.list_reports(connection, 10)}
        durations = [
            (rows[report_id].finished_at - rows[report_id].requested_at).total_seconds()
            for report_id in (quick_id, slow_id)
        ]
        assert 42 <= durations[1] <= 60
        counted = await reports_db.report_durations(connection)
        assert {bucket.le: bucket.reports for bucket in counted if bucket.reports} == Counter(
            min(le for le in bounds if le >= seconds) for seconds in durations
        )
        assert sum(bucket.seconds_sum for bucket in counted) == pytest.approx(sum(durations))
        # Deleted reports stay counted, so the histogram never goes down.
        assert await reports_db.delete_report(connection, slow_id)
        await connection.execute("UPDATE reports SET requested_at = now() - interval '31 days'")
        assert await reports_db.delete_older_than(connection, 30) == 2
        assert await reports_db.report_durations(connection) == counted


async def test_a_stored_part_wakes_the_reporter_waiting_for_that_report_only(
    report_settings, pool
):
    listener = Listener(pool, notifications.PARTS, report_settings.db_schema)
    await listener.listen()
    try:
        async with pool.acquire() as connection:
            waited, other = await new_report(connection), await new_report(connection)
            for report_id in (waited, other):
                await reports_db.start_attempt(connection, report_id)
            woken, not_woken = listener.watch(waited), listener.watch(other)
            assert await report_parts.store_part(
                connection, waited, 0, [("s", "s,1,2,3,4,5,6")], state_offsets={},
                computed_by="test",
            )
        await asyncio.wait_for(woken.wait(), 10)
        assert not not_woken.is_set()
    finally:
        await listener.close()
