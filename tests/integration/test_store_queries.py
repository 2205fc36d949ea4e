"""Live store queries: the API routes `GET /stores/{id}` to the worker owning the store's
partition, which answers from its tables.

The six figures must equal the store's row of `storemon report-csv --as-of T` on the
same files, with 1, 2 and 3 owner processes; while owners come and go (a rebalance, an
owner SIGKILLed) every answer is either that right one or 503 with Retry-After.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import random
import subprocess
import urllib.parse
from collections.abc import AsyncIterator
from pathlib import Path

import aiohttp
import pytest

from storemon.timebase import US_PER_MINUTE, format_timestamp
from storemon.uptime.engine import REPORT_COLUMNS

from .services import STOREMON, ServiceProcess, free_port, wait_until
from .stack import Stack, api_ready, data_arguments, eventually, store_ids_in

pytestmark = pytest.mark.integration

STORES = 600
MAX_WORKERS = 3
#: Seconds for the group to settle after an owner comes or goes (a SIGKILLed one is
#: noticed after the session timeout, 15 s), and the new owners to recover.
SETTLE_S = 120


class Owners:
    """Worker processes with their own web ports, which the API knows as its workers."""

    def __init__(self, stack: Stack, ports: list[int]) -> None:
        self.stack = stack
        self.ports = ports

    def names(self) -> list[str]:
        return sorted(name for name in self.stack.processes if name.startswith("worker-"))

    def start(self, number: int) -> ServiceProcess:
        name = f"worker-{number}"
        env = {
            **self.stack.env,
            "STOREMON_WORKER_METRICS_PORT": str(self.ports[number - 1]),
            "STOREMON_WORKER_DATA_DIR": str(self.stack.log_dir.parent / name),
        }
        process = ServiceProcess(["worker"], env, self.stack.log_dir, name)
        self.stack.processes[name] = process
        return process

    def set_count(self, count: int) -> None:
        """Exactly workers 1..count running."""
        for name in self.names():
            if int(name.rsplit("-", 1)[1]) > count:
                self.stack.processes.pop(name).stop()
        for number in range(1, count + 1):
            if f"worker-{number}" not in self.stack.processes:
                self.start(number)


@pytest.fixture(scope="module")
def owners(kafka_bootstrap, postgres_dsn, tmp_path_factory) -> Owners:
    ports = [free_port() for _ in range(MAX_WORKERS)]
    stack = Stack.create(
        kafka_bootstrap,
        postgres_dsn,
        tmp_path_factory.mktemp("stores"),
        stores=STORES,
        seed=31,
        STOREMON_WORKER_URLS=",".join(f"http://127.0.0.1:{port}" for port in ports),
    )
    stack.storemon("load", "--no-progress", *data_arguments(stack.data))
    running = Owners(stack, ports)
    try:
        running.start(1)
        stack.wait_for_worker()
        stack.start("api", "api")
        wait_until(lambda: api_ready(stack.api_url), 60, "the API to be ready", stack.logs)
        yield running
    finally:
        stack.close()


@pytest.fixture(scope="module")
def as_of(owners: Owners) -> str:
    """An instant inside the data, not its last poll (which is the default)."""
    return format_timestamp(owners.stack.data.last_poll_us - 37 * US_PER_MINUTE)


@pytest.fixture(scope="module")
def expected_rows(owners: Owners, as_of: str) -> dict[str, list[float]]:
    """store_id -> its six figures as `storemon report-csv --as-of` writes them (hundredths,
    which read as the same floats as the JSON answer's)."""
    text = owners.stack.storemon(
        "report-csv", "--as-of", as_of, *data_arguments(owners.stack.data)
    ).decode()
    rows = list(csv.reader(io.StringIO(text)))
    assert tuple(rows[0]) == REPORT_COLUMNS
    return {row[0]: [float(figure) for figure in row[1:]] for row in rows[1:]}


@pytest.fixture
async def http(owners: Owners) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(owners.stack.api_url) as session:
        yield session


def figures_of(answer: dict) -> list[float] | None:
    if answer["figures"] is None:
        return None
    return [answer["figures"][column] for column in REPORT_COLUMNS[1:]]


async def ask(http: aiohttp.ClientSession, store_id: str, **query: str) -> tuple[int, dict, dict]:
    async with http.get(f"/stores/{store_id}", params=query) as response:
        return response.status, await response.json(), dict(response.headers)


async def every_store_answered(
    http: aiohttp.ClientSession, stores: list[str], as_of: str
) -> dict[str, dict] | None:
    answers = {}
    for store_id in stores:
        status, answer, _ = await ask(http, store_id, as_of=as_of)
        if status != 200:
            return None
        answers[store_id] = answer
    return answers


@pytest.mark.parametrize("owner_count", [1, 2, 3])
async def test_a_stores_figures_are_its_row_of_the_offline_report(
    owners, http, as_of, expected_rows, owner_count
):
    owners.set_count(owner_count)
    sample = random.Random(owner_count).sample(sorted(expected_rows), 24)

    async def answered_by_every_owner() -> dict[str, dict] | None:
        answers = await every_store_answered(http, sample, as_of)
        if answers is None:
            return None
        served_by = {answer["served_by"] for answer in answers.values()}
        return answers if len(served_by) == owner_count else None

    answers = await eventually(
        answered_by_every_owner, SETTLE_S, f"answers from {owner_count} owners", owners.stack
    )
    for store_id, answer in answers.items():
        assert answer["store_id"] == store_id
        assert answer["as_of"] == as_of
        assert figures_of(answer) == expected_rows[store_id], store_id
        assert answer["latest_poll"]["status"] in ("active", "inactive")
        assert answer["latest_poll"]["timestamp_utc"] <= as_of
        if owner_count == 1:  # the one worker applied every input record itself
            assert answer["state_offsets"], answer
    owners.stack.assert_running()


async def test_unknown_stores_are_404_bad_ids_400_and_as_of_is_checked(owners, http):
    status, answer, _ = await ask(http, "no-such-store")
    assert (status, answer["error"]["code"]) == (404, "not_found")
    # An id with characters a path must escape reaches the owner whole.
    odd = "a/b%?#é"
    status, answer, _ = await ask(http, urllib.parse.quote(odd, safe=""))
    assert (status, answer["error"]["message"]) == (404, f"no store {odd!r} in the state")
    status, answer, _ = await ask(http, "x" * 200)
    assert status == 400 and "store_id" in answer["error"]["message"]
    some_store = sorted(await known_stores(owners))[0]
    status, answer, _ = await ask(http, some_store, as_of="yesterday")
    assert status == 400 and "as_of" in answer["error"]["message"]
    status, answer, _ = await ask(http, some_store, as_of="1999-01-01T00:00:00Z")
    assert status == 400 and "as_of: must be between" in answer["error"]["message"]
    status, answer, _ = await ask(http, some_store, color="red")
    assert status == 400 and "color" in answer["error"]["message"]


async def known_stores(owners: Owners) -> set[str]:
    return store_ids_in(owners.stack.data.status_path)


async def test_polls_come_oldest_first_a_page_at_a_time(owners, http, as_of):
    store_id = sorted(await known_stores(owners))[3]

    async def whole() -> list[dict] | None:
        async with http.get(f"/stores/{store_id}/polls", params={"limit": "10000"}) as response:
            if response.status != 200:
                return None
            answer = await response.json()
            assert answer["next"] is None
            return answer["polls"]

    everything = await eventually(whole, SETTLE_S, "the store's polls", owners.stack)
    times = [poll["timestamp_utc"] for poll in everything]
    assert times == sorted(times) and len(set(times)) == len(times) and len(times) > 20
    # Every poll of the file in the last week before as_of is held (retention keeps 8 days).
    with Path(owners.stack.data.status_path).open() as rows:
        in_file = {
            row["timestamp_utc"]: row["status"]
            for row in csv.DictReader(rows)
            if row["store_id"] == store_id
        }
    held = {poll["timestamp_utc"]: poll["status"] for poll in everything}
    assert len(held) >= 0.5 * len(in_file)

    paged: list[dict] = []
    path = f"/stores/{store_id}/polls?limit=7"
    while path is not None:
        async with http.get(path) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        assert len(page["polls"]) <= 7
        paged += page["polls"]
        path = page["next"]
    assert paged == everything

    since, until = times[5], times[15]
    async with http.get(
        f"/stores/{store_id}/polls", params={"since": since, "until": until}
    ) as response:
        assert [poll["timestamp_utc"] for poll in (await response.json())["polls"]] == times[5:15]


async def test_while_owners_come_and_go_an_answer_is_right_or_503(
    owners, http, as_of, expected_rows
):
    owners.set_count(1)
    sample = random.Random(7).sample(sorted(expected_rows), 12)
    await eventually(
        lambda: every_store_answered(http, sample, as_of), SETTLE_S, "answers", owners.stack
    )
    seen: dict[int, int] = {}
    wrong: list[str] = []
    stop = asyncio.Event()

    async def keep_asking(session: aiohttp.ClientSession, where: str) -> None:
        while not stop.is_set():
            for store_id in sample:
                try:
                    status, answer, headers = await ask(session, store_id, as_of=as_of)
                except aiohttp.ClientConnectionError:
                    await asyncio.sleep(0.05)  # a worker not listening yet, or killed
                    continue
                seen[status] = seen.get(status, 0) + 1
                if status == 200 and figures_of(answer) != expected_rows[store_id]:
                    wrong.append(f"{where}: {store_id}: {answer}")
                elif status == 503 and "Retry-After" not in headers:
                    wrong.append(f"{where}: 503 without Retry-After: {answer}")
                elif status not in (200, 503):
                    wrong.append(f"{where}: {status}: {answer}")

    # Through the API, and of each worker directly: a worker rebuilding its state after
    # a rebalance must turn queries away, whatever the API knows of who owns what.
    sessions = [
        aiohttp.ClientSession(f"http://127.0.0.1:{port}") for port in owners.ports[:2]
    ]
    asking = [
        asyncio.create_task(keep_asking(session, where))
        for session, where in [(http, "api"), *zip(sessions, ["worker-1", "worker-2"], strict=True)]
    ]
    try:
        owners.start(2)  # a rebalance: partitions move to the newcomer
        await eventually(
            lambda: answered_by(http, sample, as_of, 2), SETTLE_S, "two owners", owners.stack
        )
        owners.stack.processes.pop("worker-1").kill()  # its partitions: 503, then worker-2
        await eventually(
            lambda: answered_by(http, sample, as_of, 1), SETTLE_S, "one owner", owners.stack
        )
    finally:
        stop.set()
        await asyncio.gather(*asking)
        for session in sessions:
            await session.close()
    assert not wrong, wrong[:5]
    assert seen.get(200, 0) > 0, seen
    async with aiohttp.ClientSession(f"http://127.0.0.1:{owners.ports[1]}") as worker:
        async with worker.get("/readyz") as response:
            assert response.status == 200  # settled: it owns every partition, rebuilt


async def answered_by(
    http: aiohttp.ClientSession, stores: list[str], as_of: str, owner_count: int
) -> bool:
    answers = await every_store_answered(http, stores, as_of)
    return answers is not None and len({a["served_by"] for a in answers.values()}) == owner_count


async def test_storemon_store_prints_the_live_answer(owners, http, as_of, expected_rows):
    store_id = sorted(expected_rows)[0]
    await eventually(
        lambda: every_store_answered(http, [store_id], as_of), SETTLE_S, "answers", owners.stack
    )
    shown = owners.stack.storemon("store", store_id, "--as-of", as_of).decode()
    assert f"store {store_id} (partition" in shown
    uptime_line = next(line for line in shown.splitlines() if line.startswith("uptime"))
    assert [float(figure) for figure in uptime_line.split()[1:]] == expected_rows[store_id][:3]
    as_json = json.loads(owners.stack.storemon("store", store_id, "--as-of", as_of, "--json"))
    assert figures_of(as_json) == expected_rows[store_id]
    listed = owners.stack.storemon("store", store_id, "--polls").decode().splitlines()
    async with http.get(f"/stores/{store_id}/polls", params={"limit": "10000"}) as response:
        polls = (await response.json())["polls"]
    assert listed == [f"{poll['timestamp_utc']} {poll['status']}" for poll in polls]
    failed = subprocess.run(
        [*STOREMON, "store", "no-such-store"], env=owners.stack.env, capture_output=True,
        text=True, check=False,
    )
    assert failed.returncode == 1
    assert "HTTP 404: no store 'no-such-store' in the state" in failed.stderr
