"""The one builder of every Kafka client's configuration: producers, consumers, admin.

Whatever a client needs to reach the cluster (bootstrap servers today) is set
here once, so every producer, consumer and admin client of every service
connects the same way.
"""

from __future__ import annotations

from confluent_kafka import Consumer, Producer
from confluent_kafka.admin import AdminClient

from storemon.config import Settings


def connection_config(settings: Settings) -> dict[str, object]:
    """What every client needs to reach the cluster."""
    return {"bootstrap.servers": settings.kafka_bootstrap_servers}


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(connection_config(settings))


def producer_config(settings: Settings, **overrides: str | int | bool) -> dict[str, object]:
    """Producer settings every storemon producer uses: durable, ordered, batched."""
    conf: dict[str, object] = {
        **connection_config(settings),
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


def consumer_config(settings: Settings, group_id: str, **overrides: object) -> dict[str, object]:
    """Consumer settings: the cluster, the group, then the caller's own settings."""
    conf: dict[str, object] = {**connection_config(settings), "group.id": group_id}
    conf.update(overrides)
    return conf


def make_consumer(settings: Settings, group_id: str, **overrides: object) -> Consumer:
    return Consumer(consumer_config(settings, group_id, **overrides))
