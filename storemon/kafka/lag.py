"""Consumer lag of the deployment's consumer groups: how far each is behind its topics."""

from __future__ import annotations

import time
from collections.abc import Collection
from dataclasses import asdict, dataclass

from confluent_kafka import KafkaError, KafkaException, TopicPartition

from storemon.config import Settings
from storemon.kafka.clients import make_consumer
from storemon.kafka.topics import (
    TOPIC_HOURS,
    TOPIC_REPORT_REQUESTS,
    TOPIC_STATUS,
    TOPIC_TIMEZONES,
    reader_group,
    reporter_group,
    worker_app_id,
)

#: What a group coordinator answers until it has settled (a new or restarted broker).
_COORDINATOR_SETTLING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
    }
)


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    #: None while the group has committed nothing on this partition.
    committed: int | None
    end: int
    lag: int


def deployment_groups(settings: Settings) -> dict[str, list[str]]:
    """Each consumer group of the deployment and the topics it consumes."""
    return {
        worker_app_id(settings): [
            settings.topic(TOPIC_STATUS),
            settings.topic(TOPIC_HOURS),
            settings.topic(TOPIC_TIMEZONES),
        ],
        reporter_group(settings): [settings.topic(TOPIC_REPORT_REQUESTS)],
    }


def _committed_offsets(
    settings: Settings, group: str, partitions: list[TopicPartition], timeout: float
) -> dict[tuple[str, int], int]:
    """The group's committed offsets, read by a consumer of that group that never joins it.

    Not AdminClient.list_consumer_group_offsets: on a fresh broker (coordinator
    still loading) librdkafka's admin OffsetFetch path can crash the process
    (confluent-kafka-python #1982, librdkafka's rd_kafka_handle_OffsetFetch
    without a consumer group); a consumer's own OffsetFetch has its group.
    """
    reader = make_consumer(settings, group, **{"enable.auto.commit": False})
    deadline = time.monotonic() + timeout
    try:
        while True:
            try:
                answer = reader.committed(partitions, timeout=timeout)
                break
            except KafkaException as exc:
                # A fresh broker answers "not coordinator" / "loading" for a while.
                error = exc.args[0]
                settling = error.code() in _COORDINATOR_SETTLING or error.retriable()
                if not settling or time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
    finally:
        reader.close()
    return {(tp.topic, tp.partition): tp.offset for tp in answer}


def consumer_lag(
    settings: Settings, timeout: float = 10.0, only: Collection[str] | None = None
) -> list[PartitionLag]:
    """Lag per group, topic and partition; a group that committed nothing owes its backlog.

    Every group of the deployment, or those named in `only`.
    """
    groups = {
        group: topics
        for group, topics in deployment_groups(settings).items()
        if only is None or group in only
    }
    watermarks = make_consumer(settings, reader_group(settings))
    try:
        metadata = watermarks.list_topics(timeout=timeout)
        rows = []
        for group, topics in groups.items():
            partitions = [
                TopicPartition(topic, partition)
                for topic in topics
                if topic in metadata.topics
                for partition in sorted(metadata.topics[topic].partitions)
            ]
            if not partitions:
                continue
            committed = _committed_offsets(settings, group, partitions, timeout)
            for tp in partitions:
                low, high = watermarks.get_watermark_offsets(tp, timeout=timeout)
                offset = committed.get((tp.topic, tp.partition), -1)
                known = offset if offset >= 0 else None
                lag = high - (known if known is not None else low)
                rows.append(PartitionLag(group, tp.topic, tp.partition, known, high, max(lag, 0)))
        return rows
    finally:
        watermarks.close()


def lag_as_json(rows: list[PartitionLag]) -> dict[str, object]:
    return {"groups": [asdict(row) for row in rows], "total_lag": sum(row.lag for row in rows)}


def lag_as_table(rows: list[PartitionLag]) -> str:
    header = ("group", "topic", "partition", "committed", "end", "lag")
    cells = [
        (
            r.group,
            r.topic,
            str(r.partition),
            "-" if r.committed is None else str(r.committed),
            str(r.end),
            str(r.lag),
        )
        for r in rows
    ]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.append(f"total lag: {sum(r.lag for r in rows)}")
    return "\n".join(lines)
