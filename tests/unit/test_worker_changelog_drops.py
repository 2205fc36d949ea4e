"""Dropping the worker's changelog writes not sent yet (storemon.ingest.changelog): a
commit whose offsets were taken before the drop must not go through, or it would cover
input whose writes were never sent (a worker frozen past its session drops them)."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterable, Mapping
from types import SimpleNamespace

from storemon.ingest.changelog import ChangelogBatches


class CommittingConsumer:
    """Faust's consumer as far as a commit goes: _commit_tps takes the offsets of what was
    processed, awaits (the flush), then _commit sends them."""

    def __init__(self) -> None:
        self.committed: list[dict[str, int]] = []
        self.while_flushing: Callable[[], None] = lambda: None

    async def _commit_tps(self, tps: Iterable[str], start_new_transaction: bool) -> bool:
        offsets = {tp: 10 for tp in tps}
        await asyncio.sleep(0)
        self.while_flushing()
        return await self._commit(offsets)

    async def _commit(self, offsets: Mapping[str, int]) -> bool:
        self.committed.append(dict(offsets))
        return True


async def _nothing() -> None:
    return None


def batches_on(consumer: CommittingConsumer) -> ChangelogBatches:
    app = SimpleNamespace(producer=SimpleNamespace(flush=_nothing), consumer=consumer)
    return ChangelogBatches(app)  # type: ignore[arg-type]


async def test_a_commit_goes_through_when_nothing_was_dropped():
    consumer = CommittingConsumer()
    batches_on(consumer)
    assert await consumer._commit_tps(["status-0"], start_new_transaction=True) is True
    assert consumer.committed == [{"status-0": 10}]


async def test_a_commit_whose_offsets_were_taken_before_a_drop_is_not_made():
    consumer = CommittingConsumer()
    batches = batches_on(consumer)
    batches.set("polls-changelog", {}, 0, b"store|19375", b"day")
    consumer.while_flushing = batches.drop_unsent
    assert await consumer._commit_tps(["status-0"], start_new_transaction=True) is False
    assert consumer.committed == []
    assert batches.drops == 1
    # The next commit takes its offsets after the drop: it goes through.
    consumer.while_flushing = lambda: None
    assert await consumer._commit_tps(["status-0"], start_new_transaction=True) is True
    assert consumer.committed == [{"status-0": 10}]
