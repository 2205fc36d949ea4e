"""The poll days of each partition a worker is given, rebuilt from their changelog.

Not by Faust: its recovery reads a changelog at ~100-200 µs a record in Python
(per-event queues, tasks and bookkeeping), about 11 records a store, which made an
owner joining a running group take 13 s at Loop scale / 4 (issue 12's target: 10 s).
Here a changelog partition is read by a librdkafka consumer in a thread (the same
reader as the tests' state probe), latest value per key, then handed to the worker's
store and retention on the event loop, a slice at a time so that the loop keeps
answering. Until a partition is rebuilt, the worker applies none of its input, computes
none of its parts and answers none of its store queries.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, MutableMapping

from storemon.config import Settings
from storemon.state.layout import POLL_BYTES, POLLS_TABLE, latest_timestamp_us, split_poll_day_key
from storemon.state.reader import StateReader, TableValues
from storemon.state.retention import Retention

log = logging.getLogger(__name__)

#: Store-days handed to the worker's store between two looks at the event loop.
SLICE = 5_000
#: What the reader fetches and takes at once: enough to read fast, little beside the
#: state itself (partitions are read one at a time: several readers at once, each with
#: its fetches and records in flight, doubled an owner's peak RSS at 4x Loop scale).
FETCH_MAX_BYTES = 8 * 1024 * 1024
BATCH_MESSAGES = 5_000
#: A changelog partition not read to its end in this long stops the worker.
READ_TIMEOUT_S = 600.0


def read_poll_days(settings: Settings, partition: int) -> tuple[dict[bytes, bytes], int]:
    """The partition's store-days (key -> value) as its changelog ends now, and how many
    records were skipped for breaking the state layout (each logged)."""
    reader = StateReader(
        settings,
        view=TableValues(),
        tables=(POLLS_TABLE,),
        partitions={partition},
        fetch_max_bytes=FETCH_MAX_BYTES,
        batch_messages=BATCH_MESSAGES,
    )
    try:
        reader.catch_up(timeout=READ_TIMEOUT_S)
        return reader.view.values, sum(reader.skipped.values())
    finally:
        reader.close()


class PollDayRecovery:
    """Rebuilds each newly assigned partition's poll days; says which are not ready."""

    def __init__(
        self,
        settings: Settings,
        poll_days: MutableMapping[bytes, bytes],
        retention: Retention,
        #: Called for each changelog record skipped for breaking the state layout.
        on_skipped: Callable[[], None],
        on_failure: Callable[[BaseException], object],
        #: Called with each partition once rebuilt, before anything waiting for it resumes.
        on_rebuilt: Callable[[int], None],
        read: Callable[[Settings, int], tuple[dict[bytes, bytes], int]] = read_poll_days,
    ) -> None:
        self._settings = settings
        self._poll_days = poll_days
        self._retention = retention
        self._on_skipped = on_skipped
        self._on_failure = on_failure
        self._on_rebuilt = on_rebuilt
        self._read = read
        #: The partitions this worker owns, as last assigned.
        self._owned: set[int] = set()
        #: partition -> set once its poll days are rebuilt, or it is not owned after all
        self._ready: dict[int, asyncio.Event] = {}
        self._rebuilding: dict[int, asyncio.Task[None]] = {}
        self._one_read_at_a_time = asyncio.Lock()

    def assign(self, owned: set[int]) -> None:
        """The partitions owned now: rebuild those new; stop rebuilding those gone (their
        store-days are the caller's to drop, with Retention.keep_only)."""
        for partition in self._owned - owned:
            task = self._rebuilding.pop(partition, None)
            if task is not None:
                task.cancel()
        for partition in list(self._ready):
            if partition not in owned:
                # Whoever waits for it wakes up, and finds it no longer owned.
                self._ready.pop(partition).set()
        for partition in owned - self._owned:
            self._ready.setdefault(partition, asyncio.Event())
            self._rebuilding[partition] = asyncio.create_task(
                self._rebuild(partition), name=f"rebuild-poll-days-{partition}"
            )
        self._owned = set(owned)

    def rebuilding(self, partition: int | None = None) -> bool:
        """Whether `partition` (None: any partition) is being rebuilt."""
        return bool(self._rebuilding) if partition is None else partition in self._rebuilding

    async def ready(self, partition: int) -> bool:
        """Wait until `partition` is rebuilt; whether it is owned then.

        A partition's records can come before the signal that makes it this worker's
        (Faust resumes its input once Faust's own tables are recovered), so an unknown
        partition is waited for too: `assign` either rebuilds it or turns it away. One
        turned away and assigned again meanwhile is waited for anew: it is rebuilt again.
        """
        while True:
            event = self._ready.setdefault(partition, asyncio.Event())
            if not event.is_set():
                await event.wait()
            if partition not in self._owned or self._ready.get(partition) is event:
                return partition in self._owned

    async def all_ready(self) -> None:
        """Wait until every partition owned now is rebuilt (or assigned away meanwhile:
        its event is set then, and never made anew here, which nobody would set)."""
        for partition in list(self._owned):
            event = self._ready.get(partition)
            if event is not None and not event.is_set():
                await event.wait()

    async def _rebuild(self, partition: int) -> None:
        started = asyncio.get_running_loop().time()
        try:
            async with self._one_read_at_a_time:
                days, skipped = await asyncio.to_thread(self._read, self._settings, partition)
            for _ in range(skipped):
                self._on_skipped()
            for number, (key, value) in enumerate(days.items(), 1):
                store_id, day = split_poll_day_key(key)
                self._poll_days[key] = value
                self._retention.add(
                    partition, store_id, day, key, latest_timestamp_us(value),
                    len(value) // POLL_BYTES,
                )
                if number % SLICE == 0:
                    await asyncio.sleep(0)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            log.critical("could not rebuild partition %d's poll days: %r", partition, exc)
            self._on_failure(exc)
            raise
        self._rebuilding.pop(partition, None)
        self._on_rebuilt(partition)
        self._ready[partition].set()
        log.info(
            "rebuilt partition %d's poll days: %d store-days in %.1f s",
            partition,
            len(days),
            asyncio.get_running_loop().time() - started,
        )
