"""Watermark offsets, and reading what a topic holds between two offsets (state readers, tests)."""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import closing

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, TopicPartition

from storemon.config import Settings
from storemon.kafka.clients import make_consumer
from storemon.kafka.topics import reader_group


def _reader(settings: Settings) -> Consumer:
    """A consumer of assigned partitions: no group offsets, fetches answered at once."""
    return make_consumer(
        settings, reader_group(settings), **{"enable.auto.commit": False, "fetch.wait.max.ms": 10}
    )



#: What the broker answers about a topic created a moment ago, until it has a leader.
_NO_LEADER_YET = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
})


def end_offset(consumer: Consumer, topic: str, partition: int, deadline: float) -> int:
    """The end offset of one partition (see `watermarks`)."""
    return watermarks(consumer, topic, partition, deadline)[1]


def watermarks(consumer: Consumer, topic: str, partition: int, deadline: float) -> tuple[int, int]:
    """The first and end offsets of one partition, asked again while the topic, created a
    moment ago, has no leader yet (until `deadline`, a time.monotonic() instant)."""
    while True:
        try:
            timeout = max(0.1, deadline - time.monotonic())
            low, high = consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout, cached=False
            )
            return low, high
        except KafkaException as exc:
            if exc.args[0].code() not in _NO_LEADER_YET or time.monotonic() > deadline:
                raise
            time.sleep(0.1)


def end_offsets(settings: Settings, topic: str, timeout: float = 10.0) -> dict[int, int]:
    """The end offset of each partition of an existing `topic` (its full name)."""
    deadline = time.monotonic() + timeout
    with closing(_reader(settings)) as consumer:
        partitions = consumer.list_topics(topic, timeout=timeout).topics[topic].partitions
        return {
            partition: end_offset(consumer, topic, partition, deadline)
            for partition in partitions
        }


def read_range(
    settings: Settings,
    topic: str,
    start: dict[int, int],
    end: dict[int, int],
    timeout: float = 60.0,
) -> Iterator[Message]:
    """The records of `topic` from offsets `start` up to `end` (per partition; a partition
    missing from `start` from its beginning), in offset order within each partition.

    For topics written without transactions and not compacted: one record per offset.
    """
    wanted = {p: end[p] - start.get(p, 0) for p in end if end[p] > start.get(p, 0)}
    if not wanted:
        return
    deadline = time.monotonic() + timeout
    with closing(_reader(settings)) as consumer:
        consumer.assign([TopicPartition(topic, p, start.get(p, 0)) for p in wanted])
        while wanted:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{topic}: {sum(wanted.values())} records not read")
            for message in consumer.consume(10_000, timeout=0.5):
                if message.error() is not None:
                    raise KafkaException(message.error())
                partition = message.partition()
                if message.offset() < end.get(partition, 0):
                    wanted[partition] -= 1
                    if not wanted[partition]:
                        del wanted[partition]
                    yield message
