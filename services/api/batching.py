"""Polls of concurrent `POST /events` requests, produced together as partition batches.

A worker's cost is per record, not per poll: a request with a few stores' polls would
cost it one record each. So the API groups the polls it accepts, from every request
under way, by their partition (murmur2 of the store_id, as keyed records land) for a
few milliseconds, or until a batch holds MAX_POLLS polls or MAX_BYTES bytes, and
produces each group as one partition batch (schemas/status-partition-batch.schema.json).
Each request still gets its answer only once the broker confirmed every batch that
carries one of its polls; a refused batch fails every request with a poll in it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from dataclasses import dataclass, field

from storemon.inputs.values import Poll
from storemon.kafka.async_producer import AsyncProducer, DeliveryError
from storemon.kafka.partitioning import partition_of
from storemon.messages.polls import encode_partition_batch
from storemon.timebase import format_timestamp

#: How long a batch waits for more polls, at most.
LINGER_S = 0.005
#: A batch goes out at once with this many polls...
MAX_POLLS = 1000
#: ...or this many bytes (well inside Kafka's 1 MB record limit).
MAX_BYTES = 256 * 1024
#: Bytes of an entry besides its store_id (timestamp, status, JSON punctuation).
_ENTRY_BYTES = 80


@dataclass
class _Batch:
    entries: list[tuple[str, str, bool]] = field(default_factory=list)
    size: int = 0
    sent: asyncio.Future[None] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    timer: asyncio.TimerHandle | None = None


class PartitionBatcher:
    def __init__(
        self, producer: AsyncProducer, topic: str, partitions: Callable[[], int]
    ) -> None:
        self._producer = producer
        self._topic = topic
        #: Reads the topic's partition count (from the broker: once, when first needed,
        #: so the API starts, and says it is not ready, while Kafka is away).
        self._read_partitions = partitions
        self._partitions: int | None = None
        self._open: dict[int, _Batch] = {}
        self._sending: set[asyncio.Task[None]] = set()

    async def ready(self) -> None:
        """Once the partition count is known (DeliveryError if the broker cannot say)."""
        if self._partitions is None:
            try:
                self._partitions = await asyncio.to_thread(self._read_partitions)
            except Exception as exc:  # the broker away: KafkaException, timeouts
                raise DeliveryError(f"the partitions of {self._topic} are unknown: {exc}") from exc

    def add(self, poll: Poll) -> asyncio.Future[None]:
        """Put the poll in its partition's open batch (after `ready`); the future settles
        once the broker answered for that batch (DeliveryError if it refused it)."""
        assert self._partitions is not None, "await ready() first"
        partition = partition_of(poll.store_id.encode(), self._partitions)
        batch = self._open.get(partition)
        if batch is None:
            batch = self._open[partition] = _Batch()
            # Retrieved here too: a request gone meanwhile must not leave it unread.
            batch.sent.add_done_callback(lambda sent: sent.cancelled() or sent.exception())
            batch.timer = asyncio.get_running_loop().call_later(
                LINGER_S, self._close, partition
            )
        batch.entries.append(
            (poll.store_id, format_timestamp(poll.timestamp_us), poll.status == "active")
        )
        batch.size += len(json.dumps(poll.store_id)) + _ENTRY_BYTES
        if len(batch.entries) >= MAX_POLLS or batch.size >= MAX_BYTES:
            self._close(partition)
        return batch.sent

    def _close(self, partition: int) -> None:
        batch = self._open.pop(partition, None)
        if batch is None:
            return
        if batch.timer is not None:
            batch.timer.cancel()
        task = asyncio.create_task(self._send(partition, batch))
        self._sending.add(task)
        task.add_done_callback(self._sending.discard)

    async def _send(self, partition: int, batch: _Batch) -> None:
        value = encode_partition_batch(partition, batch.entries)
        try:
            delivery = await self._producer.produce_later(self._topic, None, value, partition)
            await delivery
        except DeliveryError as exc:
            if not batch.sent.done():
                batch.sent.set_exception(exc)
            return
        if not batch.sent.done():
            batch.sent.set_result(None)

    async def close(self) -> None:
        """Send what is open and wait for it (the API stopping)."""
        for partition in list(self._open):
            self._close(partition)
        await asyncio.gather(*self._sending, return_exceptions=True)
