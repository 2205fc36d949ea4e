"""PostgreSQL goes away while a report is being made, then comes back.

The database is a private one (its own port and state folder); Kafka is the
shared broker, on fresh topics.
"""

import asyncio
import dataclasses
import signal
import uuid

import aiohttp
import pytest

from storemon.config import Settings
from storemon.database import reports_db

from ..services import wait_until
from ..stack import Stack, completed, report_csv, trigger
from ..test_api import OPENAPI, check_against_openapi

pytestmark = pytest.mark.integration

STORES = 100
#: The routes that need the database: (method, path in the OpenAPI document, URL).
DATABASE_ROUTES = [
    ("post", "/trigger_report", "/trigger_report"),
    ("get", "/trigger_report", "/trigger_report"),
    ("get", "/get_report", "/get_report?report_id={report_id}"),
    ("get", "/reports", "/reports"),
    ("get", "/reports/{report_id}.csv", "/reports/{report_id}.csv"),
    ("delete", "/reports/{report_id}", "/reports/{report_id}"),
]


def documented_response(method: str, path: str, status: str) -> dict:
    """The OpenAPI document's response of an operation, its $ref followed."""
    response = OPENAPI["paths"][path][method]["responses"][status]
    name = response["$ref"].removeprefix("#/components/responses/")
    return OPENAPI["components"]["responses"][name]


@pytest.fixture
def postgres_dsn(private_postgres):
    """The private server, for the fixtures of the integration tests (`api`, `pool`)."""
    return private_postgres.address


@pytest.fixture
def stack(kafka_bootstrap, private_postgres, tmp_path):
    with Stack.running(
        kafka_bootstrap, private_postgres.address, tmp_path, stores=STORES, seed=21
    ) as running:
        yield running


async def test_a_report_rides_out_a_database_outage(stack, private_postgres):
    reporter = stack.processes["reporter"]
    async with aiohttp.ClientSession(stack.api_url) as http:
        # The reporter is frozen from the request until the database is down, so
        # that the report's first database call meets the outage.
        reporter.process.send_signal(signal.SIGSTOP)
        try:
            report_id = await trigger(http)
            private_postgres.stop()
        finally:
            reporter.process.send_signal(signal.SIGCONT)
        wait_until(
            lambda: "database unreachable while" in reporter.log_path.read_text(errors="replace"),
            30,
            "the reporter to retry its database work",
            stack.logs,
        )

        async with http.get("/readyz") as response:
            assert response.status == 503
            checks = (await response.json())["checks"]
        assert checks["kafka"] == "ok"
        assert checks["postgres"].startswith("unreachable")
        # Each route that needs the database: a JSON 503 with Retry-After, not a 500,
        # as the OpenAPI document says.
        for method, path, url in DATABASE_ROUTES:
            async with http.request(method, url.format(report_id=report_id)) as response:
                assert response.status == 503, (method, url, await response.text())
                assert int(response.headers["Retry-After"]) >= 1
                body = await response.json()
            check_against_openapi("DatabaseUnavailable", body)
            assert "Retry-After" in documented_response(method, path, "503")["headers"]

        private_postgres.start()
        summary = await completed(http, report_id, stack)
        assert summary["rows"] == STORES
        assert await report_csv(http, report_id) == stack.expected_csv
        async with http.get("/readyz") as response:
            assert response.status == 200


async def test_a_pooled_connection_the_restart_broke_is_retried_on_a_fresh_one(private_postgres):
    settings = dataclasses.replace(
        Settings.from_env(),
        database_url=private_postgres.address,
        db_schema=f"t_{uuid.uuid4().hex[:12]}",
    )
    # One connection, so that the one after the restart is the pool's only one.
    pool = await reports_db.create_pool(settings, "storemon-tests", max_size=1)
    try:
        # The server stops while this loop stands still, as a frozen process does:
        # its farewell to the idle connection and the connection's end both wait.
        private_postgres.stop()
        # The loop reads the farewell on one turn and the end on a later one: in
        # between, the pool still hands the connection out.
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        try:
            async with pool.acquire() as connection:
                await reports_db.count_by_status(connection)
        except Exception as exc:
            assert reports_db.is_unavailable(exc), repr(exc)
        else:
            raise AssertionError("a query on a stopped server succeeded")

        private_postgres.start()
        async with pool.acquire() as connection:
            counts = await reports_db.count_by_status(connection)
        assert counts == {reports_db.RUNNING: 0, reports_db.COMPLETE: 0, reports_db.FAILED: 0}
    finally:
        await pool.close()


async def test_metrics_are_served_without_the_reports_while_the_database_is_down(
    api, private_postgres
):
    async with api() as client:
        before = await (await client.get("/metrics")).text()
        private_postgres.stop()
        try:
            # Every scrape answers at once; consumer lag is read from Kafka at most every
            # few seconds, and a read the busy broker did not answer in time says
            # storemon_kafka_up 0 until the next: wait for one that it answered.
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 60
            while True:
                response = await client.get("/metrics")
                during = await response.text()
                assert response.status == 200, during
                assert "storemon_database_up 0" in during
                if "storemon_kafka_up 1" in during or loop.time() > deadline:
                    break
                await asyncio.sleep(0.5)
        finally:
            private_postgres.start()
    assert "storemon_database_up 1" in before
    assert 'storemon_reports{status="Running"} 0' in before
    assert "storemon_reports{" not in during
    assert "storemon_report_duration_seconds" not in during
    # What Kafka and the process itself know is still there.
    assert "storemon_kafka_up 1" in during and "storemon_consumer_lag{" in during
    assert 'storemon_http_requests_total{method="GET",route="/metrics",status="200"}' in during
