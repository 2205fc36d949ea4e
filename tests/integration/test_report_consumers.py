"""For those who ask for reports: completion events on `report-events`, the report's
status as Server-Sent Events, rows as JSON, filtered and paged listings, and the Python
client and CLI built on them, against the real stack.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import subprocess
import time
import uuid
from collections.abc import AsyncIterator

import aiohttp
import asyncpg
import pytest
from aiohttp import web
from confluent_kafka import Consumer, TopicPartition

from storemon.client import Client, ReportFailed
from storemon.database import reports_db
from storemon.kafka.clients import consumer_config
from storemon.kafka.topics import TOPIC_REPORT_EVENTS
from storemon.messages.report_events import decode_event
from storemon.uptime.engine import REPORT_COLUMNS
from storemon.webhooks import SIGNATURE_HEADER, BadSignature, verify

from .services import STOREMON, free_port
from .stack import Stack, eventually, trigger

pytestmark = pytest.mark.integration

STORES = 60
WEBHOOK_SECRET = "test-webhook-secret"
#: A webhook is given up this long after its report ended.
WEBHOOK_RETRY_S = 4


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, postgres_dsn, tmp_path_factory):
    with Stack.running(
        kafka_bootstrap, postgres_dsn, tmp_path_factory.mktemp("consumers"), stores=STORES,
        seed=17, STOREMON_WEBHOOK_SECRET=WEBHOOK_SECRET,
        STOREMON_WEBHOOK_ALLOWED_HOSTS="127.0.0.1", STOREMON_WEBHOOK_RETRY_S=str(WEBHOOK_RETRY_S),
    ) as running:
        yield running


@pytest.fixture
async def http(stack) -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession(stack.api_url) as session:
        yield session


@pytest.fixture
async def api(stack) -> AsyncIterator[Client]:
    async with Client(stack.api_url) as client:
        yield client


@pytest.fixture
async def database(stack) -> AsyncIterator[asyncpg.Connection]:
    """A connection set up as the services' are (schema, JSON codecs)."""
    pool = await reports_db.create_pool(stack.settings, "storemon-test", max_size=1)
    try:
        async with pool.acquire() as connection:
            yield connection
    finally:
        await pool.close()


def expected_rows(stack: Stack) -> list[dict]:
    rows = list(csv.reader(io.StringIO(stack.expected_csv.decode())))
    return [
        {REPORT_COLUMNS[0]: row[0], **{c: float(v) for c, v in zip(REPORT_COLUMNS[1:], row[1:],
                                                                    strict=True)}}
        for row in rows[1:]
    ]


async def test_the_status_streams_from_running_to_complete_then_the_stream_ends(stack, api):
    report_id = await api.trigger()
    seen = [status async for status in api.statuses(report_id)]
    assert seen[0]["report_id"] == report_id
    assert [status["status"] for status in seen][-1] == "Complete"
    assert all(status["status"] == "Running" for status in seen[:-1])
    assert seen[-1]["rows"] == STORES
    assert await api.csv(report_id) == stack.expected_csv
    # An ended report's stream is its final status, at once.
    again = [status async for status in api.statuses(report_id)]
    assert again == [seen[-1]]


async def test_an_unknown_reports_events_are_404(http):
    async with http.get(f"/reports/{uuid.uuid4().hex}/events") as response:
        assert response.status == 404
        assert (await response.json())["error"]["code"] == "not_found"


def read_events(stack: Stack) -> list[dict]:
    """Every event on report-events so far."""
    topic = stack.settings.topic(TOPIC_REPORT_EVENTS)
    consumer = Consumer(consumer_config(stack.settings, f"test-{uuid.uuid4().hex}",
                                       **{"enable.auto.commit": False}))
    try:
        metadata = consumer.list_topics(topic, timeout=10).topics[topic]
        partitions = [TopicPartition(topic, p, 0) for p in metadata.partitions]
        ends = {p.partition: consumer.get_watermark_offsets(p, timeout=10)[1] for p in partitions}
        consumer.assign(partitions)
        events, deadline = [], time.monotonic() + 30
        done = {p: 0 for p in ends}
        while any(done[p] < ends[p] for p in ends) and time.monotonic() < deadline:
            message = consumer.poll(1.0)
            if message is None or message.error() is not None:
                continue
            done[message.partition()] = message.offset() + 1
            event = decode_event(message.value())
            assert message.key() == event["report_id"].encode()
            events.append(event)
        return events
    finally:
        consumer.close()


