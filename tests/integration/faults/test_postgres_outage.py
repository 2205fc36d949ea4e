"""PostgreSQL goes away while a report is being made, then comes back.

The database is a private one (its own port and state folder); Kafka is the
shared broker, on fresh topics.
"""

import signal

import aiohttp
import pytest

from ..services import wait_until
from ..stack import Stack, completed, data_arguments, report_csv, trigger

pytestmark = pytest.mark.integration

STORES = 100


@pytest.fixture
def stack(kafka_bootstrap, private_postgres, tmp_path):
    running = Stack.create(
        kafka_bootstrap, private_postgres.address, tmp_path, stores=STORES, seed=21
    )
    running.storemon("load", "--no-progress", *data_arguments(running.data))
    try:
        running.start_services()
        yield running
    finally:
        running.close()


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
            stack.logs(),
        )

        async with http.get("/readyz") as response:
            assert response.status == 503
            checks = (await response.json())["checks"]
        assert checks["kafka"] == "ok"
        assert checks["postgres"].startswith("unreachable")
        # A route that needs the database: a JSON 503, not a 500.
        async with http.get("/get_report", params={"report_id": report_id}) as response:
            assert response.status == 503
            assert response.headers["Retry-After"]
            assert (await response.json())["error"]["code"] == "database_unavailable"

        private_postgres.start()
        summary = await completed(http, report_id, stack)
        assert summary["rows"] == STORES
        assert await report_csv(http, report_id) == stack.expected_csv
        async with http.get("/readyz") as response:
            assert response.status == 200
