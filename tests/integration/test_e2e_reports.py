"""Reports end to end through the real stack, every service a process of its own.

Loop stores with generated polls -> `storemon load` -> `storemon worker` ->
`storemon reporter` + `storemon api`; reports are triggered and fetched over
HTTP and must equal, byte for byte, `storemon report-csv` on the same files.
"""

import asyncio
import hashlib
import json

import aiohttp
import asyncpg
import pytest

from storemon.kafka.clients import make_producer
from storemon.kafka.lag import consumer_lag
from storemon.kafka.offsets import end_offsets
from storemon.kafka.topics import (
    INPUT_TOPICS,
    TOPIC_REPORT_REQUESTS,
    changelog_topic,
    reporter_group,
)
from storemon.state.layout import POLLS_TABLE, SCHEDULES_TABLE, ZONES_TABLE

from .services import ServiceProcess, free_port, wait_until
from .stack import Stack, completed, eventually, report_json, run_storemon, trigger

STORES = 200


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, postgres_dsn, tmp_path_factory):
    """The whole stack on fresh topics and a fresh schema, the worker caught up."""
    with Stack.running(
        kafka_bootstrap, postgres_dsn, tmp_path_factory.mktemp("e2e"), stores=STORES, seed=11
    ) as running:
        yield running


@pytest.fixture
async def http(stack):
    async with aiohttp.ClientSession(stack.api_url) as session:
        yield session


async def test_a_report_over_http_is_byte_for_byte_the_offline_report(stack, http):
    report_id = await trigger(http)
    summary = await completed(http, report_id, stack)
    async with http.get("/get_report", params={"report_id": report_id}) as response:
        assert response.headers["X-Report-Status"] == "Complete"
        csv = await response.read()
    assert csv == stack.expected_csv
    async with http.get(f"/reports/{report_id}.csv") as response:
        assert response.headers["ETag"] == f'"{hashlib.sha256(csv).hexdigest()}"'
        assert int(response.headers["Content-Length"]) == len(csv)
        assert await response.read() == csv
    assert summary["rows"] == STORES == csv.count(b"\n") - 1
    assert summary["bytes"] == len(csv)
    # What the report reflects: the latest poll, and, per partition, the input offsets
    # its part's state had applied: here all of every input topic.
    assert summary["as_of"].startswith("2023-01-25T18:1")
    applied = summary["state_offsets"]
    for topic in INPUT_TOPICS:
        name = stack.settings.topic(topic)
        assert {int(p): o for p, o in applied[name].items()} == end_offsets(stack.settings, name)


async def test_unknown_and_malformed_report_ids(stack, http):
    async with http.get("/get_report", params={"report_id": "f" * 32}) as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"
    async with http.get("/get_report", params={"report_id": "not-an-id"}) as response:
        assert response.status == 400
        assert (await response.json())["error"]["code"] == "bad_request"


async def test_two_concurrent_triggers_make_two_reports(stack, http):
    first, second = await asyncio.gather(trigger(http), trigger(http))
    assert first != second
    for report_id in (first, second):
        await completed(http, report_id, stack)
        async with http.get(f"/reports/{report_id}.csv") as response:
            assert await response.read() == stack.expected_csv


async def test_a_report_for_some_stores_as_of_an_earlier_time(stack, http):
    full = stack.expected_csv.decode().splitlines()
    stores = [line.split(",", 1)[0] for line in full[1:4]]
    report_id = await trigger(http, as_of="2023-01-24T12:00:00Z", store_ids=stores)
    summary = await completed(http, report_id, stack)
    assert summary["as_of"] == "2023-01-24T12:00:00.000000Z"
    async with http.get(f"/reports/{report_id}.csv") as response:
        lines = (await response.read()).decode().splitlines()
    assert lines[0] == full[0]
    assert [line.split(",", 1)[0] for line in lines[1:]] == stores


