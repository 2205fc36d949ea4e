"""Consumer lag of the deployment's consumer groups: how far each is behind its topics.

With `details`, each partition also says which member of its group consumes it (client
id and host: for a worker `storemon-worker@<host>:<pid>`, the `served_by` of its answers
and parts) and the group's state, and its lag in seconds: how long the oldest record not
yet consumed has waited (now minus that record's timestamp, which the producer set),
so an operator sees which process is stuck, and for how long.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Collection
from dataclasses import asdict, dataclass, replace
from typing import TypeVar

from confluent_kafka import (
    OFFSET_BEGINNING,
    TIMESTAMP_NOT_AVAILABLE,
    Consumer,
    KafkaError,
    KafkaException,
    TopicPartition,
)

from storemon.config import Settings
from storemon.kafka.clients import admin_client, make_consumer
from storemon.kafka.topics import (
    TOPIC_HOURS,
    TOPIC_REPORT_REQUESTS,
    TOPIC_STATUS,
    TOPIC_TIMEZONES,
    reader_group,
    reporter_group,
    worker_app_id,
)

#: What a broker answers until it has settled: a group coordinator still loading (a new
#: or restarted broker), a partition of a topic just created without its leader yet.
_SETTLING = frozenset(
    {
        KafkaError.NOT_COORDINATOR,
        KafkaError.COORDINATOR_LOAD_IN_PROGRESS,
        KafkaError.COORDINATOR_NOT_AVAILABLE,
        KafkaError.NOT_LEADER_FOR_PARTITION,
        KafkaError.LEADER_NOT_AVAILABLE,
    }
)

_Answer = TypeVar("_Answer")


def _once_settled(ask: Callable[[], _Answer], timeout: float) -> _Answer:
    """`ask()`, asked again while the broker answers that it is still settling."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            return ask()
        except KafkaException as exc:
            error = exc.args[0]
            settling = error.code() in _SETTLING or error.retriable()
            if not settling or time.monotonic() > deadline:
                raise
            time.sleep(0.2)


@dataclass(frozen=True)
class PartitionLag:
    group: str
    topic: str
    partition: int
    #: None while the group has committed nothing on this partition.
    committed: int | None
    end: int
    lag: int
    #: The member consuming it, `client_id (host)`; None: none (no member, or not asked).
    owner: str | None = None
    #: The group's state (Stable, PreparingRebalance, Empty, ...); None: not asked.
    group_state: str | None = None
    #: How long the oldest record not yet consumed has waited, seconds (0 without lag);
    #: None: not asked, or the record could not be read in time.
    lag_seconds: float | None = None


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
    try:
        answer = _once_settled(lambda: reader.committed(partitions, timeout=timeout), timeout)
    finally:
        reader.close()
    return {(tp.topic, tp.partition): tp.offset for tp in answer}


def consumer_lag(
    settings: Settings,
    timeout: float = 10.0,
    only: Collection[str] | None = None,
    details: bool = False,
) -> list[PartitionLag]:
    """Lag per group, topic and partition; a group that committed nothing owes its backlog.

    Every group of the deployment, or those named in `only`; with `details`, each
    partition's owner, its group's state and its lag in seconds too.
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
                low, high = _once_settled(
                    lambda tp=tp: watermarks.get_watermark_offsets(tp, timeout=timeout), timeout
                )
                offset = committed.get((tp.topic, tp.partition), -1)
                known = offset if offset >= 0 else None
                lag = high - (known if known is not None else low)
                rows.append(PartitionLag(group, tp.topic, tp.partition, known, high, max(lag, 0)))
        if details and rows:
            rows = _with_details(settings, watermarks, rows, timeout)
        return rows
    finally:
        watermarks.close()


def _with_details(
    settings: Settings, reader: Consumer, rows: list[PartitionLag], timeout: float
) -> list[PartitionLag]:
    groups = sorted({row.group for row in rows})
    # Kept in a name until every answer is read: a collected client cancels them.
    admin = admin_client(settings)
    described = admin.describe_consumer_groups(groups)
    states: dict[str, str] = {}
    owners: dict[tuple[str, str, int], str] = {}
    for group, future in described.items():
        description = future.result(timeout)
        states[group] = description.state.name.title().replace("_", "")
        for member in description.members:
            owner = f"{member.client_id} ({member.host.lstrip('/')})"
            for tp in member.assignment.topic_partitions if member.assignment else ():
                owners[(group, tp.topic, tp.partition)] = owner
    waited = _oldest_waiting(reader, [row for row in rows if row.lag], timeout)
    return [
        replace(
            row,
            owner=owners.get((row.group, row.topic, row.partition)),
            group_state=states.get(row.group),
            lag_seconds=waited.get((row.topic, row.partition, row.committed)) if row.lag else 0.0,
        )
        for row in rows
    ]


def _oldest_waiting(
    reader: Consumer, lagging: list[PartitionLag], timeout: float
) -> dict[tuple[str, int, int | None], float]:
    """(topic, partition, committed) -> seconds its first record not consumed has waited."""
    if not lagging:
        return {}
    starts = {
        (row.topic, row.partition): row.committed if row.committed is not None else OFFSET_BEGINNING
        for row in lagging
    }
    reader.assign([TopicPartition(t, p, offset) for (t, p), offset in starts.items()])
    waited: dict[tuple[str, int, int | None], float] = {}
    committed = {(row.topic, row.partition): row.committed for row in lagging}
    deadline = time.monotonic() + timeout
    try:
        while len(waited) < len(starts) and time.monotonic() < deadline:
            message = reader.poll(0.5)
            if message is None or message.error() is not None:
                continue
            key = (message.topic(), message.partition())
            kind, stamp_ms = message.timestamp()
            if kind == TIMESTAMP_NOT_AVAILABLE or key not in committed:
                continue
            waited.setdefault(
                (*key, committed[key]), max(0.0, time.time() - stamp_ms / 1000)
            )
            # One record a partition is enough: stop fetching it.
            reader.pause([TopicPartition(*key)])
    finally:
        reader.unassign()
    return waited


def lag_as_json(rows: list[PartitionLag]) -> dict[str, object]:
    return {"groups": [asdict(row) for row in rows], "total_lag": sum(row.lag for row in rows)}


def lag_as_table(rows: list[PartitionLag]) -> str:
    header = ("group", "state", "topic", "partition", "committed", "end", "lag", "lag s",
              "owner")
    cells = [
        (
            r.group,
            r.group_state or "-",
            r.topic,
            str(r.partition),
            "-" if r.committed is None else str(r.committed),
            str(r.end),
            str(r.lag),
            "-" if r.lag_seconds is None else f"{r.lag_seconds:.1f}",
            r.owner or "-",
        )
        for r in rows
    ]
    widths = [max([len(h), *(len(c[i]) for c in cells)]) for i, h in enumerate(header)]
    lines = ["  ".join(h.ljust(w) for h, w in zip(header, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)) for row in cells]
    lines.append(f"total lag: {sum(r.lag for r in rows)}")
    return "\n".join(lines)
