"""How many records topics hold, read from their partitions' end offsets."""

from __future__ import annotations

from collections.abc import Iterable
from contextlib import closing

from confluent_kafka import Consumer, TopicPartition

from storemon.config import Settings


def reader(settings: Settings) -> Consumer:
    """A consumer for assigned partitions (no group offsets kept)."""
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.topic_prefix}fault-reader",
            "enable.auto.commit": False,
            # A fetch answers as soon as there is a record, not up to 500 ms later.
            "fetch.wait.max.ms": 10,
        }
    )


def partitions(consumer: Consumer, topic: str) -> list[int]:
    return list(consumer.list_topics(topic, timeout=10).topics[topic].partitions)


def partition_ends(consumer: Consumer, topic: str) -> dict[int, int]:
    """The end offset of each partition of `topic`."""
    return {
        p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10, cached=False)[1]
        for p in partitions(consumer, topic)
    }


def record_count(settings: Settings, topics: Iterable[str]) -> int:
    """How many records the topics hold together (without transactions, one per offset)."""
    with closing(reader(settings)) as consumer:
        return sum(sum(partition_ends(consumer, topic).values()) for topic in topics)
