"""services/ingest/positions.py: after Faust's seek to the committed offsets, a partition
the group never committed is read from its beginning (records fetched and dropped while
the flow was stopped are read again), and a committed one stays where aiokafka put it."""

from __future__ import annotations

from collections.abc import Mapping
from types import SimpleNamespace
from typing import NamedTuple

from storemon.ingest.positions import read_uncommitted_from_beginning


class TopicPartition(NamedTuple):
    topic: str
    partition: int


class ConsumerThread:
    def __init__(self) -> None:
        self.sought_to_beginning: list[TopicPartition] = []

    async def seek_to_beginning(self, *partitions: TopicPartition) -> None:
        self.sought_to_beginning.extend(partitions)


def faust_consumer(committed: Mapping[TopicPartition, int | None]) -> SimpleNamespace:
    async def seek_to_committed() -> Mapping[TopicPartition, int | None]:
        return committed

    return SimpleNamespace(seek_to_committed=seek_to_committed, _thread=ConsumerThread())


async def test_partitions_never_committed_are_read_from_their_beginning():
    zones_0, zones_3 = TopicPartition("store-timezones", 0), TopicPartition("store-timezones", 3)
    status_0 = TopicPartition("store-status", 0)
    committed = {zones_0: None, zones_3: 0, status_0: 7063}
    consumer = faust_consumer(committed)
    read_uncommitted_from_beginning(consumer)
    assert await consumer.seek_to_committed() == committed
    assert consumer._thread.sought_to_beginning == [zones_0, zones_3]


async def test_nothing_is_sought_when_every_partition_was_committed():
    consumer = faust_consumer({TopicPartition("store-status", 0): 12})
    read_uncommitted_from_beginning(consumer)
    await consumer.seek_to_committed()
    assert consumer._thread.sought_to_beginning == []
