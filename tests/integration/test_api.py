"""The HTTP API in-process (aiohttp test server) against the real Kafka and PostgreSQL."""

import asyncio
import hashlib
import json
import logging
import re
import socket
import time
from datetime import UTC, datetime, timedelta

import aiohttp
import psutil
import pytest
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition
from jsonschema import Draft202012Validator

from storemon import config
from storemon.api import batching
from storemon.api import events as ingest
from storemon.api.app import create_app
from storemon.api.context import POOL
from storemon.database import reports_db
from storemon.kafka.offsets import end_offsets
from storemon.kafka.partitioning import partition_of
from storemon.kafka.topics import (
    TOPIC_REPORT_REQUESTS,
    TOPIC_STATUS,
    TOPIC_STATUS_DLQ,
    input_partitions,
)
from storemon.messages.report_requests import is_report_id, new_report_id
from storemon.messages.schemas import openapi_document, schema_errors
from storemon.timebase import datetime_from_us, format_timestamp

from .services import record_count
from .stack import report_csv, report_json

OPENAPI = openapi_document()
TOKEN = "s3cret-token"


def check_against_openapi(schema_name: str, value) -> None:
    """Validate an answer against one of the document's component schemas."""
    validator = Draft202012Validator(
        {"$ref": f"#/components/schemas/{schema_name}", "components": OPENAPI["components"]}
    )
    errors = [error.message for error in validator.iter_errors(value)]
    assert not errors, f"{schema_name}: {errors} in {value}"


def read_topic(settings, topic: str, count: int, timeout: float = 30) -> list[tuple[bytes, dict]]:
    """The first `count` records of a topic (all partitions) as (key, decoded value)."""
    name = settings.topic(topic)
    consumer = Consumer(
        {"bootstrap.servers": settings.kafka_bootstrap_servers, "group.id": f"{name}-test"}
    )
    try:
        partitions = consumer.list_topics(name, timeout=10).topics[name].partitions
        consumer.assign([TopicPartition(name, p, OFFSET_BEGINNING) for p in partitions])
        records = []
        deadline = time.monotonic() + timeout
        while len(records) < count:
            assert time.monotonic() < deadline, f"only {len(records)} of {count} records in {name}"
            for message in consumer.consume(count - len(records), timeout=0.5):
                assert message.error() is None, message.error()
                records.append((message.key(), json.loads(message.value())))
        return records
    finally:
        consumer.close()


async def error_of(response, status: int) -> dict:
    assert response.status == status, await response.text()
    body = await response.json()
    check_against_openapi("Error", body)
    return body["error"]


