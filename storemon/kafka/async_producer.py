"""A confluent-kafka producer whose deliveries are awaited on the event loop.

The API answers only after the broker confirmed what it produced, without
blocking the loop: each produce() returns a future that the delivery report
settles, served by one thread that polls the producer.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable

from confluent_kafka import KafkaError, KafkaException, Message

from storemon.config import Settings
from storemon.kafka.clients import make_producer
from storemon.kafka.topics import topic_exists

#: A request waits at most this long for the broker before it is answered 503.
DELIVERY_TIMEOUT_MS = 15_000


class DeliveryError(Exception):
    """The broker did not confirm a record."""


def _settle(future: asyncio.Future[None], error: KafkaError | None) -> None:
    if future.done():  # the request was cancelled meanwhile
        return
    if error is None:
        future.set_result(None)
    else:
        future.set_exception(DeliveryError(error.str()))


_OnDelivery = Callable[[KafkaError | None, Message], None]


class DeliveryGroup:
    """Records produced together and awaited together. Their delivery reports count
    down one counter instead of each settling a future: no object per record is kept,
    and the event loop is woken once per group, not once per record."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        queue: Callable[[str, bytes | None, bytes, _OnDelivery], Awaitable[None]],
    ) -> None:
        self._loop = loop
        self._queue = queue
        self._lock = threading.Lock()  # the counts change in the delivery report thread
        self.produced = 0
        self._unconfirmed = 0
        self._failed = 0
        self._first_error: str | None = None
        self._all_answered: asyncio.Future[None] | None = None

    @property
    def unconfirmed(self) -> int:
        """Records produced whose delivery the broker has not answered yet."""
        return self._unconfirmed

    def _delivered(self, error: KafkaError | None, _: Message) -> None:
        with self._lock:
            self._unconfirmed -= 1
            if error is not None:
                self._failed += 1
                self._first_error = self._first_error or error.str()
            waiter = self._all_answered if self._unconfirmed == 0 else None
        if waiter is not None:
            self._loop.call_soon_threadsafe(_settle, waiter, None)

    async def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Queue one record (DeliveryError if the client refuses it outright)."""
        with self._lock:
            self._unconfirmed += 1
        try:
            await self._queue(topic, key, value, self._delivered)
        except DeliveryError:
            with self._lock:
                self._unconfirmed -= 1
            raise
        self.produced += 1

    async def confirmed(self) -> None:
        """Returns once the broker answered for every record produced so far;
        DeliveryError if it did not confirm one of them."""
        with self._lock:
            if self._unconfirmed:
                self._all_answered = self._loop.create_future()
        if self._all_answered is not None:
            await self._all_answered
            self._all_answered = None
        if self._failed:
            raise DeliveryError(
                f"{self._failed} of {self.produced} records were not confirmed by the broker"
                f" ({self._first_error})"
            )


class AsyncProducer:
    def __init__(self, settings: Settings, loop: asyncio.AbstractEventLoop) -> None:
        self._producer = make_producer(
            settings,
            **{"message.timeout.ms": DELIVERY_TIMEOUT_MS, "linger.ms": 2},
        )
        self._loop = loop
        self._closing = threading.Event()
        self._poller = threading.Thread(
            target=self._serve_delivery_reports, name="kafka-delivery-reports", daemon=True
        )
        self._poller.start()

    def _serve_delivery_reports(self) -> None:
        while not self._closing.is_set():
            self._producer.poll(0.1)

    async def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        """Produce one record; returns once the broker confirmed it (else DeliveryError)."""
        delivery = await self.produce_later(topic, key, value)
        await delivery

    async def produce_later(
        self, topic: str, key: bytes | None, value: bytes, partition: int | None = None
    ) -> asyncio.Future[None]:
        """Queue one record (to `partition`, else its key's); the future it returns
        settles when the broker answered."""
        future: asyncio.Future[None] = self._loop.create_future()

        def delivered(error: KafkaError | None, _: Message) -> None:
            self._loop.call_soon_threadsafe(_settle, future, error)

        await self._queue(topic, key, value, delivered, partition)
        return future

    def group(self) -> DeliveryGroup:
        """Records to be produced and confirmed together (many of them, cheaply)."""
        return DeliveryGroup(self._loop, self._queue)

    async def _queue(
        self,
        topic: str,
        key: bytes | None,
        value: bytes,
        on_delivery: _OnDelivery,
        partition: int | None = None,
    ) -> None:
        """Hand one record to the client; `on_delivery` is called, from the delivery
        report thread, once the broker answered."""
        where = {} if partition is None else {"partition": partition}
        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=on_delivery, **where)
                return
            except BufferError:
                # The local queue is full: let deliveries drain it.
                await asyncio.sleep(0.05)
            except KafkaException as exc:
                raise DeliveryError(str(exc)) from None

    async def topic_exists(self, topic: str, timeout: float) -> bool:
        """Whether the broker answers and knows `topic` (readiness)."""
        return await asyncio.to_thread(topic_exists, self._producer, topic, timeout)

    async def close(self) -> None:
        """Deliver what is queued (a few seconds at most), then stop."""
        self._closing.set()
        await asyncio.to_thread(self._poller.join)
        await asyncio.to_thread(self._producer.flush, 5)
