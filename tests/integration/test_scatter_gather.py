"""Reports scattered to the owners of the state partitions and gathered in PostgreSQL.

Several `storemon worker` processes share the four state partitions; each report is
one part per partition, computed by the partition's owner, and the CSV assembled from
them must equal `storemon report-csv` on the same files, byte for byte, whoever owns
what, when an owner dies mid-report, and when some parts never come.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest

from storemon.kafka.partitioning import partition_of

from .services import ServiceProcess, free_port, wait_until
from .stack import (
    Stack,
    api_ready,
    completed,
    data_arguments,
    eventually,
    report_json,
    trigger,
)

pytestmark = pytest.mark.integration

STORES = 120
PARTITIONS = 4
#: Seconds for a part whose owner was killed: the group notices (session timeout 15 s),
#: the partition's new owner recovers it and redoes the task.
REDONE_WITHIN_S = 120


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, postgres_dsn, tmp_path_factory):
    """Reporter and API on loaded data; each test starts and stops the workers it needs."""
    running = Stack.create(
        kafka_bootstrap,
        postgres_dsn,
        tmp_path_factory.mktemp("scatter"),
        stores=STORES,
        seed=23,
        STOREMON_REPORT_TIMEOUT_S="45",
    )
    running.storemon("load", "--no-progress", *data_arguments(running.data))
    try:
        running.start("worker-1", "worker")
        running.wait_for_worker()
        running.start("reporter", "reporter")
        running.start("api", "api")
        wait_until(lambda: api_ready(running.api_url), 60, "the API to be ready", running.logs)
        yield running
    finally:
        running.close()


@pytest.fixture
async def http(stack: Stack) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(stack.api_url) as session:
        yield session


@pytest.fixture
async def database(stack: Stack) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(
        stack.settings.database_url, server_settings={"search_path": stack.settings.db_schema}
    )
    try:
        yield connection
    finally:
        await connection.close()


def workers(stack: Stack) -> list[str]:
    return sorted(name for name in stack.processes if name.startswith("worker-"))


def set_workers(stack: Stack, count: int) -> None:
    """Exactly `count` worker processes running (stopping the newest first)."""
    while len(workers(stack)) > count:
        stack.processes.pop(workers(stack)[-1]).stop()
    while len(workers(stack)) < count:
        name = f"worker-{len(workers(stack)) + 1}"
        stack.start(name, "worker")


async def report_csv(http: aiohttp.ClientSession, stack: Stack, report_id: str) -> bytes:
    await completed(http, report_id, stack)
    async with http.get(f"/reports/{report_id}.csv") as response:
        return await response.read()


async def owners(database: asyncpg.Connection, report_id: str) -> set[str]:
    """The processes that computed the report's parts."""
    records = await database.fetch(
        "SELECT DISTINCT computed_by FROM report_parts WHERE report_id = $1", report_id
    )
    return {record["computed_by"] for record in records}


@pytest.mark.parametrize("owner_count", [1, 2, 3])
async def test_a_report_is_the_offline_report_whoever_owns_the_partitions(
    stack, http, database, owner_count
):
    set_workers(stack, owner_count)

    async def report_by_every_owner() -> bool:
        # Until the group has settled on every worker owning some partition, reports
        # come from fewer owners; each must be whole all the same.
        first, second = await asyncio.gather(trigger(http), trigger(http))  # racing
        for report_id in (first, second):
            assert await report_csv(http, stack, report_id) == stack.expected_csv
        return len(await owners(database, second)) == owner_count

    await eventually(
        report_by_every_owner, 120, f"a report with parts from {owner_count} owners", stack
    )
    stack.assert_running()


async def test_a_report_for_some_stores_asks_only_their_partitions(stack, http, database):
    set_workers(stack, 2)
    lines = stack.expected_csv.decode().splitlines(keepends=True)
    by_partition: dict[int, list[str]] = {}
    for line in lines[1:]:
        store_id = line.split(",", 1)[0]
        by_partition.setdefault(partition_of(store_id.encode(), PARTITIONS), []).append(line)
    asked = sorted(by_partition)[:2]
    wanted = [line for partition in asked for line in by_partition[partition][:3]]
    store_ids = [line.split(",", 1)[0] for line in wanted]
    report_id = await trigger(http, store_ids=store_ids)
    expected = lines[0] + "".join(sorted(wanted))
    assert await report_csv(http, stack, report_id) == expected.encode()
    planned = await database.fetchval(
        "SELECT partitions FROM reports WHERE report_id = $1", report_id
    )
    assert planned == asked


async def test_an_owner_killed_mid_report_has_its_parts_redone_by_the_next(
    stack, http, database
):
    set_workers(stack, 2)
    # Both owners hold parts: wait for a report with parts from both.
    async def both_own() -> bool:
        report_id = await trigger(http)
        assert await report_csv(http, stack, report_id) == stack.expected_csv
        return len(await owners(database, report_id)) == 2

    await eventually(both_own, 120, "both workers to own partitions", stack)
    # Hold every owner as it stores its part: the tasks consumed, not committed.
    hold = database.transaction()
    await hold.start()
    await database.execute("LOCK TABLE report_parts IN SHARE MODE")
    report_id = await trigger(http)

    async def both_wait() -> bool:
        waiting = await database.fetchval(
            "SELECT count(DISTINCT a.pid) FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
            " WHERE NOT l.granted AND l.relation = 'report_parts'::regclass"
            " AND a.application_name = 'storemon-worker'"
        )
        return waiting == 2

    await eventually(both_wait, 60, "both owners to be held storing their parts", stack)
    stack.processes.pop("worker-1").kill()
    await hold.rollback()
    survivor = stack.processes["worker-2"]

    async def done() -> bool:
        return (await report_json(http, report_id))["status"] != "Running"

    await eventually(done, REDONE_WITHIN_S, "the killed owner's parts to be redone", stack)
    assert await report_csv(http, stack, report_id) == stack.expected_csv
    # Every part came from the survivor: the killed one stored none.
    assert len(await owners(database, report_id)) == 1
    assert survivor.process.poll() is None
    stack.processes["worker-1"] = stack.processes.pop("worker-2")


