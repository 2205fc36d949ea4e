"""Kafka helpers shared by every service: topic layout, admin, producers, and reading
what a topic gained (tests, benchmarks)."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator
from contextlib import closing
from dataclasses import dataclass, field

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

from storemon import config
from storemon.config import Settings

DAY_MS = 24 * 60 * 60 * 1000


@dataclass(frozen=True)
class TopicSpec:
    name: str
    configs: dict[str, str] = field(default_factory=dict)


# The three input topics share one partition count and are keyed by store_id with
# the same (Java-compatible murmur2) partitioner, so a store's polls, hours and zone
# land in the same partition number: the Faust worker owning that partition holds
# all of the store's state without a repartition step.
TOPIC_SPECS: tuple[TopicSpec, ...] = (
    # Late polls up to 8 days old still count, so keep a margin above that.
    TopicSpec(config.TOPIC_STATUS, {"cleanup.policy": "delete", "retention.ms": str(10 * DAY_MS)}),
    TopicSpec(config.TOPIC_HOURS, {"cleanup.policy": "compact"}),
    TopicSpec(config.TOPIC_TIMEZONES, {"cleanup.policy": "compact"}),
    TopicSpec(
        config.TOPIC_REPORT_REQUESTS, {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
    ),
    TopicSpec(
        config.TOPIC_STATUS_DLQ, {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}
    ),
)


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})


def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec] = TOPIC_SPECS, timeout: float = 30.0
) -> list[str]:
    """Create the deployment's topics that are missing; return the names created.

    Idempotent: existing topics are left as they are, but a wrong cleanup policy
    on one is an error, since compaction vs deletion changes what state survives.
    """
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=timeout).topics
    wanted = {settings.topic(spec.name): spec for spec in specs}
    missing = [
        NewTopic(
            name,
            num_partitions=settings.topic_partitions,
            replication_factor=settings.topic_replication_factor,
            config=spec.configs,
        )
        for name, spec in wanted.items()
        if name not in existing
    ]
    created = []
    for name, future in (admin.create_topics(missing) if missing else {}).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            # Another process may have created it between our listing and now.
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    _check_cleanup_policies(admin, wanted, timeout)
    return created


INPUT_TOPICS = (config.TOPIC_STATUS, config.TOPIC_HOURS, config.TOPIC_TIMEZONES)


def input_partitions(settings: Settings, timeout: float = 30.0) -> int:
    """The partition count the input topics share (the setting's, while none exists).

    A store's records are found by murmur2(store_id) modulo this count; input topics
    that disagree on it cannot keep a store's state in one place, which is an error.
    """
    topics = admin_client(settings).list_topics(timeout=timeout).topics
    counts = {
        name: len(topics[name].partitions)
        for name in map(settings.topic, INPUT_TOPICS)
        if name in topics
    }
    if len(set(counts.values())) > 1:
        raise RuntimeError(
            "the input topics must have one partition count (co-partitioned by store_id): "
            + ", ".join(f"{name} has {count}" for name, count in sorted(counts.items()))
        )
    return next(iter(counts.values()), settings.topic_partitions)


def _check_cleanup_policies(
    admin: AdminClient, wanted: dict[str, TopicSpec], timeout: float
) -> None:
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in wanted]
    deadline = time.monotonic() + timeout
    while True:
        try:
            described = {
                resource.name: future.result(timeout)
                for resource, future in admin.describe_configs(resources).items()
            }
            break
        except KafkaException as exc:
            # A topic created a moment ago may not be known to the broker answering yet.
            if (
                exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART
                or time.monotonic() > deadline
            ):
                raise
            time.sleep(0.1)
    for name, configs in described.items():
        actual = configs["cleanup.policy"].value
        expected = wanted[name].configs["cleanup.policy"]
        if actual != expected:
            raise RuntimeError(
                f"topic {name} has cleanup.policy={actual}, storemon needs {expected}"
            )


def producer_config(settings: Settings, **overrides: str | int | bool) -> dict[str, object]:
    """Producer settings every storemon producer uses: durable, ordered, batched."""
    conf: dict[str, object] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        # Same partitioner as the Java client and aiokafka (Faust), so keys land
        # where Faust expects them whoever produced them.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
    }
    conf.update(overrides)
    return conf


def make_producer(settings: Settings, **overrides: str | int | bool) -> Producer:
    return Producer(producer_config(settings, **overrides))


def _reader(settings: Settings) -> Consumer:
    """A consumer of assigned partitions: no group offsets, fetches answered at once."""
    return Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": settings.topic("storemon-reader"),
            "enable.auto.commit": False,
            "fetch.wait.max.ms": 10,
        }
    )


#: What the broker answers about a topic created a moment ago, until it has a leader.
_NO_LEADER_YET = frozenset({
    KafkaError.NOT_LEADER_FOR_PARTITION,
    KafkaError.LEADER_NOT_AVAILABLE,
    KafkaError.UNKNOWN_TOPIC_OR_PART,
})


def end_offset(consumer: Consumer, topic: str, partition: int, deadline: float) -> int:
    """The end offset of one partition, asked again while the topic, created a moment
    ago, has no leader yet (until `deadline`, a time.monotonic() instant)."""
    while True:
        try:
            timeout = max(0.1, deadline - time.monotonic())
            return consumer.get_watermark_offsets(
                TopicPartition(topic, partition), timeout=timeout, cached=False
            )[1]
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
