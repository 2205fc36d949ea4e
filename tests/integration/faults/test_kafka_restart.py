"""`storemon load` while its broker restarts: every row accounted for, none doubled.

The broker is a private one (its own ports and state folder): stopping it
disturbs nobody else's tests.
"""

import json
import re
import signal
import subprocess
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path

import pytest
from confluent_kafka import OFFSET_BEGINNING, Message, TopicPartition

from storemon.config import Settings
from storemon.inputs.csv_files import read_hours_csv, read_status_csv, read_timezones_csv
from storemon.inputs.values import parse_timestamp
from storemon.kafka.clients import make_consumer
from storemon.kafka.offsets import end_offsets, read_range
from storemon.kafka.topics import (
    TOPIC_HOURS,
    TOPIC_STATUS,
    TOPIC_STATUS_DLQ,
    TOPIC_TIMEZONES,
    ensure_topics,
    reader_group,
)
from storemon.messages.schedules import decode_schedule
from storemon.messages.zones import decode_zone
from storemon.tools import generator

from ..services import STOREMON, record_count, service_env, settings_for

pytestmark = pytest.mark.integration

STORES = 300
#: One line per file of load's output (services/ingest/load.py FileCounts).
COUNTS_LINE = re.compile(
    r"(?P<file>\S+): (?P<rows>\d+) rows, (?P<accepted>\d+) accepted into (?P<topic>[\w-]+), "
    r"(?P<rejected>\d+) rejected to the dead-letter topic(?:, (?P<failed>\d+) NOT DELIVERED)?"
)


def read_to_end(settings: Settings, topic: str) -> list[Message]:
    """Every record of `topic`, up to the end offsets of when it was called."""
    return list(read_range(settings, topic, {}, end_offsets(settings, topic)))


@contextmanager
def watching(settings: Settings, topic: str) -> Iterator[Callable[[float], None]]:
    """`first_record(timeout)`: returns within milliseconds of the first record reaching
    `topic` (created already).

    Load delivers all of this test's rows in about a second: a check every 0.2 s (a new
    consumer each time) let it finish before it was frozen, and so did a consumer set up
    only once load ran; this one is assigned and fetching before load starts, and a
    fetch waiting on the broker answers at once.
    """
    with closing(
        make_consumer(settings, reader_group(settings), **{"fetch.wait.max.ms": 5})
    ) as consumer:
        partitions = consumer.list_topics(topic, timeout=30).topics[topic].partitions
        consumer.assign(
            [TopicPartition(topic, partition, OFFSET_BEGINNING) for partition in partitions]
        )
        assert not consumer.consume(1, timeout=1.0), f"{topic} is not empty"

        def first_record(timeout: float) -> None:
            deadline = time.monotonic() + timeout
            while not consumer.consume(1, timeout=0.005):
                assert time.monotonic() < deadline, f"no record on {topic} in {timeout:.0f} s"

        yield first_record


def polls_of(value: bytes) -> list[tuple[str, int, bool]]:
    """The polls a store-status value carries: one, or a batch of one store's (schemas/)."""
    record = json.loads(value)
    store = record["store_id"]
    return [
        (store, parse_timestamp(entry["timestamp_utc"]), entry["status"] == "active")
        for entry in record.get("observations", [record])
    ]


def sent_rows(data: generator.GeneratedDataset) -> dict[str, Counter]:
    """The valid rows of each file, as load reads them."""
    status = read_status_csv(data.status_path).data
    hours = read_hours_csv(data.hours_path).data
    zones = read_timezones_csv(data.timezones_path).data
    return {
        TOPIC_STATUS: Counter(
            zip(
                status.store_ids[status.store_index].tolist(),
                status.timestamp_us.tolist(),
                status.active.tolist(),
                strict=True,
            )
        ),
        TOPIC_HOURS: Counter(
            zip(
                hours.store_id.tolist(),
                hours.day.tolist(),
                hours.start_us.tolist(),
                hours.end_us.tolist(),
                strict=True,
            )
        ),
        TOPIC_TIMEZONES: Counter(
            zip(zones.store_id.tolist(), zones.timezone_str.tolist(), strict=True)
        ),
    }