async def test_report_events_carry_exactly_the_ended_reports(stack, api, database):
    complete_id = await api.trigger()
    await api.wait(complete_id, timeout_s=60)
    # A report that ends otherwise: failed by whatever fails it, here directly.
    failed_id = uuid.uuid4().hex
    await reports_db.insert_running(database, failed_id, {})
    await reports_db.fail_report(database, failed_id, "failed for the test")
    running_id = uuid.uuid4().hex
    await reports_db.insert_running(database, running_id, {})

    async def published() -> bool:
        ended = await database.fetchval(
            "SELECT count(*) FROM reports WHERE status <> 'Running' AND announced_at IS NULL"
        )
        return ended == 0

    await eventually(published, 30, "every ended report published", stack)
    events = await asyncio.to_thread(read_events, stack)
    by_id = {event["report_id"]: event for event in events}
    ended = {
        record["report_id"]: record["status"]
        for record in await database.fetch("SELECT report_id, status FROM reports")
        if record["status"] != "Running"
    }
    assert {report_id: event["status"] for report_id, event in by_id.items()} == ended
    assert running_id not in by_id
    assert by_id[failed_id]["error"] == "failed for the test"
    complete = by_id[complete_id]
    assert complete["rows"] == STORES and complete["download_path"] == f"/reports/{complete_id}.csv"
    status = await api.status(complete_id)
    assert complete["checksum_sha256"] == status["checksum_sha256"]


async def test_rows_of_some_stores_and_pages_of_all(stack, api, http):
    report_id = await api.trigger()
    await api.wait(report_id, timeout_s=60)
    rows = expected_rows(stack)
    some = [rows[3], rows[17]]
    assert await api.rows(report_id, [row["store_id"] for row in some] + ["no-such"]) == some
    paged, path = [], f"/reports/{report_id}/rows?limit=7"
    while path is not None:
        async with http.get(path) as response:
            assert response.status == 200, await response.text()
            page = await response.json()
        assert len(page["rows"]) <= 7
        paged += page["rows"]
        path = page["next"]
    assert paged == rows
    async with http.get(f"/reports/{report_id}/rows", params={"limit": "0"}) as response:
        assert response.status == 400
    running = await trigger(http)
    async with http.get(f"/reports/{running}/rows") as response:
        assert response.status in (200, 409)  # 409 while it is still Running


async def test_reports_are_listed_by_status_since_and_a_page_at_a_time(stack, api, http):
    first = await api.trigger()
    await api.wait(first, timeout_s=60)
    listed_one_by_one = [report async for report in api.reports(limit=1)]
    async with http.get("/reports", params={"limit": "1000"}) as response:
        assert [r["report_id"] for r in listed_one_by_one] == [
            r["report_id"] for r in (await response.json())["reports"]
        ]
    complete = [report async for report in api.reports(status="Complete")]
    assert complete and all(report["status"] == "Complete" for report in complete)
    newest = listed_one_by_one[0]["requested_at"]
    since = [report async for report in api.reports(since=newest)]
    assert [report["report_id"] for report in since] == [listed_one_by_one[0]["report_id"]]
    async with http.get("/reports", params={"cursor": "nonsense"}) as response:
        assert response.status == 400


def storemon(stack: Stack, *command: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*STOREMON, *command], env=stack.env, capture_output=True, text=True,
                          timeout=120, check=False)


async def test_storemon_report_waits_and_saves_the_csv(stack, tmp_path):
    out = tmp_path / "report.csv"
    done = await asyncio.to_thread(storemon, stack, "report", "--wait", "-o", str(out))
    assert done.returncode == 0, done.stderr
    report_id = done.stdout.strip()
    assert out.read_bytes() == stack.expected_csv
    assert f"saved {STORES:,} rows" in done.stderr
    listed = await asyncio.to_thread(storemon, stack, "reports", "list", "--json")
    assert report_id in {json.loads(line)["report_id"] for line in listed.stdout.splitlines()}
    store_id = expected_rows(stack)[0]["store_id"]
    rows = await asyncio.to_thread(storemon, stack, "reports", "rows", report_id, "--store",
                                   store_id)
    assert json.loads(rows.stdout) == expected_rows(stack)[0]
    deleted = await asyncio.to_thread(storemon, stack, "reports", "delete", report_id)
    assert deleted.returncode == 0, deleted.stderr
    gone = await asyncio.to_thread(storemon, stack, "reports", "rows", report_id, "--store",
                                   store_id)
    assert gone.returncode == 1 and "HTTP 404" in gone.stderr


