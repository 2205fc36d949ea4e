"""Live store answers from a worker's tables (services/ingest/stores.py), no services:
the figures are the engine's for the store alone, polls come a page at a time, and a
worker that may not answer for the partition says 503 with Retry-After."""

from __future__ import annotations

import urllib.parse
from collections import Counter
from datetime import UTC, datetime

import pytest

from storemon.config import Settings
from storemon.ingest.parts import AppliedOffsets, PartMaker
from storemon.ingest.stores import QueryError, StoreAnswers
from storemon.inputs.values import HoursRow
from storemon.kafka.partitioning import partition_of
from storemon.messages.schedules import encode_schedule
from storemon.state.layout import encode_day, poll_day_key
from storemon.state.retention import Retention
from storemon.state.snapshot import SnapshotBuilder
from storemon.timebase import US_PER_DAY, US_PER_HOUR, US_PER_MINUTE, day_of, format_timestamp
from storemon.uptime import engine

PARTITIONS = 4
STORE = "store-1"
#: Monday 2023-01-23 00:00 UTC
MONDAY_US = int(datetime(2023, 1, 23, tzinfo=UTC).timestamp()) * 1_000_000


def answers_for(polls: dict[int, bytes], unavailable=lambda partition: None) -> StoreAnswers:
    """A worker holding `polls` ({timestamp µs: status}) of STORE, open 9:00-17:00 on
    Mondays in New York."""
    partition = partition_of(STORE.encode(), PARTITIONS)
    retention = Retention(lambda: 0.0)
    poll_days: dict[bytes, bytes] = {}
    by_day: dict[int, dict[int, bytes]] = {}
    for timestamp_us, status in polls.items():
        by_day.setdefault(day_of(timestamp_us), {})[timestamp_us] = status
    for day, day_polls in by_day.items():
        key = poll_day_key(STORE, day)
        poll_days[key] = encode_day(day_polls)
        retention.add(partition, STORE, day, key, max(day_polls))
    monday_9_to_5 = HoursRow(STORE, 0, 9 * US_PER_HOUR, 17 * US_PER_HOUR)
    schedules = {STORE.encode(): encode_schedule(STORE, [monday_9_to_5])}
    zones = {STORE.encode(): b"America/New_York"}
    offsets = AppliedOffsets()
    maker = PartMaker(
        Settings.from_env(), retention, poll_days, schedules, zones, offsets, Counter()
    )
    return StoreAnswers(Settings.from_env(), PARTITIONS, maker, offsets, unavailable)


def hourly(hours: int, status: bytes = b"a") -> dict[int, bytes]:
    return {MONDAY_US + hour * US_PER_HOUR + 5 * US_PER_MINUTE: status for hour in range(hours)}


def test_the_figures_are_the_engines_for_the_store_alone():
    polls = {**hourly(20), MONDAY_US + 15 * US_PER_HOUR + 5 * US_PER_MINUTE: b"i"}
    answers = answers_for(polls)
    answer = answers.store(
        STORE, {"as_of": format_timestamp(MONDAY_US + 16 * US_PER_HOUR + 30 * US_PER_MINUTE)}
    )
    part = answers.parts.slice(answer["partition"])
    as_of_us = MONDAY_US + 16 * US_PER_HOUR + 30 * US_PER_MINUTE
    report = engine.compute(*SnapshotBuilder().build(part), as_of=as_of_us)
    assert list(answer["figures"].values()) == [h / 100 for h in report.figures[0].tolist()]
    # 16:30 UTC is 11:30 in New York, a Monday: open.
    assert answer["in_business_hours"] is True
    assert answer["local_time"] == "2023-01-23T11:30:00-05:00"
    assert answer["latest_poll"] == {
        "timestamp_utc": format_timestamp(MONDAY_US + 16 * US_PER_HOUR + 5 * US_PER_MINUTE),
        "status": "active",
    }
    evening = answers.store(STORE, {"as_of": format_timestamp(MONDAY_US + 23 * US_PER_HOUR)})
    assert evening["in_business_hours"] is False  # 18:00 in New York


def test_polls_come_a_page_at_a_time_and_the_pages_make_the_whole():
    answers = answers_for(hourly(30))
    whole = answers.polls(STORE, "/stores/store-1/polls", {})["polls"]
    assert len(whole) == 30
    paged, query = [], {"limit": "7"}
    while True:
        page = answers.polls(STORE, "/stores/store-1/polls", query)
        paged += page["polls"]
        if page["next"] is None:
            break
        path, _, rest = page["next"].partition("?")
        assert path == "/stores/store-1/polls"
        query = dict(urllib.parse.parse_qsl(rest))
    assert paged == whole
    since, until = whole[3]["timestamp_utc"], whole[9]["timestamp_utc"]
    window = answers.polls(STORE, "/p", {"since": since, "until": until})["polls"]
    assert window == whole[3:9]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"since": "yesterday"}, "since"),
        ({"colour": "red"}, "colour"),
    ],
)
def test_bad_poll_queries_are_400_naming_the_field(query, field):
    with pytest.raises(QueryError) as raised:
        answers_for(hourly(3)).polls(STORE, "/p", query)
    assert raised.value.status == 400
    assert raised.value.message.startswith(f"{field}: ")


def test_unknown_stores_are_404_and_a_partition_not_answerable_503_with_retry_after():
    with pytest.raises(QueryError) as raised:
        answers_for(hourly(3)).store("another-store", {})
    assert raised.value.status == 404
    rebuilding = answers_for(hourly(3), unavailable=lambda partition: "being rebuilt")
    with pytest.raises(QueryError) as raised:
        rebuilding.store(STORE, {})
    assert raised.value.status == 503
    assert raised.value.headers == {"Retry-After": "1"}
    assert "being rebuilt" in raised.value.message


def test_a_store_without_polls_in_the_week_has_no_figures():
    answers = answers_for(hourly(3))
    later = format_timestamp(MONDAY_US + 10 * US_PER_DAY)
    answer = answers.store(STORE, {"as_of": later})
    assert answer["figures"] is None
    assert answer["latest_poll"] is not None  # still held, but older than 8 days
