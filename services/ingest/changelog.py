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
what a poll costs the worker when each poll touches another store (partition batches of
single polls, issue 16). Here the worker writes the table's store directly and appends
the record to an open aiokafka batch of that changelog partition. Full batches are
handed to aiokafka as the agent goes; the open ones just before Faust flushes its
producer, which it does before it commits offsets and when partitions are revoked, so a
commit still covers only records aiokafka holds, and a worker killed loses nothing it
committed (tests/integration/test_worker_state.py).

One record a key write, in write order per partition, as Faust's own sends: the
changelogs read the same to Faust's recovery, the reporter and the tests.
"""

from __future__ import annotations

import asyncio
import logging
import os
from collections import deque
from collections.abc import MutableMapping
from typing import Any, NoReturn

import faust
from aiokafka import AIOKafkaProducer
from aiokafka.producer.message_accumulator import BatchBuilder
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage

log = logging.getLogger(__name__)

#: Exit status of a worker whose changelog records the broker never took: it stops at
#: once, unlike a Faust shutdown, which would commit the offsets of what was lost.
UNDELIVERED_EXIT = 75


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
    changelogs' partitions."""

    def __init__(self, app: faust.App) -> None:
        self._app = app
        #: (changelog topic, partition) -> its batches not handed to aiokafka yet, oldest
        #: first; only the last one is open.
        self._batches: dict[tuple[str, int], deque[BatchBuilder]] = {}
        # One sender at a time (the agent, or a commit's flush), so each partition's
        # batches reach aiokafka in the order they were filled.
        self._sending = asyncio.Lock()
        flush = app.producer.flush

        async def flush_with_open_batches() -> None:
            await self.send(including_open=True)
            await flush()

        # Faust awaits app.producer.flush() before it commits offsets.
        app.producer.flush = flush_with_open_batches  # type: ignore[method-assign]

    def set(
        self,
        changelog: str,
        store: MutableMapping[bytes, bytes],
        partition: int,
        key: bytes,
        value: bytes,
    ) -> None:
        """`store[key] = value`, recorded in partition `partition` of `changelog`."""
        store[key] = value
        self._append(changelog, partition, key, value)

    def delete(
        self, changelog: str, store: MutableMapping[bytes, bytes], partition: int, key: bytes
    ) -> None:
        """Drop `key` if held, with its tombstone."""
        if store.pop(key, None) is not None:
            self._append(changelog, partition, key, None)

    def _append(self, changelog: str, partition: int, key: bytes, value: bytes | None) -> None:
        batches = self._batches.setdefault((changelog, partition), deque())
        if batches and batches[-1].append(timestamp=None, key=key, value=value) is not None:
            return
        # None: full (and now closed), or no batch yet.
        batch = self._producer().create_batch()
        if batch.append(timestamp=None, key=key, value=value) is None:
            raise ValueError(f"a changelog record of {len(value or b'')} bytes fits no batch")
        batches.append(batch)

    async def send(self, including_open: bool = False) -> None:
        """Hand the full batches to aiokafka, and the open ones too if `including_open`."""
        async with self._sending:
            # The agent may write on while a commit's flush awaits here: new partitions
            # come after this list, new records into a new batch (this one closed first).
            for (topic, partition), batches in list(self._batches.items()):
                while batches and (including_open or len(batches) > 1):
                    batches[0].close()
                    try:
                        delivered = await self._producer().send_batch(
                            batches[0], topic, partition=partition
                        )
                    except Exception as exc:  # records of acknowledged input: never skip them
                        stop_without_commit(repr(exc))
                    batches.popleft()
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