def found_rows(settings: Settings) -> dict[str, Counter]:
    """The rows the topics hold, unpacked from their records."""
    status = read_to_end(settings, settings.topic(TOPIC_STATUS))
    hours = read_to_end(settings, settings.topic(TOPIC_HOURS))
    zones = read_to_end(settings, settings.topic(TOPIC_TIMEZONES))
    return {
        TOPIC_STATUS: Counter(poll for m in status for poll in polls_of(m.value())),
        TOPIC_HOURS: Counter(
            tuple(row) for m in hours for row in decode_schedule(m.key(), m.value())[1] or ()
        ),
        TOPIC_TIMEZONES: Counter(decode_zone(m.key(), m.value()) for m in zones),
    }


def test_load_through_a_broker_restart_loses_and_doubles_nothing(
    private_kafka, topic_prefix, tmp_path: Path
):
    settings = settings_for(private_kafka.address, topic_prefix)
    data = generator.generate_dataset(tmp_path, stores=STORES, seed=5)
    # Created here so that watching their offsets never auto-creates them.
    ensure_topics(settings)
    with watching(settings, settings.topic(TOPIC_TIMEZONES)) as first_zone:
        load = subprocess.Popen(
            [
                *STOREMON,
                *("load", "--no-progress"),
                *("--status", str(data.status_path)),
                *("--hours", str(data.hours_path)),
                *("--timezones", str(data.timezones_path)),
            ],
            env=service_env(private_kafka.address, settings.topic_prefix),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        status_topic = settings.topic(TOPIC_STATUS)
        try:
            # Zones go first, polls last. As soon as a zone is in, load is frozen,
            # the broker stopped under it and load let go on against no broker
            # while the broker starts again: whatever it had not delivered yet
            # (polls included) rides through the restart.
            first_zone(60)
            load.send_signal(signal.SIGSTOP)
            status_before = record_count(settings, [status_topic])
            assert load.poll() is None, "load ended before the broker went: nothing was tested"
            private_kafka.stop()
            load.send_signal(signal.SIGCONT)
            private_kafka.start()
            _, stderr = load.communicate(timeout=240)
        finally:
            if load.poll() is None:
                load.kill()
                load.wait()

    counts = {Path(m["file"]).name: m for m in COUNTS_LINE.finditer(stderr)}
    assert {m["topic"] for m in counts.values()} == {
        TOPIC_STATUS,
        TOPIC_HOURS,
        TOPIC_TIMEZONES,
    }, stderr
    failed = {m["topic"]: int(m["failed"] or 0) for m in counts.values()}
    if load.returncode == 0:
        assert not any(failed.values()), stderr
        for m in counts.values():
            assert int(m["accepted"]) + int(m["rejected"]) == int(m["rows"]), m[0]
    else:
        # Allowed, if load says which deliveries failed.
        assert any(failed.values()) and "NOT DELIVERED" in stderr, stderr

    sent, found = sent_rows(data), found_rows(settings)
    for m in counts.values():
        topic, accepted = m["topic"], int(m["accepted"])
        # Nothing that was not sent, nothing twice (idempotent producer retries)...
        assert not found[topic] - sent[topic], f"{topic}: records not sent, or doubled"
        # ... and every row reported accepted is there.
        assert accepted <= sum(found[topic].values()) <= accepted + failed[topic], topic
    # One dead letter per rejected row.
    rejected = sum(int(m["rejected"]) for m in counts.values())
    letters = record_count(settings, [settings.topic(TOPIC_STATUS_DLQ)])
    assert rejected <= letters <= rejected + sum(failed.values())
    # Polls reached the broker after it came back: the restart was mid-load.
    assert status_before < record_count(settings, [status_topic])
