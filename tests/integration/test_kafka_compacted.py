"""A compacted topic on the real broker: the latest value per key is what counts.

store-hours and store-timezones are compacted topics; this checks the broker
setup (and our use of confluent-kafka) gives the right latest-per-key view
whether or not the log cleaner has run yet.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from confluent_kafka import Consumer, KafkaError, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic

pytestmark = pytest.mark.integration

KEYS = 200
VERSIONS = 5
PARTITIONS = 3


@pytest.fixture
def compacted_topic(kafka_bootstrap: str, topic_prefix: str) -> Iterator[tuple[AdminClient, str]]:
    admin = AdminClient({"bootstrap.servers": kafka_bootstrap})
    name = f"{topic_prefix}compacted"
    topic = NewTopic(
        name,
        num_partitions=PARTITIONS,
        replication_factor=1,
        # Small segments and no lag make the cleaner eligible to run during the
        # test; the assertions must hold either way.
        config={
            "cleanup.policy": "compact",
            "segment.ms": "100",
            "min.cleanable.dirty.ratio": "0.01",
        },
    )
    admin.create_topics([topic])[name].result(timeout=30)
    yield admin, name
    admin.delete_topics([name])[name].result(timeout=30)


def test_latest_value_per_key(
    kafka_bootstrap: str, compacted_topic: tuple[AdminClient, str]
) -> None:
    admin, topic = compacted_topic

    # The policy really is compaction.
    resource = ConfigResource(ConfigResource.Type.TOPIC, topic)
    configs = admin.describe_configs([resource])[resource].result(timeout=30)
    assert configs["cleanup.policy"].value == "compact"

    # 200 keys x 5 versions, interleaved so every key's versions are spread out.
    expected: dict[str, str] = {}
    delivered: list[str] = []
    errors: list[KafkaError] = []

    def on_delivery(err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            errors.append(err)
        else:
            delivered.append(msg.key().decode())

    producer = Producer(
        {"bootstrap.servers": kafka_bootstrap, "acks": "all", "enable.idempotence": True}
    )
    for version in range(VERSIONS):
        for k in range(KEYS):
            key, value = f"store-{k:03d}", f"v{version}-{k}"
            producer.produce(topic, key=key, value=value, on_delivery=on_delivery)
            expected[key] = value
        producer.poll(0)
    assert producer.flush(30) == 0, "messages still in flight after 30 s"
    assert not errors
    assert len(delivered) == KEYS * VERSIONS

    # Read every partition from the beginning up to its end as of now.
    consumer = Consumer(
        {
            "bootstrap.servers": kafka_bootstrap,
            "group.id": f"{topic}-reader",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
        }
    )
    try:
        ends = {
            p: consumer.get_watermark_offsets(TopicPartition(topic, p), timeout=10)[1]
            for p in range(PARTITIONS)
        }
        assert sum(ends.values()) == KEYS * VERSIONS  # offsets are kept by compaction
        consumer.assign([TopicPartition(topic, p, 0) for p in range(PARTITIONS)])
        latest: dict[str, str] = {}
        done = {p for p, end in ends.items() if end == 0}
        deadline = time.monotonic() + 60
        while len(done) < PARTITIONS:
            assert time.monotonic() < deadline, f"timed out; partitions done: {sorted(done)}"
            msg = consumer.poll(1.0)
            if msg is None:
                continue
            assert msg.error() is None, msg.error()
            latest[msg.key().decode()] = msg.value().decode()
            if msg.offset() + 1 >= ends[msg.partition()]:
                done.add(msg.partition())
    finally:
        consumer.close()

    assert len(latest) == KEYS
    assert latest == expected
