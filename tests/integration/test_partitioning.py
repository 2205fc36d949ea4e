"""storemon.partitioning against the partitioner of a real producer and broker."""

import random

from confluent_kafka.admin import NewTopic

from storemon.kafka.clients import admin_client, make_producer
from storemon.kafka.partitioning import partition_of

from .services import settings_for


def test_partition_of_is_where_the_java_compatible_partitioner_puts_each_key(
    kafka_bootstrap, topic_prefix
):
    settings = settings_for(kafka_bootstrap, topic_prefix)
    topic = settings.topic("partitioning")
    partitions = 13
    admin = admin_client(settings)
    admin.create_topics([NewTopic(topic, partitions, 1)])[topic].result(30)
    rng = random.Random(3)
    keys = [f"{n}".encode() for n in range(200)] + [
        bytes(rng.randrange(256) for _ in range(length)) for length in range(1, 40)
    ]
    keys += ["store-é-ü-1".encode(), b"9" * 19, b"\x00"]
    placed: dict[bytes, int] = {}
    producer = make_producer(settings)
    for key in keys:
        producer.produce(
            topic,
            b"",
            key,
            on_delivery=lambda error, message: placed.__setitem__(
                message.key(), -1 if error else message.partition()
            ),
        )
    assert producer.flush(30) == 0
    assert placed == {key: partition_of(key, partitions) for key in keys}
