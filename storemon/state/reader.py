"""Follows the worker's changelog topics into a `StateView` (the latest value of every key)."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

from confluent_kafka import OFFSET_BEGINNING, TopicPartition

from storemon.config import Settings
from storemon.kafka.clients import make_consumer
from storemon.kafka.offsets import end_offset
from storemon.kafka.topics import changelog_topic, state_reader_group
from storemon.state.layout import (
    ACTIVE,
    POLL_BYTES,
    POLLS_TABLE,
    SCHEDULES_TABLE,
    TABLES,
    StateRecordError,
    check_record,
    decode_day,
    split_poll_day_key,
)
from storemon.state.snapshot import PartitionSlice

V = TypeVar("V")
ViewT = TypeVar("ViewT", bound="View")
log = logging.getLogger(__name__)

@dataclass
class StateView:
    """The latest value of every key of the worker's tables, as of `offsets`."""

    #: store_id -> {UTC day number: that day's value (see encode_day)}
    poll_days: dict[str, dict[int, bytes]] = field(default_factory=dict)
    #: store_id -> the schedule's JSON value (as the worker stored it)
    schedules: dict[str, bytes] = field(default_factory=dict)
    #: store_id -> IANA zone name
    zones: dict[str, str] = field(default_factory=dict)
    #: changelog topic -> next offset read, per partition
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)

    def apply(self, table: str, key: bytes | None, value: bytes | None) -> None:
        """Take one changelog record; StateRecordError (and no change) if it is not valid."""
        check_record(table, key, value)
        assert key is not None  # check_record refuses a record without a key
        if table == POLLS_TABLE:
            store_id, day = split_poll_day_key(key)
            if value is None:
                days = self.poll_days.get(store_id)
                if days is not None:
                    days.pop(day, None)
                    if not days:
                        del self.poll_days[store_id]
            else:
                self.poll_days.setdefault(store_id, {})[day] = value
        elif table == SCHEDULES_TABLE:
            _set_or_delete(self.schedules, key.decode(), value)
        else:
            zone = None if value is None else value.decode()
            _set_or_delete(self.zones, key.decode(), zone)

    @property
    def polls(self) -> dict[str, dict[int, bool]]:
        """store_id -> {timestamp µs: active}, decoded (for checks; snapshots decode in bulk)."""
        return {
            store_id: {
                timestamp_us: status == ACTIVE
                for day in sorted(days)
                for timestamp_us, status in decode_day(days[day]).items()
            }
            for store_id, days in self.poll_days.items()
        }

    def slice(self) -> PartitionSlice:
        """Every store's state, as a report part would be computed from it."""
        return PartitionSlice(
            polls={
                store_id: tuple(days[day] for day in sorted(days))
                for store_id, days in sorted(self.poll_days.items())
            },
            schedules=dict(self.schedules),
            zones=dict(self.zones),
        )

    def poll_count(self) -> int:
        return sum(
            len(value) // POLL_BYTES for days in self.poll_days.values()
            for value in days.values()
        )


@dataclass
class TableValues:
    """The latest value of every key of one table, as the worker's own store holds them
    (key -> value), as of `offsets`: what a worker recovers its partitions' polls into."""

    values: dict[bytes, bytes] = field(default_factory=dict)
    offsets: dict[str, dict[int, int]] = field(default_factory=dict)

    def apply(self, table: str, key: bytes | None, value: bytes | None) -> None:
        """Take one changelog record; StateRecordError (and no change) if it is not valid."""
        check_record(table, key, value)
        assert key is not None  # check_record refuses a record without a key
        if value is None:
            self.values.pop(key, None)
        else:
            self.values[key] = value


class View(Protocol):
    """What a StateReader keeps up to date."""

    offsets: dict[str, dict[int, int]]

    def apply(self, table: str, key: bytes | None, value: bytes | None) -> None: ...


def _set_or_delete(mapping: dict[str, V], key: str, value: V | None) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


