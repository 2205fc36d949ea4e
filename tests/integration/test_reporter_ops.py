"""The reporter as a service operations watch: /healthz, /readyz and /metrics on its
metrics port, and the state's lag it reads from Kafka."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from storemon.config import Settings
from storemon.inputs.values import Poll, parse_timestamp
from storemon.kafka.clients import make_producer
from storemon.kafka.partitioning import partition_of
from storemon.kafka.topics import changelog_topic, ensure_topics
from storemon.observability import metric_names as names
from storemon.state.lag import read_state_lag
from storemon.state.layout import NEWEST_POLL_TABLE, encode_newest_poll, newest_poll_key
from storemon.state.newest import NewestPollReader
from storemon.timebase import US_PER_SECOND

from .services import ServiceProcess, deployment_env, free_port, produce_polls, wait_until

pytestmark = pytest.mark.integration

PARTITIONS = 4
HOUR_US = 3600 * US_PER_SECOND
T0 = parse_timestamp("2023-01-25T18:00:00Z")


def get(url: str) -> tuple[int, str]:
    """Status and body of a GET; an error status is an answer too."""
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


def answer_of(url: str) -> tuple[int, str] | None:
    """None while nothing listens there."""
    try:
        return get(url)
    except OSError:
        return None


@pytest.fixture
def reporter(report_settings: Settings, pool, tmp_path: Path):
    """A `storemon reporter` with its metrics port on the test's topics and schema; its URL."""
    ensure_topics(report_settings)
    port = free_port()
    environment = deployment_env(report_settings, STOREMON_REPORTER_METRICS_PORT=str(port))
    process = ServiceProcess(["reporter"], environment, tmp_path, "reporter")
    try:
        yield f"http://127.0.0.1:{port}", process
    finally:
        process.stop()


async def test_the_reporter_is_live_ready_and_serves_its_metrics(reporter, report_settings, api):
    url, process = reporter

    def answer(path: str) -> tuple[int, str] | None:
        assert process.process.poll() is None, process.log_tail()
        return answer_of(f"{url}{path}")

    status, body = wait_until(lambda: answer("/healthz"), 60, "/healthz", process.log_tail)
    assert status == 200 and json.loads(body) == {"status": "ok"}
    _, body = wait_until(
        lambda: (got := answer("/readyz")) and got[0] == 200 and got,
        60,
        "/readyz to answer 200",
        lambda: f"{answer_of(url + '/readyz')}\n{process.log_tail()}",
    )
    assert json.loads(body) == {
        "status": "ready",
        "checks": {"postgres": "ok", "kafka": "ok", "consumer": "ok"},
    }

    # A poll no worker consumes, and a report no worker answers: its 4 parts stay due.
    produce_polls(report_settings, [Poll("s1", T0, "active")])
    async with api() as client:
        triggered = await client.post("/trigger_report", json={"as_of": "2023-01-25T18:00:00Z"})
        assert triggered.status == 202, await triggered.text()
    status_topic = report_settings.topic("store-status")
    s1_partition = partition_of(b"s1", PARTITIONS)

    def metrics() -> str | None:
        got = answer("/metrics")
        text = got[1] if got and got[0] == 200 else ""
        gathering = f"{names.REPORTER_PARTS_OUTSTANDING} {PARTITIONS}" in text
        # prometheus_client writes labels in name order, values as floats.
        lag = f'partition="{s1_partition}",topic="{status_topic}"}} 1.0' in text
        return text if gathering and lag else None

    text = wait_until(metrics, 60, "the report's parts and the poll's lag on /metrics",
                      lambda: f"{answer_of(url + '/metrics')}\n{process.log_tail()}")
    for family in names.REPORTER_METRICS:
        assert f"# TYPE {family} " in text, family
    assert f"{names.REPORTER_REPORTS_GATHERING} 1" in text
    assert f"{names.REPORTER_KAFKA_UP} 1" in text
    # No worker has accepted a poll: no lag in seconds, no newest poll.
    assert f"{names.STATE_LAG_SECONDS}{{" not in text
    assert f"{names.STATE_NEWEST_POLL}{{" not in text


def test_state_lag_in_seconds_compares_the_last_produced_poll_with_the_newest_accepted(
    report_settings: Settings,
):
    ensure_topics(report_settings)
    # Stores of two partitions: each partition's last record holds its newest poll.
    stores = {}
    for number in range(100):
        store_id = f"store-{number}"
        stores.setdefault(partition_of(store_id.encode(), PARTITIONS), store_id)
        if len(stores) == 2:
            break
    (first, first_store), (second, second_store) = sorted(stores.items())
    produce_polls(
        report_settings,
        [
            Poll(first_store, T0 - HOUR_US, "active"),
            Poll(first_store, T0, "inactive"),
            Poll(second_store, T0 - HOUR_US, "active"),
        ],
    )
    # What the owners accepted, as a worker writes it: partition `first` two hours behind.
    producer = make_producer(report_settings)
    changelog = changelog_topic(report_settings, NEWEST_POLL_TABLE)  # ensure_topics made it
    for partition, newest_us in ((first, T0 - 2 * HOUR_US), (second, T0 - HOUR_US)):
        producer.produce(
            changelog, encode_newest_poll(newest_us), newest_poll_key(partition),
            partition=partition,
        )
    assert producer.flush(30) == 0
    reader = NewestPollReader(report_settings)
    try:
        lag = read_state_lag(report_settings, reader, 30)
    finally:
        reader.close()
    assert lag.produced_us == {first: T0, second: T0 - HOUR_US}
    assert lag.seconds_behind() == {first: 7200.0, second: 0.0}
    behind = {(row.topic, row.partition): row.lag for row in lag.records}
    assert behind[(report_settings.topic("store-status"), first)] == 2