def test_every_live_route_is_in_the_openapi_document_and_back():
    app = create_app(config.Settings.from_env())
    live = {
        (route.method.lower(), route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD"  # aiohttp adds HEAD to every GET
    }
    documented = {
        (method, path)
        for path, operations in OPENAPI["paths"].items()
        for method in operations
        if method in {"get", "post", "put", "delete", "patch"}
    }
    assert live == documented


async def test_errors_are_json_with_code_and_message(api):
    async with api() as client:
        assert (await error_of(await client.get("/nowhere"), 404))["code"] == "not_found"
        response = await client.put("/reports")
        assert (await error_of(response, 405))["code"] == "method_not_allowed"
        assert "GET" in response.headers["Allow"]
        error = await error_of(await client.get("/get_report", params={"report_id": "zz"}), 400)
        assert "32 lower-case hexadecimal" in error["message"]
        await error_of(await client.get("/get_report"), 400)
        await error_of(await client.get("/get_report", params={"report_id": "0" * 32}), 404)
        await error_of(await client.get(f"/reports/{'0' * 32}.csv"), 404)
        await error_of(await client.get("/reports/nothex.csv"), 400)
        await error_of(await client.delete(f"/reports/{'0' * 32}"), 404)
        await error_of(await client.get("/reports", params={"limit": "0"}), 400)
        bad_trigger = await client.post("/trigger_report", json={"as_of": "yesterday"})
        assert "as_of" in (await error_of(bad_trigger, 400))["message"]
        await error_of(await client.post("/trigger_report", json={"colour": "red"}), 400)
        await error_of(await client.post("/trigger_report", json={"store_ids": []}), 400)


async def test_trigger_registers_the_report_and_queues_its_request(api, pool, report_settings):
    async with api() as client:
        response = await client.post(
            "/trigger_report",
            json={"as_of": "2023-01-25 18:00:00 UTC", "store_ids": ["1", "2"]},
        )
        assert response.status == 202
        triggered = await response.json()
        check_against_openapi("Triggered", triggered)
        loop_style = await client.get("/trigger_report", params={"store_ids": "7,8"})
        assert loop_style.status == 202
        second = (await loop_style.json())["report_id"]
    report_id = triggered["report_id"]
    assert is_report_id(report_id) and report_id != second
    async with pool.acquire() as connection:
        row = await reports_db.fetch_report(connection, report_id)
    assert row.status == reports_db.RUNNING
    assert row.request == {"as_of": "2023-01-25T18:00:00.000000Z", "store_ids": ["1", "2"]}
    requests = dict(read_topic(report_settings, TOPIC_REPORT_REQUESTS, 2))
    request = requests[report_id.encode()]
    assert schema_errors("report-request", request) == []
    assert request["store_ids"] == ["1", "2"] and request["as_of"].startswith("2023-01-25T18:00")
    assert requests[second.encode()]["store_ids"] == ["7", "8"]


async def test_running_and_failed_reports_answer_their_status(api, pool):
    async with pool.acquire() as connection:
        running_id = new_report_id()
        await reports_db.insert_running(connection, running_id, {})
        failed_id = new_report_id()
        await reports_db.insert_running(connection, failed_id, {})
        await reports_db.fail_report(connection, failed_id, "state not readable")
    async with api() as client:
        running = await client.get("/get_report", params={"report_id": running_id})
        assert running.status == 200
        assert await running.json() == {"report_id": running_id, "status": "Running"}
        failed = await (await client.get("/get_report", params={"report_id": failed_id})).json()
        check_against_openapi("FailedStatus", failed)
        assert failed["error"] == "state not readable"
        error = await error_of(await client.get(f"/reports/{running_id}.csv"), 409)
        assert error["code"] == "not_ready"


async def test_a_report_running_past_the_timeout_is_answered_failed(api, pool):
    async with pool.acquire() as connection:
        report_id = new_report_id()
        await reports_db.insert_running(connection, report_id, {})
        await connection.execute(
            "UPDATE reports SET requested_at = now() - interval '2 minutes' WHERE report_id = $1",
            report_id,
        )
    async with api(report_timeout_s=60) as client:
        answer = await (await client.get("/get_report", params={"report_id": report_id})).json()
    assert answer == {"report_id": report_id, "status": "Failed", "error": "timed out"}


CSV_HEADER = (
    b"store_id,uptime_last_hour,uptime_last_day,uptime_last_week,"
    b"downtime_last_hour,downtime_last_day,downtime_last_week\n"
)


def report_csv_of(rows: int) -> bytes:
    return CSV_HEADER + b"".join(b"%d,60,24,168,0,0,0\n" % i for i in range(rows))


async def complete_report(pool, csv: bytes, request: dict | None = None) -> str:
    """A report as a reporter completes it (as of 2023-01-25T18:13:22.479220Z); its id."""
    async with pool.acquire() as connection:
        report_id = new_report_id()
        await reports_db.insert_running(connection, report_id, request or {})
        await reports_db.complete_report(
            connection,
            report_id,
            csv,
            row_count=csv.count(b"\n") - 1,
            as_of=datetime_from_us(1_674_670_402_479_220),
            state_offsets={"changelog": {0: 5}},
        )
    return report_id


async def test_a_complete_report_streams_its_csv_or_describes_itself(api, pool):
    csv = report_csv_of(150_000)  # > 2 chunks
    report_id = await complete_report(pool, csv)
    checksum = hashlib.sha256(csv).hexdigest()
    async with api() as client:
        response = await client.get("/get_report", params={"report_id": report_id})
        assert response.status == 200
        assert response.headers["X-Report-Status"] == "Complete"
        assert response.headers["Content-Type"].startswith("text/csv")
        assert response.headers["Content-Length"] == str(len(csv))
        assert response.headers["ETag"] == f'"{checksum}"'
        assert "attachment" in response.headers["Content-Disposition"]
        assert f"{report_id}.csv" in response.headers["Content-Disposition"]
        assert await response.read() == csv

        described = await client.get(
            "/get_report", params={"report_id": report_id}, headers={"Accept": "application/json"}
        )
        summary = await described.json()
        check_against_openapi("Report", summary)
        assert summary["status"] == "Complete" and summary["rows"] == 150_000
        assert summary["request"] == {}
        assert summary["as_of"] == "2023-01-25T18:13:22.479220Z"
        assert summary["checksum_sha256"] == checksum
        assert summary["state_offsets"] == {"changelog": {"0": 5}}
        assert summary["download_url"] == f"/reports/{report_id}.csv"

        download = await client.get(f"/reports/{report_id}.csv")
        assert await download.read() == csv
        cached = await client.get(
            f"/reports/{report_id}.csv", headers={"If-None-Match": f'"{checksum}"'}
        )
        assert cached.status == 304
        listed = await (await client.get("/reports")).json()
        check_against_openapi("ReportList", listed)
        assert [report["report_id"] for report in listed["reports"]] == [report_id]

        assert (await client.delete(f"/reports/{report_id}")).status == 204
        await error_of(await client.get(f"/reports/{report_id}.csv"), 404)
        await error_of(await client.get("/get_report", params={"report_id": report_id}), 404)


NDJSON_BODY = (
    b'{"store_id":"s1","timestamp_utc":"2023-01-25T18:00:00Z","status":"active"}\n'
    b'{"store_id":"s1","timestamp_utc":"yesterday","status":"active"}\n'
    b"\n"
    b"not json\n"
)
CSV_BODY = (
    b"store_id,status,timestamp_utc\n"
    b"s2,INACTIVE,2023-01-25 18:00:00.5 UTC\n"
    b"s2,up,2023-01-25 18:00:00 UTC\n"
    b"s3,active\n"
)
JSON_BODY = json.dumps(
    [
        {"store_id": "s4", "timestamp_utc": "2023-01-25T18:00:00+00:00", "status": "active"},
        {"store_id": "s4", "timestamp_utc": "2023-01-25T18:00:00Z", "status": "active", "x": 1},
        7,
    ]
).encode()


async def test_events_produce_valid_rows_and_dead_letter_the_others(api, report_settings):
    bodies = [
        ("application/x-ndjson", NDJSON_BODY),
        ("text/csv", CSV_BODY),
        ("application/json", JSON_BODY),
    ]
    answers = []
    async with api() as client:
        for content_type, body in bodies:
            response = await client.post(
                "/events", data=body, headers={"Content-Type": content_type}
            )
            assert response.status == 200, await response.text()
            answers.append(await response.json())
        metrics = await (await client.get("/metrics")).text()
    for answer in answers:
        check_against_openapi("EventsResult", answer)
    ndjson, csv, array = answers
    assert (ndjson["accepted"], ndjson["rejected"]) == (1, 2)
    assert [(e["index"], e["line"], e["field"]) for e in ndjson["errors"]] == [
        (1, 2, "timestamp_utc"),
        (2, 4, "(record)"),
    ]
    assert [(e["index"], e["line"], e["field"]) for e in csv["errors"]] == [
        (1, 3, "status"),
        (2, 4, "(row)"),
    ]
    assert [(e["index"], e["line"], e["field"]) for e in array["errors"]] == [
        (1, None, "x"),
        (2, None, "(record)"),
    ]
    # Partition batches (schemas/status-partition-batch.schema.json), without a key, each
    # on the partition it names, which is each of its stores' (murmur2).
    status_topic = report_settings.topic(TOPIC_STATUS)
    records = sum(end_offsets(report_settings, status_topic).values())
    batches = read_topic(report_settings, TOPIC_STATUS, records)
    partitions = input_partitions(report_settings)
    accepted = []
    for key, value in batches:
        assert schema_errors("status-partition-batch", value) == []
        assert key is None
        for poll in value["polls"]:
            assert partition_of(poll["store_id"].encode(), partitions) == value["partition"]
            accepted.append(poll)
    assert sorted((p["store_id"], p["status"], p["timestamp_utc"]) for p in accepted) == [
        ("s1", "active", "2023-01-25T18:00:00.000000Z"),
        ("s2", "inactive", "2023-01-25T18:00:00.500000Z"),
        ("s4", "active", "2023-01-25T18:00:00.000000Z"),
    ]
    dead = [value for _, value in read_topic(report_settings, TOPIC_STATUS_DLQ, 6)]
    assert all(schema_errors("dlq-record", record) == [] for record in dead)
    assert {(r["source"], r["line"], r["field"]) for r in dead} >= {
        ("http", 1, "timestamp_utc"),
        ("http", 1, "status"),
        ("http", 2, "(record)"),
    }
    assert any(record["raw"] == "s2,up,2023-01-25 18:00:00 UTC" for record in dead)
    assert 'storemon_events_total{outcome="accepted"} 3' in metrics
    assert 'storemon_events_total{outcome="rejected"} 6' in metrics


async def test_events_need_the_token_when_one_is_set(api):
    body = b'[{"store_id":"s1","timestamp_utc":"2023-01-25T18:00:00Z","status":"active"}]'
    json_type = {"Content-Type": "application/json"}
    async with api(ingest_token=TOKEN) as client:
        response = await client.post("/events", data=body, headers=json_type)
        assert (await error_of(response, 401))["code"] == "unauthorized"
        assert response.headers["WWW-Authenticate"].startswith("Bearer")
        wrong = {**json_type, "Authorization": "Bearer nope"}
        await error_of(await client.post("/events", data=body, headers=wrong), 401)
        right = {**json_type, "Authorization": f"Bearer {TOKEN}"}
        response = await client.post("/events", data=body, headers=right)
        assert (await response.json())["accepted"] == 1


async def test_bodies_over_the_limit_are_refused_with_413(api):
    async with api(max_body_bytes=1000) as client:
        too_big = b"store_id,status,timestamp_utc\n" + b"s1,active,2023-01-25T18:00:00Z\n" * 100
        response = await client.post("/events", data=too_big, headers={"Content-Type": "text/csv"})
        error = await error_of(response, 413)
        assert "1000 bytes" in error["message"] and "STOREMON_MAX_BODY_BYTES" in error["message"]

        async def chunked():
            for _ in range(10):
                yield b"s1,active,2023-01-25T18:00:00Z\n" * 10

        response = await client.post(
            "/events", data=chunked(), headers={"Content-Type": "text/csv"}
        )
        await error_of(response, 413)
        # Unsupported body types are refused as such.
        response = await client.post("/events", data=b"x", headers={"Content-Type": "text/plain"})
        assert (await error_of(response, 415))["code"] == "unsupported_media_type"


async def test_health_readiness_and_metrics(api):
    async with api() as client:
        assert await (await client.get("/healthz")).json() == {"status": "ok"}
        ready = await client.get("/readyz")
        assert ready.status == 200
        check_against_openapi("Readiness", await ready.json())
        await client.get("/get_report", params={"report_id": "zz"})
        metrics = await client.get("/metrics")
        assert metrics.headers["Content-Type"].startswith("text/plain; version=0.0.4")
        text = await metrics.text()
        requests = 'storemon_http_requests_total{method="GET",route="/get_report",status="400"}'
        assert f"{requests} 1" in text
        assert 'storemon_reports{status="Running"} 0' in text
        # Lag is read at most every 5 s with a 3 s timeout: on a broker just started, the
        # first read can time out while the group coordinator loads (storemon_kafka_up 0
        # until the next read), so the test waits for a read that succeeded.
        deadline = time.monotonic() + 60
        while "storemon_kafka_up 1" not in text:
            assert "storemon_kafka_up 0" in text, text
            assert time.monotonic() < deadline, "Kafka never read as up"
            await asyncio.sleep(0.5)
            text = await (await client.get("/metrics")).text()
    assert "storemon_consumer_lag{" in text


async def test_metrics_have_the_report_duration_histogram(api, pool):
    async with pool.acquire() as connection:
        report_id = new_report_id()
        await reports_db.insert_running(connection, report_id, {})
        await connection.execute(
            "UPDATE reports SET requested_at = now() - interval '3 seconds' WHERE report_id = $1",
            report_id,
        )
        await reports_db.complete_report(
            connection, report_id, b"csv\n", row_count=0, as_of=None, state_offsets={}
        )
    async with api() as client:
        text = await (await client.get("/metrics")).text()
    assert "# TYPE storemon_report_duration_seconds histogram" in text
    assert 'storemon_report_duration_seconds_bucket{le="2.5"} 0' in text
    assert 'storemon_report_duration_seconds_bucket{le="5.0"} 1' in text
    assert 'storemon_report_duration_seconds_bucket{le="+Inf"} 1' in text
    assert "storemon_report_duration_seconds_count 1" in text
    (seconds,) = re.findall(r"^storemon_report_duration_seconds_sum (\S+)$", text, re.MULTILINE)
    assert 3 <= float(seconds) <= 5
    assert 'storemon_reports{status="Complete"} 1' in text


async def test_readiness_fails_when_kafka_is_unreachable(api):
    async with api(kafka_bootstrap_servers="127.0.0.1:9") as client:
        response = await client.get("/readyz")
        body = await response.json()
    assert response.status == 503
    check_against_openapi("NotReady", body)
    assert body["checks"]["postgres"] == "ok" and body["checks"]["kafka"] != "ok"


async def test_download_url_is_under_the_public_url_never_the_host_header(api, pool):
    report_id = await complete_report(pool, report_csv_of(3))
    forged = {"Accept": "application/json", "Host": "evil.example:666"}
    for public_url, expected in [
        (None, f"/reports/{report_id}.csv"),
        ("https://storemon.example.com/", f"https://storemon.example.com/reports/{report_id}.csv"),
    ]:
        async with api(public_url=public_url) as client:
            summary = await (
                await client.get("/get_report", params={"report_id": report_id}, headers=forged)
            ).json()
            listed = await (await client.get("/reports", headers=forged)).json()
        assert summary["download_url"] == expected
        assert listed["reports"][0]["download_url"] == expected


async def test_listings_count_the_store_ids_asked_for_rather_than_echo_them(api, pool):
    store_ids = [f"store-{i}" for i in range(500)]
    as_of = "2023-01-25T18:00:00.000000Z"
    report_id = await complete_report(
        pool, report_csv_of(3), request={"as_of": as_of, "store_ids": store_ids}
    )
    async with api() as client:
        listed = await (await client.get("/reports")).json()
        summary = await report_json(client, report_id)
    check_against_openapi("ReportList", listed)
    check_against_openapi("Report", summary)
    assert listed["reports"][0]["request"] == {"as_of": as_of, "store_ids_count": 500}
    assert summary["request"] == {"as_of": as_of, "store_ids_count": 500}


async def test_as_of_out_of_the_documented_range_is_refused(api):
    now = datetime.now(UTC)
    async with api() as client:
        for as_of in [
            "0001-01-01T00:00:00Z",
            "1999-12-31T23:59:59.999999Z",
            (now + timedelta(days=1, hours=1)).isoformat(),
            "9999-12-31T23:59:59Z",
        ]:
            response = await client.post("/trigger_report", json={"as_of": as_of})
            error = await error_of(response, 400)
            assert "as_of: must be between 2000-01-01T00:00:00" in error["message"], as_of
        for as_of in ["2000-01-01T00:00:00Z", (now + timedelta(hours=23)).isoformat()]:
            response = await client.post("/trigger_report", json={"as_of": as_of})
            assert response.status == 202, await response.text()


async def test_reports_stored_with_an_infinite_as_of_are_still_listed(api, pool):
    """Rows an older version wrote (a year-1 as_of became -infinity) break no answer."""
    infinite = {}
    for value in ("-infinity", "infinity"):
        report_id = await complete_report(pool, report_csv_of(3))
        async with pool.acquire() as connection:
            await connection.execute(
                "UPDATE reports SET as_of = $2::text::timestamptz WHERE report_id = $1",
                report_id,
                value,
            )
        infinite[report_id] = value
    async with api() as client:
        response = await client.get("/reports")
        assert response.status == 200, await response.text()
        listed = await response.json()
        for report_id, value in infinite.items():
            assert (await report_json(client, report_id))["as_of"] == value
    check_against_openapi("ReportList", listed)
    assert {report["report_id"]: report["as_of"] for report in listed["reports"]} == infinite


async def test_store_ids_beyond_what_kafka_takes_are_refused_not_retried(api, report_settings):
    async with api() as client:
        response = await client.post(
            "/trigger_report", json={"store_ids": [f"s{i}" for i in range(50_000)]}
        )
        error = await error_of(response, 400)
        assert "50000 stores, more than the limit of 6000" in error["message"]
        # Ids JSON escapes (each character of these as \\u00e9) are measured encoded.
        response = await client.post("/trigger_report", json={"store_ids": ["é" * 128] * 2000})
        error = await error_of(response, 400)
        assert "over the limit of 900000" in error["message"]
        # The largest request of the longest plain ids is queued.
        largest = [f"{i:0128d}" for i in range(6000)]
        response = await client.post("/trigger_report", json={"store_ids": largest})
        assert response.status == 202, await response.text()
        report_id = (await response.json())["report_id"]
    [(key, request)] = read_topic(report_settings, TOPIC_REPORT_REQUESTS, 1)
    assert key == report_id.encode() and request["store_ids"] == largest


async def test_get_trigger_report_refuses_a_body(api):
    async with api() as client:
        response = await client.get("/trigger_report", json={"store_ids": ["1"]})
        error = await error_of(response, 400)
    assert "POST" in error["message"]


#: As many as the API's pool has connections (services/api/app.py).
STALLED_DOWNLOADS = 20


async def stalled_download(client, path: str) -> socket.socket:
    """A download whose client stops reading once the answer started: a socket with a
    tiny receive buffer, which has read one byte."""
    connection = socket.socket()
    connection.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
    connection.connect((client.host, client.port))
    connection.sendall(f"GET {path} HTTP/1.1\r\nHost: storemon\r\n\r\n".encode())
    connection.setblocking(False)
    loop = asyncio.get_running_loop()
    assert await asyncio.wait_for(loop.sock_recv(connection, 1), 10) == b"H"
    return connection


async def test_clients_that_stop_reading_a_download_hold_no_database_connection(api, pool):
    report_id = await complete_report(pool, report_csv_of(250_000))  # 5.7 MB
    async with api() as client:
        stalled = [
            await stalled_download(client, f"/reports/{report_id}.csv")
            for _ in range(STALLED_DOWNLOADS)
        ]
        try:
            for path in ["/readyz", "/reports", "/metrics", f"/get_report?report_id={report_id}"]:
                started = time.monotonic()
                response = await asyncio.wait_for(
                    client.get(path, headers={"Accept": "application/json"}), 3
                )
                assert response.status == 200, (path, await response.text())
                assert time.monotonic() - started < 1, path
            # One more download is served whole meanwhile.
            assert await report_csv(client, report_id) == report_csv_of(250_000)
        finally:
            for connection in stalled:
                connection.close()


async def test_a_download_ends_short_when_its_report_is_deleted_meanwhile(api, pool, caplog):
    csv = report_csv_of(500_000)  # 12 MB: more than the loopback holds in flight
    report_id = await complete_report(pool, csv)
    async with api() as client:
        response = await client.get(f"/reports/{report_id}.csv")
        assert response.status == 200
        received = await response.content.readexactly(1000)
        assert (await client.delete(f"/reports/{report_id}")).status == 204
        with pytest.raises(aiohttp.ClientPayloadError):
            received += await response.read()
        metrics = await (await client.get("/metrics")).text()
    assert received == csv[: len(received)] and len(received) < len(csv)
    assert "storemon_http_requests_total{" in metrics and 'status="500"' not in metrics
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def test_a_busy_pool_answers_503_with_retry_after(api):
    async with api() as client:
        pool = client.app[POOL]
        held = [await pool.acquire() for _ in range(pool.get_max_size())]
        try:
            started = time.monotonic()
            response = await asyncio.wait_for(
                client.get("/reports"), reports_db.ACQUIRE_TIMEOUT_S + 5
            )
            waited = time.monotonic() - started
        finally:
            for connection in held:
                await pool.release(connection)
        error = await error_of(response, 503)
    assert error["code"] == "database_unavailable"
    assert int(response.headers["Retry-After"]) >= 1
    assert waited < reports_db.ACQUIRE_TIMEOUT_S + 2


async def test_events_of_many_bad_rows_keep_memory_bounded(api, report_settings):
    """Every bad row is counted and dead-lettered, but neither its error nor its
    delivery is kept: memory does not grow with the number of bad rows."""
    bad_rows = 256 * 1024
    this_process = psutil.Process()  # the API runs in it
    before = peak = this_process.memory_info().rss

    async def sample_memory() -> None:
        nonlocal peak
        while True:
            peak = max(peak, this_process.memory_info().rss)
            await asyncio.sleep(0.02)

    async with api() as client:
        sampler = asyncio.create_task(sample_memory())
        try:
            response = await client.post(
                "/events", data=b"1\n" * bad_rows, headers={"Content-Type": "application/x-ndjson"}
            )
            assert response.status == 200, await response.text()
            answer = await response.json()
        finally:
            sampler.cancel()
    peak = max(peak, this_process.memory_info().rss)
    assert (answer["accepted"], answer["rejected"]) == (0, bad_rows)
    assert len(answer["errors"]) == ingest.MAX_ERRORS_LISTED
    assert answer["errors"][-1]["line"] == ingest.MAX_ERRORS_LISTED
    dead_letters = record_count(report_settings, [report_settings.topic(TOPIC_STATUS_DLQ)])
    assert dead_letters == bad_rows
    # It was about 600 MiB for 512 Ki rows.
    assert peak - before < 64 * 1024 * 1024, f"{(peak - before) / 2**20:.0f} MiB more"


def large_events_body(content_type: str, max_bytes: int) -> tuple[bytes, int]:
    """Valid polls of 1000 stores, as a body of about `max_bytes`; and their count."""
    records = []
    size = 2
    while size < max_bytes - 200:
        record = json.dumps(
            {
                "store_id": f"store-{len(records) % 1000}",
                "timestamp_utc": format_timestamp(1_674_000_000_000_000 + len(records)),
                "status": "active",
            }
        )
        records.append(record)
        size += len(record) + 1
    if content_type == "application/json":
        return ("[" + ",".join(records) + "]").encode(), len(records)
    return "\n".join(records).encode(), len(records)


@pytest.mark.parametrize("content_type", ["application/json", "application/x-ndjson"])
async def test_a_large_events_body_leaves_the_api_responsive(api, report_settings, content_type):
    body, polls = large_events_body(content_type, config.DEFAULT_MAX_BODY_BYTES)
    async with api() as client:
        posted = asyncio.create_task(
            client.post("/events", data=body, headers={"Content-Type": content_type})
        )
        # The longest time from one answer of /healthz to the next, asked 50 ms apart:
        # whatever holds up the event loop (here, the API's) shows in it.
        slowest = 0.0
        answered = time.monotonic()
        while not posted.done():
            await asyncio.sleep(0.05)
            assert (await client.get("/healthz")).status == 200
            slowest = max(slowest, time.monotonic() - answered)
            answered = time.monotonic()
        response = await posted
        assert response.status == 200, await response.text()
        answer = await response.json()
    assert (answer["accepted"], answer["rejected"]) == (polls, 0)
    # Partition batches: a record carries hundreds of polls, at most MAX_POLLS.
    records = record_count(report_settings, [report_settings.topic(TOPIC_STATUS)])
    assert polls / batching.MAX_POLLS <= records < polls / 100
    assert slowest < 0.5, f"/healthz waited for {slowest:.2f} s"


async def test_events_the_broker_did_not_confirm_are_answered_503(api):
    async with api(kafka_bootstrap_servers="127.0.0.1:9") as client:
        response = await client.post(
            "/events", data=NDJSON_BODY, headers={"Content-Type": "application/x-ndjson"}
        )
        error = await error_of(response, 503)
    assert error["code"] == "kafka_unavailable"
    assert "store-status are unknown" in error["message"]
    assert "send the request again" in error["message"]


async def test_concurrent_events_requests_share_partition_batches_and_each_gets_its_counts(
    api, report_settings
):
    """Polls of requests under way at once travel in shared partition batches; each
    request is answered with its own counts, once its polls are confirmed."""
    requests = 24

    def body(number: int) -> bytes:
        lines = [
            json.dumps({"store_id": f"store-{number}-{n}", "status": "active",
                        "timestamp_utc": f"2023-01-25T18:{n:02d}:00Z"})
            for n in range(number + 1)
        ]
        lines += ['{"store_id": "bad"}'] * (number % 3)  # each request its own rejects
        return "\n".join(lines).encode()

    async with api() as client:
        async def post(number: int) -> dict:
            response = await client.post(
                "/events", data=body(number), headers={"Content-Type": "application/x-ndjson"}
            )
            assert response.status == 200, await response.text()
            return await response.json()

        answers = await asyncio.gather(*(post(number) for number in range(requests)))
    assert [(a["accepted"], a["rejected"]) for a in answers] == [
        (number + 1, number % 3) for number in range(requests)
    ]
    polls = sum(number + 1 for number in range(requests))
    status_topic = report_settings.topic(TOPIC_STATUS)
    records = sum(end_offsets(report_settings, status_topic).values())
    batches = read_topic(report_settings, TOPIC_STATUS, records)
    assert sum(len(value["polls"]) for _, value in batches) == polls
    partitions = input_partitions(report_settings)
    unshared = sum(
        len({partition_of(f"store-{number}-{n}".encode(), partitions) for n in range(number + 1)})
        for number in range(requests)
    )
    assert records < unshared, "requests under way at once share their partitions' batches"