class StateReader(Generic[ViewT]):
    """Follows the worker's changelog topics and keeps a view (a StateView) up to date.

    `catch_up()` reads until every changelog partition's end offset as it was
    when called, so the view then holds everything the workers had written. Given
    `tables` and `partitions`, it reads only those.
    """

    def __init__(
        self,
        settings: Settings,
        group_id: str | None = None,
        view: ViewT | None = None,
        tables: tuple[str, ...] = TABLES,
        partitions: set[int] | None = None,
        fetch_max_bytes: int = 64 * 1024 * 1024,
        batch_messages: int = 100_000,
    ) -> None:
        self.settings = settings
        self.view: ViewT = StateView() if view is None else view  # type: ignore[assignment]
        self._table_of_topic = {changelog_topic(settings, table): table for table in tables}
        self._partitions = partitions
        #: Records taken from the consumer at once (each a Message object until applied).
        self._batch_messages = batch_messages
        # Offsets are tracked by the reader itself (assign, no commits): every
        # reader must see the whole changelog whatever others have read.
        self._consumer = make_consumer(
            settings,
            group_id or state_reader_group(settings),
            **{
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.max.bytes": fetch_max_bytes,
                "max.partition.fetch.bytes": fetch_max_bytes // 4,
                # What librdkafka fetches ahead: at most a fetch (its default: 64 MiB).
                "queued.max.messages.kbytes": max(fetch_max_bytes // 1024, 1024),
                # The end-offset queries of catch_up() share the broker connection
                # with fetches; at the default 500 ms an idle fetch held each query
                # back that long (~6 s per catch_up with nothing new, 12 partitions).
                "fetch.wait.max.ms": 10,
            },
        )
        self._assigned: set[tuple[str, int]] = set()
        #: changelog topic -> records skipped because they break the layout
        self.skipped: dict[str, int] = {}

    def close(self) -> None:
        self._consumer.close()

    def _assign_new_partitions(self, timeout: float) -> None:
        metadata = self._consumer.list_topics(timeout=timeout)
        new = [
            TopicPartition(topic, partition, OFFSET_BEGINNING)
            for topic in self._table_of_topic
            if topic in metadata.topics
            for partition in metadata.topics[topic].partitions
            if (topic, partition) not in self._assigned
            and (self._partitions is None or partition in self._partitions)
        ]
        if new:
            self._consumer.incremental_assign(new)
            self._assigned.update((tp.topic, tp.partition) for tp in new)
            for tp in new:
                self.view.offsets.setdefault(tp.topic, {})[tp.partition] = 0

    def _end_offsets(self, deadline: float) -> dict[tuple[str, int], int]:
        # A changelog the worker created a moment ago may have no leader yet: asked again.
        return {
            (topic, partition): end_offset(self._consumer, topic, partition, deadline)
            for topic, partition in self._assigned
        }

    def catch_up(self, timeout: float = 60.0) -> dict[str, dict[int, int]]:
        """Read every changelog up to its current end; return the offsets reached."""
        deadline = time.monotonic() + timeout
        self._assign_new_partitions(timeout)
        targets = self._end_offsets(deadline)
        behind = {tp for tp, end in targets.items() if self.view.offsets[tp[0]][tp[1]] < end}
        while behind:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"state changelogs not read to their end within {timeout:.0f} s: "
                    + ", ".join(f"{t}[{p}]" for t, p in sorted(behind))
                )
            read_any = False
            for topic, partition, key, value, offset in self._poll_batch():
                try:
                    self.view.apply(self._table_of_topic[topic], key, value)
                except StateRecordError as exc:
                    self.skipped[topic] = self.skipped.get(topic, 0) + 1
                    log.error("skipped state record %s[%d]@%d: %s", topic, partition, offset, exc)
                self.view.offsets[topic][partition] = offset + 1
                read_any = True
            if not read_any:
                # Compaction or control records can leave the last offsets
                # without a record: the consumer's position moves past them.
                for tp in self._consumer.position(
                    [TopicPartition(topic, partition) for topic, partition in behind]
                ):
                    if tp.offset >= 0:
                        self.view.offsets[tp.topic][tp.partition] = tp.offset
            behind = {tp for tp in behind if self.view.offsets[tp[0]][tp[1]] < targets[tp]}
        return {topic: dict(parts) for topic, parts in self.view.offsets.items()}

    def _poll_batch(self) -> Iterator[tuple[str, int, bytes | None, bytes | None, int]]:
        for message in self._consumer.consume(num_messages=self._batch_messages, timeout=0.2):
            error = message.error()
            if error is not None:
                raise RuntimeError(f"reading state changelog: {error}")
            yield (
                message.topic(),
                message.partition(),
                message.key(),
                message.value(),
                message.offset(),
            )
