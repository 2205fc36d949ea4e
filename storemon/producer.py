"""A producer helper for Python producers of polls: buffer polls, group them per
partition, send partition batches, confirm delivery.

    with PollProducer(Settings.from_env()) as producer:
        for poll in polls:
            producer.send(poll)            # buffered, grouped by the store's partition
        delivery = producer.flush()        # every poll confirmed by the broker, or counted failed

A worker's cost is per record, not per poll (BENCHMARKS.md), so polls of many stores of
one partition travel as one record (schemas/status-partition-batch.schema.json): the
stores' partition is murmur2 of the store_id, as keyed records are partitioned, and the
record goes to that partition explicitly, without a key. The worker checks each entry:
one of another partition is sent on there, never applied where it landed.

The wire format, for producers in other languages (who may also keep sending one poll a
record, keyed by its store_id: valid, just slower): a JSON value
`{"partition": p, "polls": [{"store_id", "timestamp_utc", "status"}, ...]}` (at most
2,000 polls), produced with no key to partition p of `store-status`, where p =
murmur2(UTF-8 bytes of store_id) & 0x7fffffff, modulo the partition count (the Java
client's default partitioner).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType

from confluent_kafka import KafkaError, Message

from storemon.config import Settings
from storemon.inputs.values import Poll
from storemon.kafka.clients import make_producer
from storemon.kafka.partitioning import partition_of
from storemon.kafka.topics import TOPIC_STATUS, input_partitions
from storemon.messages.polls import MAX_PARTITION_BATCH_POLLS, encode_partition_batch
from storemon.timebase import format_timestamp

#: How long `flush` waits for the broker to confirm what was sent.
FLUSH_TIMEOUT_S = 60.0


@dataclass
class Delivery:
    """What became of the polls sent since the last flush."""

    confirmed: int = 0
    failed: int = 0
    first_error: str | None = None


@dataclass
class PollProducer:
    """Polls to `store-status` as partition batches of at most `batch_polls` polls."""

    settings: Settings
    batch_polls: int = 500
    _pending: dict[int, list[Poll]] = field(default_factory=dict)
    _delivery: Delivery = field(default_factory=Delivery)

    def __post_init__(self) -> None:
        if not 1 <= self.batch_polls <= MAX_PARTITION_BATCH_POLLS:
            raise ValueError(f"batch_polls must be from 1 to {MAX_PARTITION_BATCH_POLLS}")
        self._partitions = input_partitions(self.settings)
        self._topic = self.settings.topic(TOPIC_STATUS)
        # Batches are built here: the client needs no lingering of its own.
        self._producer = make_producer(self.settings, **{"linger.ms": 5})

    def __enter__(self) -> PollProducer:
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None,
                 trace: TracebackType | None) -> None:
        self.flush()

    def send(self, poll: Poll) -> None:
        """Buffer a (valid) poll; its partition's batch goes out once full."""
        partition = partition_of(poll.store_id.encode(), self._partitions)
        pending = self._pending.setdefault(partition, [])
        pending.append(poll)
        if len(pending) >= self.batch_polls:
            self._produce(partition)
        self._producer.poll(0)

    def flush(self, timeout_s: float = FLUSH_TIMEOUT_S) -> Delivery:
        """Send every buffered poll and wait for the broker; what became of the polls
        sent since the last flush."""
        for partition in list(self._pending):
            self._produce(partition)
        left = self._producer.flush(timeout_s)
        delivery, self._delivery = self._delivery, Delivery()
        if left:
            delivery.first_error = delivery.first_error or f"{left} records not confirmed"
        return delivery

    def _produce(self, partition: int) -> None:
        polls = self._pending.pop(partition, [])
        if not polls:
            return
        value = encode_partition_batch(
            partition,
            ((p.store_id, format_timestamp(p.timestamp_us), p.status == "active") for p in polls),
        )
        count = len(polls)

        def delivered(error: KafkaError | None, message: Message) -> None:
            if error is None:
                self._delivery.confirmed += count
            else:
                self._delivery.failed += count
                self._delivery.first_error = self._delivery.first_error or error.str()

        while True:
            try:
                self._producer.produce(
                    self._topic, value=value, partition=partition, on_delivery=delivered
                )
                return
            except BufferError:  # the client's queue is full: let it drain
                self._producer.poll(0.1)
