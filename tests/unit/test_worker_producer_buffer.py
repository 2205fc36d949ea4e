"""The worker's flush of Faust's producer buffer, which Faust awaits before committing offsets.

A flush that returned while a changelog record was still on its way to aiokafka let a
commit cover it: a worker killed then lost that record (the SIGKILL test of
tests/integration/test_worker_state.py lost a poll now and then).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import faust
import pytest
from faust.transport.producer import ProducerBuffer
from faust.types.tuples import FutureMessage, PendingMessage

from storemon.ingest.changelog import flush_until_sent


class HeldTopic:
    """A channel whose sends reach aiokafka only when released, as with a slow broker."""

    def __init__(self) -> None:
        self.released = asyncio.Event()
        self.taken = asyncio.Event()
        self.sent: list[FutureMessage] = []

    async def publish_message(self, fut: FutureMessage, wait: bool = False) -> None:
        self.taken.set()
        await self.released.wait()
        self.sent.append(fut)


def _message(channel: HeldTopic) -> FutureMessage:
    pending = PendingMessage(
        channel=channel,  # type: ignore[arg-type]
        key=b"store",
        value=b"day",
        partition=0,
        timestamp=None,
        headers=None,
        key_serializer=None,
        value_serializer=None,
        callback=None,
    )
    return FutureMessage(pending)


@pytest.fixture
async def buffer() -> AsyncIterator[ProducerBuffer]:
    flush_until_sent()  # as the worker does before it makes its Faust app
    started = ProducerBuffer()
    started.app = faust.App("storemon-unit-buffer", broker="kafka://127.0.0.1:1")
    await started.start()
    yield started
    if not started.should_stop:
        await started.stop()


async def test_flush_waits_for_the_message_being_handed_to_aiokafka(buffer):
    topic = HeldTopic()
    buffer.put(_message(topic))
    await asyncio.wait_for(topic.taken.wait(), 5)
    assert buffer.size == 0, "the sender holds the message: the buffer no longer counts it"
    flushing = asyncio.ensure_future(buffer.flush())
    # Faust's own flush returns 0.1 s after the last send, and here after 0 s.
    done, _ = await asyncio.wait({flushing}, timeout=1.5)
    assert not done, "flush returned while a message was still on its way"
    topic.released.set()
    await asyncio.wait_for(flushing, 5)
    assert len(topic.sent) == 1


async def test_flush_of_a_stopping_buffer_gives_up_instead_of_waiting_forever(buffer):
    topic = HeldTopic()
    buffer.put(_message(topic))
    await asyncio.wait_for(topic.taken.wait(), 5)
    with pytest.raises(RuntimeError, match="Producer not Running"):
        # Stopping flushes; the broker never takes the message.
        await asyncio.wait_for(buffer.stop(), 10)
    assert topic.sent == []
