"""The pure parts of scatter-gather: which partitions a report asks, and the slice of
state a partition's owner computes its part from (no services)."""

from __future__ import annotations

from collections import Counter

from storemon.config import Settings
from storemon.ingest import parts
from storemon.ingest.parts import AppliedOffsets, PartMaker
from storemon.inputs.values import HoursRow
from storemon.kafka.partitioning import partition_of
from storemon.messages.report_tasks import ReportTask
from storemon.messages.schedules import encode_schedule
from storemon.reporter.service import stores_by_partition
from storemon.state.layout import encode_day, poll_day_key
from storemon.state.retention import Retention
from storemon.state.snapshot import PartitionSlice, SnapshotBuilder
from storemon.timebase import US_PER_DAY

DAY = 19_380


def test_every_partition_is_asked_for_a_whole_report():
    assert stores_by_partition(None, 4) == {0: None, 1: None, 2: None, 3: None}


def test_a_filtered_report_asks_only_the_partitions_of_its_stores_by_murmur2():
    ids = (*(f"store-{n}" for n in range(10)), "store-3")  # a repeat is asked once
    asked = stores_by_partition(ids, 8)
    assert sorted(store for stores in asked.values() for store in stores or ()) == sorted(
        set(ids)
    )
    for partition, stores in asked.items():
        assert stores
        assert {partition_of(store.encode(), 8) for store in stores} == {partition}


def part_maker(stores: dict[str, int]) -> PartMaker:
    """A worker's view of `stores` ({store_id: partition}), one day of polls each."""
    retention = Retention(lambda: 0.0)
    poll_days: dict[bytes, bytes] = {}
    for store_id, partition in stores.items():
        key = poll_day_key(store_id, DAY)
        poll_days[key] = encode_day({DAY * US_PER_DAY + 3_600_000_000: b"a"})
        retention.add(partition, store_id, DAY, key, DAY * US_PER_DAY)
    schedules = {b"a": encode_schedule("a", [HoursRow("a", 0, 0, 3_600_000_000)])}
    zones = {b"a": b"Europe/Paris", b"b": b"Not/AZone"}
    return PartMaker(
        Settings.from_env(), retention, poll_days, schedules, zones, AppliedOffsets(), Counter()
    )


def test_a_part_is_taken_from_its_partition_only_and_the_stores_asked():
    maker = part_maker({"a": 0, "b": 0, "c": 1})
    whole = maker.slice(0)
    assert list(whole.polls) == ["a", "b"]  # in store_id order
    assert list(whole.schedules) == ["a"]
    # A zone the worker could not have stored is taken as none, not a failed part.
    assert whole.zones == {"a": "Europe/Paris"}
    some = maker.slice(0, ("b", "c", "unknown"))
    assert list(some.polls) == ["b"]


def test_an_unreadable_schedule_counts_as_none_and_is_counted():
    builder = SnapshotBuilder()
    part = PartitionSlice(
        polls={}, schedules={"a": b"{not json", "b": encode_schedule("b", [])}
    )
    hours = builder.business_hours(part)
    assert len(hours.store_id) == 0
    assert builder.invalid_schedules == 1


async def test_a_part_computed_a_few_stores_at_a_time_is_the_part_computed_at_once(
    monkeypatch,
):
    maker = part_maker({f"store-{n}": 0 for n in range(7)})
    task = ReportTask("0" * 32, 0, DAY * US_PER_DAY + 7_200_000_000)
    at_once = await maker._compute(task, maker.slice(0))
    monkeypatch.setattr(parts, "CHUNK_STORES", 2)
    assert await maker._compute(task, maker.slice(0)) == at_once
    assert [store_id for store_id, _ in at_once] == [f"store-{n}" for n in range(7)]
