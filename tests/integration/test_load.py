"""`storemon load` against a real broker: what is accepted, what is rejected, and why."""

import json

from confluent_kafka import Consumer

from storemon.messages.polls import decode_polls
from storemon.messages.schedules import decode_schedule
from storemon.messages.zones import decode_zone

from .services import run_load, service_env, settings_for, wait_until

STATUS_CSV = """store_id,status,timestamp_utc
s1,active,2023-01-22 12:09:39.388884 UTC
s1,INACTIVE,2023-01-22T13:10:00Z
s2,up,2023-01-22 12:09:39 UTC
s3,active,22/01/2023
,active,2023-01-22 12:09:39 UTC
s4,inactive,2023-01-22T12:00:00+00:00
"""
HOURS_CSV = """store_id,dayOfWeek,start_time_local,end_time_local
s1,0,09:00:00,17:00:00
s1,1,09:00:00,12:00:00
s4,6,18:00:00,02:00:00
s2,9,09:00:00,17:00:00
s3,1,9am,17:00:00
"""
ZONES_CSV = """store_id,timezone_str
s1,America/New_York
s4,Mars/Olympus_Mons
"""


def read_topic(settings, topic: str, expected: int) -> list:
    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.topic_prefix}read-{topic}",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.topic(topic)])
    messages = []

    def enough() -> bool:
        messages.extend(m for m in consumer.consume(100, timeout=0.5) if m.error() is None)
        return len(messages) >= expected

    try:
        wait_until(enough, 60, f"{expected} records on {topic}")
        assert not consumer.consume(100, timeout=1.0), f"more than {expected} on {topic}"
    finally:
        consumer.close()
    return messages


def test_load_accepts_good_rows_and_sends_bad_ones_to_the_dead_letter_topic(
    kafka_bootstrap, topic_prefix, tmp_path
):
    files = {"status": STATUS_CSV, "hours": HOURS_CSV, "timezones": ZONES_CSV}
    for name, text in files.items():
        (tmp_path / f"{name}.csv").write_text(text)
    run = run_load(
        service_env(kafka_bootstrap, topic_prefix),
        {name: tmp_path / f"{name}.csv" for name in files},
    )
    assert run.returncode == 0, run.stderr
    # Counts add up per file: accepted + rejected = rows sent.
    assert "status.csv: 6 rows, 3 accepted into store-status, 3 rejected" in run.stderr
    assert "hours.csv: 5 rows, 3 accepted into store-hours, 2 rejected" in run.stderr
    assert "timezones.csv: 2 rows, 1 accepted into store-timezones, 1 rejected" in run.stderr

    settings = settings_for(kafka_bootstrap, topic_prefix)
    # A batch record per store (schemas/status-batch.schema.json).
    polls = [
        poll
        for m in read_topic(settings, "store-status", 2)
        for poll in decode_polls(m.key(), m.value()).polls
    ]
    assert {(p.store_id, p.status) for p in polls} == {
        ("s1", "active"),
        ("s1", "inactive"),
        ("s4", "inactive"),
    }
    schedules = dict(
        decode_schedule(m.key(), m.value()) for m in read_topic(settings, "store-hours", 2)
    )
    assert [row.day for row in schedules["s1"]] == [0, 1]
    assert len(schedules["s4"]) == 1
    zones = [
        decode_zone(m.key(), m.value()) for m in read_topic(settings, "store-timezones", 1)
    ]
    assert zones == [("s1", "America/New_York")]

    letters = [json.loads(m.value()) for m in read_topic(settings, "store-status-dlq", 6)]
    where = {
        (letter["source"].rsplit("/", 1)[-1], letter["line"], letter["field"]) for letter in letters
    }
    assert where == {
        ("status.csv", 4, "status"),
        ("status.csv", 5, "timestamp_utc"),
        ("status.csv", 6, "store_id"),
        ("hours.csv", 5, "dayOfWeek"),
        ("hours.csv", 6, "start_time_local"),
        ("timezones.csv", 3, "timezone_str"),
    }
    raw_of = {
        (letter["source"].rsplit("/", 1)[-1], letter["line"]): letter["raw"] for letter in letters
    }
    assert raw_of[("status.csv", 4)] == "s2,up,2023-01-22 12:09:39 UTC"
    assert all(letter["reason"] for letter in letters)
