"""Changelog records in Kafka before a commit covers the input that made them.

Faust flushes its producer before it commits input offsets (and when partitions are
revoked), so that a commit never covers table writes whose changelog records are not
yet sent. Here that holds for every write of the worker's tables, and the poll tables'
writes cost a fraction of Faust's own per-write sends.

`flush_until_sent`: faust-streaming's `ProducerBuffer.flush`
(faust/transport/producer.py) misses two cases: it returns once 0.1 s pass without a
send, even while messages still wait, and it counts only the waiting messages, not the
one its sender has taken and is still handing to aiokafka, which aiokafka's flush then
misses too. Either way a commit could cover a record not yet sent, lost to a worker
killed then (tests/integration/test_worker_state.py's SIGKILL test lost a poll now and
then). Patched, each message taken counts as done once aiokafka holds it, and flush
waits for all. It gives up, raising as Faust's does, only once the buffer is no longer
running (a worker told to stop while the broker is away stops within a second).

`ChangelogBatches`: table writes sent as record batches.

A Faust table write sends its changelog record on its own: a FutureMessage, a trip
through the producer buffer and an aiokafka send with a future of its own, ~half of
what a poll cost the worker when each poll touches another store (partition batches of
single polls, issue 16). Here the worker writes the table's store directly and notes the
key; the keys written are sent as aiokafka record batches, each with its latest value,
in the flush Faust awaits before each commit and when partitions are revoked (or
sooner, once many), so a commit still covers only records aiokafka holds, and a worker
killed loses nothing it committed (tests/integration/test_worker_state.py). A key
written many times between commits is sent once, as Kafka Streams' record cache does: a
store polled often rewrote its whole day value in the changelog at every poll.

The changelogs read the same to the worker's recovery, Faust's, the reporter and the
tests: the latest record of each key is its value.

Writes not sent yet can be dropped (`drop_unsent`): by a worker that learns it was out
of its group (frozen past its session), whose partitions others may have owned and
written meanwhile. Its input offsets covering them were never committed (each commit
sends every write made before its offsets were taken), and no commit whose offsets were
taken before the drop goes through after it.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Iterable, Mapping, MutableMapping
from contextvars import ContextVar
from typing import Any, NoReturn

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.transport.producer import ProducerBuffer
from faust.types import TP
from faust.types.tuples import FutureMessage

log = logging.getLogger(__name__)

#: The `ChangelogBatches.drops` count when the commit running in this task took its offsets.
_DROPS_BEFORE_COMMIT: ContextVar[int] = ContextVar("drops_before_commit")

#: Exit status of a worker whose changelog records the broker never took: it stops at
#: once, unlike a Faust shutdown, which would commit the offsets of what was lost.
UNDELIVERED_EXIT = 75
#: The agent sends the writes not sent yet once there are this many, without waiting for
#: the next commit's flush (each key counted each time it is written).
SEND_AFTER_WRITES = 20_000


def stop_without_commit(reason: str) -> NoReturn:
    log.critical("changelog records not sent (%s): stopping without a commit", reason)
    logging.shutdown()
    os._exit(UNDELIVERED_EXIT)


def flush_until_sent() -> None:
    """Patch Faust's producer buffer (see above): its flush waits for every message."""

    async def send_pending(buffer: ProducerBuffer, fut: FutureMessage) -> None:
        try:
            await fut.message.channel.publish_message(fut, wait=False)
        except Exception as exc:  # Faust's sender would die, the message lost: stop first
            stop_without_commit(repr(exc))
        buffer.pending.task_done()

    async def flush(buffer: ProducerBuffer) -> None:
        while True:
            try:
                await asyncio.wait_for(buffer.pending.join(), timeout=1.0)
            except TimeoutError:
                if buffer.state != "running":
                    raise RuntimeError("Cannot flush: Producer not Running") from None
            else:
                return

    ProducerBuffer._send_pending = send_pending  # type: ignore[method-assign]
    ProducerBuffer.flush = flush  # type: ignore[method-assign]


