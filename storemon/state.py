"""The layout of the worker's per-store state, and a reader that follows it.

The Faust worker (services/ingest/worker.py) writes three tables; each is
backed by a compacted changelog topic, which is the durable form of the state.
The reporter reads the same changelogs to take a snapshot, so the layout
(table names, key encoding, value encoding) is defined once, here.

Observations are kept per store and UTC day: the key is
`b"<store_id> <day number since the epoch>"` and the value that day's polls,
sorted by time, each 9 bytes (the timestamp in µs as a big-endian int64, then
`a`ctive or `i`nactive). Why per day: a changelog record stays small (an
hourly-polled store's day is ~24 polls, ~216 bytes; never the store's whole
week), while a batch of a store's polls costs one table write per day it
touches instead of one per poll, which is what lets one Faust worker keep up
with bulk loads. A poll replayed or received twice lands on the same entry
(idempotent, the later accepted value wins), a late poll lands in its day, and
eviction drops whole days. store_id cannot contain white space (schemas/), so
the space separates the two parts of a key unambiguously.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import TypeVar

import numpy as np
from confluent_kafka import OFFSET_BEGINNING, Consumer, TopicPartition

from storemon import events, inputs
from storemon.config import Settings
from storemon.inputs import RowError
from storemon.kafka import end_offset

log = logging.getLogger(__name__)

OBSERVATIONS_TABLE = "observations"
SCHEDULES_TABLE = "schedules"
ZONES_TABLE = "zones"
TABLES = (OBSERVATIONS_TABLE, SCHEDULES_TABLE, ZONES_TABLE)

ACTIVE = b"a"
INACTIVE = b"i"

#: Observations older than the greatest event time minus this are out of every window.
HORIZON_US = 8 * 24 * 3600 * 1_000_000
DAY_US = 24 * 3600 * 1_000_000

#: One poll inside a day value: timestamp µs (big-endian int64), status byte.
POLL_DTYPE = np.dtype([("timestamp_us", ">i8"), ("status", "S1")])
POLL_BYTES = POLL_DTYPE.itemsize

V = TypeVar("V")


def worker_app_id(settings: Settings) -> str:
    """The Faust app id, and so the worker's consumer group and changelog prefix."""
    return settings.topic("storemon-worker")


def changelog_topic(settings: Settings, table: str) -> str:
    return f"{worker_app_id(settings)}-{table}-changelog"


def day_of(timestamp_us: int) -> int:
    """The UTC day number (since the epoch) an instant falls in."""
    return timestamp_us // DAY_US


def observation_day_key(store_id: str, day: int) -> bytes:
    return f"{store_id} {day}".encode()


class StateRecordError(ValueError):
    """A changelog record that breaks the layout: every reader skips it, logs and counts it.

    Nothing storemon writes breaks it, but anyone who can write to a changelog can,
    and one such record must not stop every reader of the state.
    """


def split_observation_day_key(key: bytes | None) -> tuple[str, int]:
    """(store_id, UTC day) of an observations key; StateRecordError if it is not one."""
    try:
        store_id, _, day = (key or b"").decode().rpartition(" ")
        inputs.parse_store_id(store_id)
        return store_id, int(day)
    except (UnicodeDecodeError, ValueError):  # RowError is a ValueError
        raise StateRecordError(f"key {_shown(key)} is not '<store_id> <UTC day>'") from None


def check_day_value(value: bytes) -> None:
    """StateRecordError unless `value` is a day value (see encode_day)."""
    if not value or len(value) % POLL_BYTES:
        raise StateRecordError(f"value of {len(value)} bytes is not a whole number of polls")
    # Every status byte (the 9th of each poll) with a and i taken out: nothing may be left.
    if value[POLL_BYTES - 1 :: POLL_BYTES].translate(None, ACTIVE + INACTIVE):
        raise StateRecordError("value holds a status other than a or i")