async def test_a_failed_report_ends_the_wait_with_its_error(stack, api, database):
    report_id = uuid.uuid4().hex
    await reports_db.insert_running(database, report_id, {})
    failing: list[asyncio.Task] = []

    def fail_once_running(status: dict) -> None:
        # Failed while the wait is under way (the stream has said Running).
        if status["status"] == "Running" and not failing:
            failing.append(asyncio.ensure_future(
                reports_db.fail_report(database, report_id, "no owner for partition 2")
            ))

    with pytest.raises(ReportFailed, match="no owner for partition 2"):
        await api.wait(report_id, timeout_s=30, on_status=fail_once_running)
    await failing[0]


class Receiver:
    """A webhook receiver on loopback: /ok answers 200, /flaky 500 twice then 200,
    /down always 500; every request kept."""

    def __init__(self) -> None:
        self.received: dict[str, list[tuple[dict[str, str], bytes]]] = {}

    async def handle(self, request: web.Request) -> web.Response:
        path = request.match_info["path"]
        self.received.setdefault(path, []).append((dict(request.headers), await request.read()))
        if path == "ok" or (path == "flaky" and len(self.received[path]) > 2):
            return web.Response(text="thanks")
        return web.Response(status=500, text="not now")


@pytest.fixture(scope="module")
async def receiver() -> AsyncIterator[tuple[Receiver, str]]:
    hooks = Receiver()
    app = web.Application()
    app.router.add_post("/{path}", hooks.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    port = free_port()
    await web.TCPSite(runner, "127.0.0.1", port).start()
    try:
        yield hooks, f"http://127.0.0.1:{port}"
    finally:
        await runner.cleanup()


async def webhook_of(api: Client, report_id: str, stack: Stack, until: str) -> dict:
    """The report's webhook once `until` (delivered_at, given_up_at) is set."""

    async def settled() -> dict | None:
        hook = (await api.status(report_id)).get("webhook")
        return hook if hook and hook[until] else None

    return await eventually(settled, 60, f"the webhook {until}", stack)


async def test_a_webhook_is_posted_signed_with_the_event(stack, api, receiver):
    hooks, base = receiver
    report_id = await api.trigger(callback_url=f"{base}/ok")
    final = await api.wait(report_id, timeout_s=60)
    hook = await webhook_of(api, report_id, stack, "delivered_at")
    assert hook["url"] == f"{base}/ok" and [a["status"] for a in hook["attempts"]] == [200]
    headers, body = next(
        (h, b) for h, b in hooks.received["ok"] if h["X-Storemon-Report-Id"] == report_id
    )
    verify(WEBHOOK_SECRET, body, headers[SIGNATURE_HEADER])  # raises if it does not hold
    with pytest.raises(BadSignature):
        verify("another secret", body, headers[SIGNATURE_HEADER])
    event = decode_event(body)
    assert event["report_id"] == report_id and event["status"] == "Complete"
    assert event["checksum_sha256"] == final["checksum_sha256"]


async def test_a_failing_receiver_is_tried_again_until_it_takes_it(stack, api, receiver):
    _, base = receiver
    report_id = await api.trigger(callback_url=f"{base}/flaky")
    hook = await webhook_of(api, report_id, stack, "delivered_at")
    assert [attempt["status"] for attempt in hook["attempts"]] == [500, 500, 200]


async def test_retries_are_bounded_in_time(stack, api, receiver):
    _, base = receiver
    report_id = await api.trigger(callback_url=f"{base}/down")
    hook = await webhook_of(api, report_id, stack, "given_up_at")
    # Pauses of 1, 2, 4 s: within the 4 s after the report ended fit the first two
    # (one, if the first attempt came late), never the third.
    statuses = [attempt["status"] for attempt in hook["attempts"]]
    assert statuses in ([500, 500], [500, 500, 500]), statuses
    assert hook["delivered_at"] is None


@pytest.mark.parametrize(
    ("url", "reason"),
    [
        ("http://169.254.169.254/latest/meta-data", "does not allow"),
        ("http://localhost:8080/hook", "does not allow"),
        ("ftp://127.0.0.1/hook", "must be an http:// or https:// URL"),
        ("http://user:pw@127.0.0.1/hook", "must not carry a user or password"),
    ],
)
async def test_a_callback_url_not_allowed_is_refused_at_trigger_time(http, url, reason):
    async with http.post("/trigger_report", json={"callback_url": url}) as response:
        assert response.status == 400
        assert reason in (await response.json())["error"]["message"]