class ChangelogBatches:
    """Writes to stores (tables) whose every write goes through here, recorded in their
    changelogs' partitions: the latest value of each key written since the last send."""

    def __init__(self, app: faust.App) -> None:
        self._app = app
        #: (changelog topic, partition) -> key -> its latest value (None: deleted) not sent
        self._unsent: dict[tuple[str, int], dict[bytes, bytes | None]] = {}
        self._unsent_count = 0
        #: How many times the writes not sent were dropped.
        self.drops = 0
        # One sender at a time (the agent, or a commit's flush), so each partition's
        # batches reach aiokafka in the order they were made.
        self._sending = asyncio.Lock()
        flush = app.producer.flush

        async def flush_with_unsent_writes() -> None:
            await self.send()
            await flush()

        # Faust awaits app.producer.flush() before it commits offsets.
        app.producer.flush = flush_with_unsent_writes  # type: ignore[method-assign]

        # Faust's consumer takes a commit's offsets in _commit_tps, then flushes, then
        # commits them in _commit: a commit is dropped there if writes were dropped since.
        consumer = app.consumer
        commit_tps, commit = consumer._commit_tps, consumer._commit  # type: ignore[attr-defined]

        async def commit_tps_noting_drops(tps: Iterable[TP], start_new_transaction: bool) -> bool:
            noted = _DROPS_BEFORE_COMMIT.set(self.drops)
            try:
                return await commit_tps(tps, start_new_transaction)  # type: ignore[no-any-return]
            finally:
                _DROPS_BEFORE_COMMIT.reset(noted)

        async def commit_unless_dropped(offsets: Mapping[TP, int]) -> bool:
            if _DROPS_BEFORE_COMMIT.get(self.drops) != self.drops:
                log.warning("offsets not committed: the writes of the input they cover were "
                            "dropped meanwhile (%s)", dict(offsets))
                return False
            return await commit(offsets)  # type: ignore[no-any-return]

        consumer._commit_tps = commit_tps_noting_drops  # type: ignore[attr-defined]
        consumer._commit = commit_unless_dropped  # type: ignore[attr-defined]

    def set(
        self,
        changelog: str,
        store: MutableMapping[bytes, bytes],
        partition: int,
        key: bytes,
        value: bytes,
    ) -> None:
        """`store[key] = value`, to be recorded in partition `partition` of `changelog`."""
        store[key] = value
        self._note(changelog, partition, key, value)

    def delete(
        self, changelog: str, store: MutableMapping[bytes, bytes], partition: int, key: bytes
    ) -> None:
        """Drop `key` if held, with its tombstone."""
        if store.pop(key, None) is not None:
            self._note(changelog, partition, key, None)

    def _note(self, changelog: str, partition: int, key: bytes, value: bytes | None) -> None:
        self._unsent.setdefault((changelog, partition), {})[key] = value
        self._unsent_count += 1

    def drop_unsent(self) -> None:
        """Forget every write not sent yet (see above)."""
        self._unsent, self._unsent_count = {}, 0
        self.drops += 1

    @property
    def many_unsent(self) -> bool:
        """Whether the writes not sent yet are worth sending before the next commit."""
        return self._unsent_count >= SEND_AFTER_WRITES

    async def send(self) -> None:
        """Hand every key written since the last send to aiokafka, its latest value."""
        async with self._sending:
            # Taken whole before the first await: what the agent writes meanwhile is the
            # next send's, so each key's values reach a partition in the order written.
            unsent, self._unsent, self._unsent_count = self._unsent, {}, 0
            producer = self._producer()
            for (topic, partition), values in unsent.items():
                batch = producer.create_batch()
                for key, value in values.items():
                    if batch.append(timestamp=None, key=key, value=value) is None:
                        await self._send_batch(batch, topic, partition)
                        batch = producer.create_batch()
                        if batch.append(timestamp=None, key=key, value=value) is None:
                            size = len(value or b"")
                            stop_without_commit(f"a changelog record of {size} bytes fits no batch")
                await self._send_batch(batch, topic, partition)

    async def _send_batch(self, batch: BatchBuilder, topic: str, partition: int) -> None:
        try:
            delivered = await self._producer().send_batch(batch, topic, partition=partition)
        except Exception as exc:  # records of acknowledged input: never skip them
            stop_without_commit(repr(exc))
        delivered.add_done_callback(_stop_unless_delivered)

    def _producer(self) -> AIOKafkaProducer:
        # The Faust producer's own aiokafka client: the batches share its connection, its
        # settings (compression, batch size) and the flush before each commit.
        return self._app.producer._ensure_producer()  # type: ignore[attr-defined, no-any-return]


def _stop_unless_delivered(delivered: asyncio.Future[Any]) -> None:
    if delivered.cancelled():
        stop_without_commit("cancelled")
    elif delivered.exception() is not None:
        stop_without_commit(repr(delivered.exception()))