def check_record(table: str, key: bytes | None, value: bytes | None) -> None:
    """StateRecordError unless (key, value) is a record the worker could have written."""
    if table == OBSERVATIONS_TABLE:
        split_observation_day_key(key)
        if value is not None:
            check_day_value(value)
        return
    try:
        inputs.parse_store_id((key or b"").decode())
        if value is None:
            return
        if table == SCHEDULES_TABLE:
            events.decode_schedule(key, value)
        else:
            inputs.validate_timezone(value.decode())
    except (UnicodeDecodeError, RowError) as exc:
        raise StateRecordError(f"{table} record of {_shown(key)}: {exc}") from None


def _shown(key: bytes | None) -> str:
    return repr(key) if key is None or len(key) <= 100 else f"{key[:100]!r}..."


def decode_day(value: bytes) -> dict[int, bytes]:
    """A day value as {timestamp µs: status byte}, in time order."""
    polls = np.frombuffer(value, dtype=POLL_DTYPE)
    return dict(zip(polls["timestamp_us"].tolist(), polls["status"].tolist(), strict=True))


def encode_day(polls: dict[int, bytes]) -> bytes:
    """The day value of {timestamp µs: status byte}: sorted by time, 9 bytes a poll."""
    encoded = np.empty(len(polls), dtype=POLL_DTYPE)
    encoded["timestamp_us"] = list(polls)
    encoded["status"] = list(polls.values())
    encoded.sort(order="timestamp_us")
    return encoded.tobytes()


def latest_timestamp_us(value: bytes) -> int:
    """The last (greatest) poll time of a non-empty day value."""
    return int(np.frombuffer(value, dtype=POLL_DTYPE, offset=len(value) - POLL_BYTES)[0][0])


@dataclass
class StateView:
    """The latest value of every key of the worker's tables, as of `offsets`."""

    #: store_id -> {UTC day number: that day's value (see encode_day)}
    observation_days: dict[str, dict[int, bytes]] = field(default_factory=dict)
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
        if table == OBSERVATIONS_TABLE:
            store_id, day = split_observation_day_key(key)
            if value is None:
                days = self.observation_days.get(store_id)
                if days is not None:
                    days.pop(day, None)
                    if not days:
                        del self.observation_days[store_id]
            else:
                self.observation_days.setdefault(store_id, {})[day] = value
        elif table == SCHEDULES_TABLE:
            _set_or_delete(self.schedules, key.decode(), value)
        else:
            zone = None if value is None else value.decode()
            _set_or_delete(self.zones, key.decode(), zone)

    @property
    def observations(self) -> dict[str, dict[int, bool]]:
        """store_id -> {timestamp µs: active}, decoded (for checks; snapshots decode in bulk)."""
        return {
            store_id: {
                timestamp_us: status == ACTIVE
                for day in sorted(days)
                for timestamp_us, status in decode_day(days[day]).items()
            }
            for store_id, days in self.observation_days.items()
        }

    def observation_count(self) -> int:
        return sum(
            len(value) // POLL_BYTES for days in self.observation_days.values()
            for value in days.values()
        )


def _set_or_delete(mapping: dict[str, V], key: str, value: V | None) -> None:
    if value is None:
        mapping.pop(key, None)
    else:
        mapping[key] = value


class StateReader:
    """Follows the worker's changelog topics and keeps a StateView up to date.

    `catch_up()` reads until every changelog partition's end offset as it was
    when called, so the view then holds everything the workers had written.
    """

    def __init__(self, settings: Settings, group_id: str | None = None) -> None:
        self.settings = settings
        self.view = StateView()
        self._table_of_topic = {changelog_topic(settings, table): table for table in TABLES}
        # Offsets are tracked by the reader itself (assign, no commits): every
        # reader must see the whole changelog whatever others have read.
        self._consumer = Consumer(
            {
                "bootstrap.servers": settings.kafka_bootstrap_servers,
                "group.id": group_id or settings.topic("storemon-state-reader"),
                "enable.auto.commit": False,
                "enable.partition.eof": False,
                "fetch.max.bytes": 64 * 1024 * 1024,
                "max.partition.fetch.bytes": 16 * 1024 * 1024,
                # The end-offset queries of catch_up() share the broker connection
                # with fetches; at the default 500 ms an idle fetch held each query
                # back that long (~6 s per catch_up with nothing new, 12 partitions).
                "fetch.wait.max.ms": 10,
            }
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
        for message in self._consumer.consume(num_messages=100_000, timeout=0.2):
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
