"""The newest poll accepted across all state partitions: a report's default `as_of`.

Each worker keeps, per state partition it owns, the newest poll time it accepted in
the `newest_poll` table (storemon/state/layout.py), one key per partition, written in
that partition's changelog partition. So the last record of each changelog partition
is that partition's current value, and a reporter learns the newest poll of the whole
fleet by reading one record per partition, without holding any state.
"""

from __future__ import annotations

import time

from confluent_kafka import Consumer, TopicPartition

from storemon.config import Settings
from storemon.kafka.clients import make_consumer
from storemon.kafka.offsets import watermarks
from storemon.kafka.topics import changelog_topic, state_reader_group
from storemon.state.layout import NEWEST_POLL_TABLE, decode_newest_poll


class NewestPollReader:
    """Reads the newest poll time of every state partition, as often as asked."""

    def __init__(self, settings: Settings) -> None:
        self._topic = changelog_topic(settings, NEWEST_POLL_TABLE)
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
        deadline = time.monotonic() + timeout
        topic = self._consumer.list_topics(self._topic, timeout=timeout).topics.get(self._topic)
        if topic is None or topic.error is not None:
            return None  # no worker has accepted a poll yet
        last = {}
        for partition in topic.partitions:
            low, high = watermarks(self._consumer, self._topic, partition, deadline)
            if high > low:
                last[partition] = high - 1
        if not last:
            return None
        self._consumer.assign(
            [TopicPartition(self._topic, partition, offset) for partition, offset in last.items()]
        )
        newest: dict[int, int] = {}
        try:
            while len(newest) < len(last):
                if time.monotonic() > deadline:
                    raise TimeoutError(
                        f"{self._topic}: the last record of partition(s) "
                        f"{sorted(last.keys() - newest.keys())} not read in {timeout:.0f} s"
                    )
                for message in self._consumer.consume(len(last), timeout=0.2):
                    if message.error() is not None:
                        raise RuntimeError(f"reading {self._topic}: {message.error()}")
                    if message.value() is not None:
                        newest[message.partition()] = decode_newest_poll(message.value())
        finally:
            self._consumer.unassign()
        return max(newest.values())
