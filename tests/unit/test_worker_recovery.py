"""The worker's rebuild of its partitions' poll days (storemon.ingest.recovery), around
rebalances: who waits for what, with the changelog reads stood in for by held threads."""

from __future__ import annotations

import asyncio
import threading

import pytest

from storemon.config import Settings
from storemon.ingest.recovery import PollDayRecovery
from storemon.state.layout import poll_day_key
from storemon.state.retention import Retention

pytestmark = pytest.mark.usefixtures("default_settings_environment")

DAY_VALUE = b"\x00\x05\xf2\x6b\x56\x4a\x80\x00a"  # one poll


class HeldReads:
    """Changelog reads that return one store-day each, once released."""

    def __init__(self) -> None:
        self.released: dict[int, threading.Event] = {}

    def release(self, partition: int) -> None:
        self.released.setdefault(partition, threading.Event()).set()

    def __call__(self, settings: Settings, partition: int) -> tuple[dict[bytes, bytes], int]:
        self.released.setdefault(partition, threading.Event()).wait(10)
        return {poll_day_key(f"store-{partition}", 19_375): DAY_VALUE}, 0


def recovery_with(
    reads: HeldReads, poll_days: dict[bytes, bytes], rebuilt: list[int] | None = None
) -> PollDayRecovery:
    return PollDayRecovery(
        Settings.from_env(),
        poll_days,
        Retention(lambda: 0.0),
        lambda: None,
        lambda error: None,
        on_rebuilt=(rebuilt if rebuilt is not None else []).append,
        read=reads,
    )


async def test_waiting_for_all_ends_when_a_partition_is_assigned_away_meanwhile():
    """Two workers starting together deadlocked: a partition assigned away while the
    recover callback waited got a new event that nobody would ever set."""
    reads, poll_days = HeldReads(), {}
    recovery = recovery_with(reads, poll_days)
    recovery.assign({0, 1})
    waiting = asyncio.ensure_future(recovery.all_ready())
    await asyncio.sleep(0)  # waits for partition 0
    recovery.assign({0})  # 1 goes to the other worker
    reads.release(0)
    await asyncio.wait_for(waiting, 5)
    assert list(poll_days) == [poll_day_key("store-0", 19_375)]
    reads.release(1)


async def test_input_of_a_partition_waits_for_its_rebuild_and_skips_it_once_gone():
    reads, poll_days = HeldReads(), {}
    recovery = recovery_with(reads, poll_days)
    early = asyncio.ensure_future(recovery.ready(2))  # its input came before the signal
    recovery.assign({2, 3})
    assert recovery.rebuilding(2) and recovery.rebuilding()
    done, _ = await asyncio.wait({early}, timeout=0.2)
    assert not done, "input applied before its partition was rebuilt"
    reads.release(2)
    assert await asyncio.wait_for(early, 5) is True
    assert not recovery.rebuilding(2) and recovery.rebuilding(3)
    waiting = asyncio.ensure_future(recovery.ready(3))
    await asyncio.sleep(0)  # waits for partition 3
    recovery.assign({2})
    assert await asyncio.wait_for(waiting, 5) is False
    reads.release(3)


async def test_input_waits_again_for_a_partition_assigned_anew_while_it_waited():
    """A worker that missed a generation of its group has every partition it gets back
    rebuilt (turned away, then assigned again at once): input that waited for the first
    rebuild must wait for the second, not apply to a partition being rebuilt."""
    reads, poll_days, rebuilt = HeldReads(), {}, []
    recovery = recovery_with(reads, poll_days, rebuilt)
    recovery.assign({4})
    waiting = asyncio.ensure_future(recovery.ready(4))
    await asyncio.sleep(0)  # waits for partition 4's first rebuild
    recovery.assign(set())
    recovery.assign({4})
    done, _ = await asyncio.wait({waiting}, timeout=0.2)
    assert not done, "input resumed while its partition was being rebuilt again"
    reads.release(4)
    assert await asyncio.wait_for(waiting, 5) is True
    assert rebuilt == [4]
    assert list(poll_days) == [poll_day_key("store-4", 19_375)]
