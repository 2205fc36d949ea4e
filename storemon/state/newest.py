"""The newest poll accepted per state partition: a report's default `as_of` (their
greatest), and how far in event time each partition's state is behind its input.

Each worker keeps, per state partition it owns, the newest poll time it accepted in
the `newest_poll` table (storemon/state/layout.py), one key per partition, written in
that partition's changelog partition. So the last record of each changelog partition
is that partition's current value, and a reporter learns the newest poll of the whole
fleet by reading one record per partition, without holding any state.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

from confluent_kafka import Consumer, TopicPartition

from storemon.config import Settings
from storemon.inputs.values import RowError
from storemon.kafka.clients import make_consumer
from storemon.kafka.offsets import watermarks
from storemon.kafka.topics import TOPIC_STATUS, changelog_topic, state_reader_group
from storemon.messages.polls import decode_status
from storemon.state.layout import NEWEST_POLL_TABLE, decode_newest_poll

T = TypeVar("T")


class NewestPollReader:
    """Reads the newest poll time of every state partition, as often as asked.

    Not for two threads at once: each reading assigns the reader's one consumer.
    """

    def __init__(self, settings: Settings) -> None:
        self._topic = changelog_topic(settings, NEWEST_POLL_TABLE)
        self._input = settings.topic(TOPIC_STATUS)
        # Assigned partitions, no commits: reads never disturb another reader.
        self._consumer: Consumer = make_consumer(
            settings,
            state_reader_group(settings),
            **{"enable.auto.commit": False, "fetch.wait.max.ms": 10},
        )

    def close(self) -> None:
        self._consumer.close()

    def newest_us(self, timeout: float = 10.0) -> int | None:
        """The newest poll time over all partitions; None when no partition has one."""
        return max(self.by_partition(timeout).values(), default=None)

    def by_partition(self, timeout: float = 10.0) -> dict[int, int]:
        """Partition -> the newest poll time its owner accepted (partitions with none left out)."""
        return self._last_values(
            self._topic, lambda key, value: decode_newest_poll(value), timeout
        )

    def produced_by_partition(self, timeout: float = 10.0) -> dict[int, int]:
        """Partition of `store-status` -> the newest valid poll time of its last record: what
        its owner will have accepted once it consumed everything produced so far.

        Left out: empty partitions, and those whose last record holds no valid poll.
        """

        def newest_of_record(key: bytes | None, value: bytes) -> int:
            polls = decode_status(key, value).by_store.values()
            if not any(polls):
                raise RowError("observations", "no valid poll")
            return max(poll.timestamp_us for store_polls in polls for poll in store_polls)

        return self._last_values(self._input, newest_of_record, timeout)

    def _last_values(
        self, topic_name: str, decode: Callable[[bytes | None, bytes], T], timeout: float
    ) -> dict[int, T]:
        """Partition -> its last record's value, decoded (values that do not decode and
        empty partitions left out); {} while the topic does not exist."""
        deadline = time.monotonic() + timeout
        topic = self._consumer.list_topics(topic_name, timeout=timeout).topics.get(topic_name)
        if topic is None or topic.error is not None:
            return {}  # e.g. no worker has accepted a poll yet
        last = {}
        for partition in topic.partitions:
            low, high = watermarks(self._consumer, topic_name, partition, deadline)
            if high > low:
                last[partition] = high - 1
        if not last:
            return {}
        self._consumer.assign(
            [TopicPartition(topic_name, partition, offset) for partition, offset in last.items()]
        )
        values: dict[int, T] = {}
        unread = set(last)
        try:
            while unread:
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{topic_name}: the last record of partition(s) "
                        f"{sorted(unread)} not read in {timeout:.0f} s"
                    )
                for message in self._consumer.consume(len(last), timeout=0.2):
                    if message.error() is not None:
                        raise RuntimeError(f"reading {topic_name}: {message.error()}")
                    unread.discard(message.partition())
                    if message.value() is None:
                        continue
                    try:
                        values[message.partition()] = decode(message.key(), message.value())
                    except ValueError:  # StateRecordError, RowError
                        continue
        finally:
            self._consumer.unassign()
        return values