async def test_a_request_delivered_again_for_a_complete_report_is_skipped(stack, http):
    report_id = await trigger(http)
    before = await completed(http, report_id, stack)
    producer = make_producer(stack.settings)
    request = {"report_id": report_id, "requested_at": before["requested_at"]}
    producer.produce(
        stack.settings.topic(TOPIC_REPORT_REQUESTS),
        json.dumps(request).encode(),
        report_id.encode(),
    )
    assert producer.flush(30) == 0

    def reporter_lag() -> int:
        group = reporter_group(stack.settings)
        return sum(row.lag for row in consumer_lag(stack.settings) if row.group == group)

    wait_until(lambda: reporter_lag() == 0, 30, "the reporter to take the request", stack.logs)
    after = await report_json(http, report_id)
    assert after == before  # same attempts, same CSV


async def test_a_report_whose_reporter_is_killed_mid_report_is_completed_by_the_next(stack, http):
    locker = await asyncpg.connect(
        stack.settings.database_url, server_settings={"search_path": stack.settings.db_schema}
    )
    try:
        # Hold the reporter mid-report: the request consumed, its offset not
        # committed, its database work waiting on a lock the test holds.
        for _ in range(5):
            report_id = await trigger(http)
            hold = locker.transaction()
            await hold.start()
            await locker.execute("LOCK TABLE reports IN SHARE MODE")
            status = await locker.fetchval(
                "SELECT status FROM reports WHERE report_id = $1", report_id
            )
            if status == "Running":
                break
            await hold.rollback()  # the reporter was quicker: try again
        else:
            pytest.fail("the reporter always finished before the test could hold it")

        async def reporter_waits_on_the_lock() -> bool:
            return await locker.fetchval(
                "SELECT count(*) > 0 FROM pg_locks l JOIN pg_stat_activity a USING (pid)"
                " WHERE NOT l.granted AND l.relation = 'reports'::regclass"
                " AND a.application_name = 'storemon-reporter'"
            )

        await eventually(reporter_waits_on_the_lock, 30, "the reporter to be held", stack)
        stack.processes["reporter"].kill()
        await hold.rollback()
    finally:
        await locker.close()
    assert (await report_json(http, report_id))["status"] == "Running"

    stack.start("reporter", "reporter")  # the killed one's successor in the group
    summary = await completed(http, report_id, stack)
    assert summary["attempts"] >= 2
    async with http.get(f"/reports/{report_id}.csv") as response:
        assert await response.read() == stack.expected_csv


async def test_state_records_that_break_the_layout_leave_reports_whole(stack, http):
    """Hardening issue, item 3: one bad changelog record must not stop the state's
    owner; a worker recovering its state skips it, logs and counts it."""
    producer = make_producer(stack.settings)
    for table, key, value in (
        (POLLS_TABLE, b"garbage", b"x"),
        (SCHEDULES_TABLE, b"unknown-store", b"{not json"),
        (ZONES_TABLE, b"unknown-store", b"Not/AZone"),
    ):
        producer.produce(changelog_topic(stack.settings, table), value, key, partition=0)
    assert producer.flush(30) == 0

    async def report_csv() -> bytes:
        report_id = await trigger(http)
        await completed(http, report_id, stack)
        async with http.get(f"/reports/{report_id}.csv") as response:
            return await response.read()

    assert await report_csv() == stack.expected_csv  # the worker that wrote the state
    stack.processes["worker"].stop()
    # Its successor recovers the state from the changelogs, bad records included.
    port = free_port()
    stack.processes["worker"] = worker = ServiceProcess(
        ["worker"],
        {**stack.env, "STOREMON_WORKER_METRICS_PORT": str(port)},
        stack.log_dir,
        "worker-2",
    )
    assert await report_csv() == stack.expected_csv
    stack.assert_running()
    assert "skipped state record" in worker.log_path.read_text()
    async with http.get(f"http://127.0.0.1:{port}/metrics") as response:
        metrics = await response.text()
    assert 'storemon_worker_state_records_skipped_total{table="polls"} 1' in metrics
    # A container's health probe finds the worker by its port alone (no API there).
    beside_the_worker = {
        **stack.env,
        "STOREMON_WORKER_METRICS_PORT": str(port),
        "STOREMON_API_PORT": str(free_port()),
        "STOREMON_REPORTER_METRICS_PORT": "0",
    }
    assert b"worker answers" in run_storemon(["health"], beside_the_worker)
    assert 'storemon_worker_report_parts_total{outcome="computed"} 4' in metrics
