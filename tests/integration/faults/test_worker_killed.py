"""A worker killed (SIGKILL) while reports are being made, then restarted.

Shared servers, fresh topics and schema: nothing here stops a server.
"""

import signal

import aiohttp
import pytest

from storemon.timebase import format_timestamp

from ..services import worker_lag
from ..stack import Stack, completed, report_csv, trigger

pytestmark = pytest.mark.integration

STORES = 200
#: Polls of the first load: every this-many-th line; the rest come while reports run.
FIRST_EVERY = 10


@pytest.fixture
def stack(kafka_bootstrap, postgres_dsn, tmp_path):
    # A killed worker's partitions move to its successor once its session
    # expires: 10 s here instead of Faust's 60 (a Faust setting read from the
    # environment).
    running = Stack.create(
        kafka_bootstrap,
        postgres_dsn,
        tmp_path,
        stores=STORES,
        seed=31,
        BROKER_SESSION_TIMEOUT="10",
    )
    try:
        yield running
    finally:
        running.close()


def split_polls(stack: Stack) -> tuple[str, str]:
    """The status file as two: every FIRST_EVERY-th poll, and the others."""
    header, *polls = stack.data.status_path.read_text().splitlines(keepends=True)
    first, rest = stack.data.directory / "first.csv", stack.data.directory / "rest.csv"
    first.write_text(header + "".join(polls[::FIRST_EVERY]))
    rest.write_text(header + "".join(p for i, p in enumerate(polls) if i % FIRST_EVERY))
    return str(first), str(rest)


def stores_of(csv: bytes) -> list[str]:
    return [line.split(",", 1)[0] for line in csv.decode().splitlines()[1:]]


async def test_reports_made_while_a_worker_is_killed_are_whole(stack):
    first, rest = split_polls(stack)
    files = ["--hours", str(stack.data.hours_path), "--timezones", str(stack.data.timezones_path)]
    stack.storemon("load", "--no-progress", *files, "--status", first)
    stack.start_services()
    every_store = stores_of(stack.expected_csv)
    assert len(every_store) == STORES

    async with aiohttp.ClientSession(stack.api_url) as http:
        # The rest of the polls arrive; reports are asked for while the worker is
        # held, while it takes them on, once it died, and while its successor
        # recovers. (Held first: unheld it takes all 30,000 in about a second, so a
        # kill "mid-way" would be a race.)
        worker = stack.processes["worker"]
        stack.wait_for_worker()
        worker.process.send_signal(signal.SIGSTOP)
        stack.storemon("load", "--no-progress", "--status", rest)
        reports = [await trigger(http)]
        worker.process.send_signal(signal.SIGCONT)
        reports.append(await trigger(http))
        worker.kill()
        assert worker_lag(stack.settings) > 0, "the worker was done before it was killed"
        reports.append(await trigger(http))
        stack.start("worker", "worker")
        reports.append(await trigger(http))

        for report_id in reports:
            await completed(http, report_id, stack)
            csv = await report_csv(http, report_id)
            assert stores_of(csv) == every_store, f"report {report_id}: not one row per store"

        stack.wait_for_worker()
        report_id = await trigger(http)
        summary = await completed(http, report_id, stack)
        assert summary["as_of"] == format_timestamp(stack.data.last_poll_us)
        assert await report_csv(http, report_id) == stack.expected_csv
