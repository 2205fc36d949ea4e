"""A confluent-kafka producer whose deliveries are awaited on the event loop.

The API answers only after the broker confirmed what it produced, without
blocking the loop: each produce() returns a future that the delivery report
settles, served by one thread that polls the producer.
"""

from __future__ import annotations

import asyncio
import threading

from confluent_kafka import KafkaError, KafkaException, Message

from storemon.config import Settings
from storemon.kafka import make_producer

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
        self, topic: str, key: bytes | None, value: bytes
    ) -> asyncio.Future[None]:
        """Queue one record; the future it returns settles when the broker answered."""
        future: asyncio.Future[None] = self._loop.create_future()

        def delivered(error: KafkaError | None, _: Message) -> None:
            self._loop.call_soon_threadsafe(_settle, future, error)

        while True:
            try:
                self._producer.produce(topic, value, key, on_delivery=delivered)
                return future
            except BufferError:
                # The local queue is full: let deliveries drain it.
                await asyncio.sleep(0.05)
            except KafkaException as exc:
                raise DeliveryError(str(exc)) from None

    async def topic_exists(self, topic: str, timeout: float) -> bool:
        """Whether the broker answers and knows `topic` (readiness)."""
        metadata = await asyncio.to_thread(self._producer.list_topics, topic, timeout)
        found = metadata.topics.get(topic)
        return found is not None and found.error is None

    async def close(self) -> None:
        """Deliver what is queued (a few seconds at most), then stop."""
        self._closing.set()
        await asyncio.to_thread(self._poller.join)
        await asyncio.to_thread(self._producer.flush, 5)