async def test_parts_that_never_come_fail_the_report_naming_them_and_leave_nothing_stuck(
    stack, http, database
):
    set_workers(stack, 0)
    report_id = await trigger(http)

    async def ended() -> dict | None:
        report = await report_json(http, report_id)
        return None if report["status"] == "Running" else report

    report = await eventually(ended, 90, "the report to time out", stack)
    assert report["status"] == "Failed"
    assert report["error"] == "timed out: no part from partition(s) 0, 1, 2, 3"
    assert await database.fetchval(
        "SELECT count(*) FROM report_rows WHERE report_id = $1", report_id
    ) == 0
    # An owner back: the stale tasks are passed over, the next report is whole.
    set_workers(stack, 1)
    next_id = await trigger(http)
    assert await report_csv(http, stack, next_id) == stack.expected_csv


async def test_a_report_asked_while_owners_join_a_new_deployment_completes(
    kafka_bootstrap, postgres_dsn, tmp_path
):
    """A task fetched but not processed before a rebalance, on a partition where the worker
    group had never committed an offset, was never processed (faust-streaming): the report
    stayed Running until it timed out. The worker now reads such partitions from their
    beginning (services/ingest/positions.py); the reporter also asks again for late parts."""
    fresh = Stack.create(kafka_bootstrap, postgres_dsn, tmp_path, stores=600, seed=31)
    try:
        fresh.storemon("load", "--no-progress", *data_arguments(fresh.data))
        fresh.start("worker-1", "worker")
        fresh.wait_for_worker()
        fresh.processes.pop("worker-1").stop()
        fresh.start("reporter", "reporter")
        fresh.start("api", "api")
        wait_until(lambda: api_ready(fresh.api_url), 60, "the API to be ready", fresh.logs)
        async with aiohttp.ClientSession(fresh.api_url) as http:
            for name in ("worker-1", "worker-2", "worker-3"):  # recovering, rebalancing
                fresh.start(name, "worker")
            report_id = await trigger(http)

            async def ended() -> dict | None:
                report = await report_json(http, report_id)
                return None if report["status"] == "Running" else report

            report = await eventually(ended, 90, "the report to end", fresh)
            assert report["status"] == "Complete", report
            assert await report_csv(http, fresh, report_id) == fresh.expected_csv
    finally:
        await asyncio.to_thread(fresh.close)


async def test_an_owner_forgets_the_partitions_it_hands_over(
    kafka_bootstrap, postgres_dsn, tmp_path
):
    """The state a worker wrote itself (not recovered) stayed in its tables after its
    partitions went to a new owner: a worker held every partition it had ever owned."""
    fresh = Stack.create(kafka_bootstrap, postgres_dsn, tmp_path, stores=200, seed=37)
    port = free_port()
    try:
        first = fresh.processes["worker-1"] = ServiceProcess(
            ["worker"], {**fresh.env, "STOREMON_WORKER_METRICS_PORT": str(port)},
            fresh.log_dir, "worker-1",
        )
        fresh.storemon("load", "--no-progress", *data_arguments(fresh.data))
        fresh.wait_for_worker()  # worker-1 wrote every store's state
        fresh.start("reporter", "reporter")
        fresh.start("api", "api")
        wait_until(lambda: api_ready(fresh.api_url), 60, "the API to be ready", fresh.logs)
        reported = [line.split(",", 1)[0] for line in fresh.expected_csv.decode().split()[1:]]
        async with aiohttp.ClientSession(fresh.api_url) as http:

            async def stores_held() -> int:
                async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
                    text = await response.text()
                return int(float(text.split("\nstoremon_worker_stores ")[1].split()[0]))

            assert await stores_held() == len(reported)
            fresh.start("worker-2", "worker")

            async def partitions_of_worker_1() -> set[int]:
                report_id = await trigger(http)
                assert await report_csv(http, fresh, report_id) == fresh.expected_csv
                connection = await asyncpg.connect(
                    postgres_dsn, server_settings={"search_path": fresh.settings.db_schema}
                )
                try:
                    records = await connection.fetch(
                        "SELECT partition FROM report_parts WHERE report_id = $1"
                        " AND computed_by LIKE $2", report_id, f"%:{first.process.pid}",
                    )
                finally:
                    await connection.close()
                return {record["partition"] for record in records}

            async def shared() -> set[int] | None:
                # Twice the same: not a report that straddled the rebalance.
                mine = await partitions_of_worker_1()
                settled = 0 < len(mine) < PARTITIONS and mine == await partitions_of_worker_1()
                return mine if settled else None

            kept = await eventually(shared, 120, "worker-2 to own some partitions", fresh)
            still_mine = sum(
                partition_of(store_id.encode(), PARTITIONS) in kept for store_id in reported
            )
            assert await stores_held() == still_mine
    finally:
        await asyncio.to_thread(fresh.close)
