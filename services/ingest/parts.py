"""The worker's side of a report: computing and storing the part of a state partition it owns.

A task on `report-tasks` partition p reaches the worker that owns state partition
p (the topic is co-partitioned with the input topics). The worker takes a slice of
its tables — partition p's stores, or those of them the report asks for — computes
their rows with the shared engine at the task's `as_of` (in a thread, so the event
loop keeps applying polls meanwhile), and stores them with the input offsets its
state had applied (storemon/database/report_parts.py). A task for a report no longer
Running, or whose part is already stored, is skipped. A part that cannot be
computed fails its report with the reason; PostgreSQL out of reach is waited for,
so a task is never dropped: its offset is committed only once it is answered.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import TypeVar

import asyncpg
from faust.types import EventT, StreamT

from storemon.config import Settings
from storemon.database import report_parts, reports_db
from storemon.database.retry import RetryPolicy
from storemon.inputs.values import RowError, validate_timezone
from storemon.kafka.topics import INPUT_TOPICS
from storemon.messages.report_tasks import InvalidTask, ReportTask
from storemon.state.retention import Retention
from storemon.state.snapshot import PartitionSlice, SnapshotBuilder
from storemon.uptime import engine

log = logging.getLogger(__name__)

T = TypeVar("T")

APPLICATION_NAME = "storemon-worker"
#: Stores a part computes at once: the engine's temporary arrays are then those of a
#: chunk, not of a whole partition, at a few ms of per-call cost a chunk.
CHUNK_STORES = 2_000
#: PostgreSQL out of reach: tried again, pausing up to 8 s, until it answers.
DATABASE_RETRY = RetryPolicy(is_transient=reports_db.is_unavailable)


@dataclass
class AppliedOffsets:
    """The next offset of each input partition after the records this worker applied."""

    next_offsets: dict[tuple[str, int], int] = field(default_factory=dict)

    async def events(self, stream: StreamT) -> AsyncIterator[EventT]:
        """The stream's events; each counts as applied once the loop body is done with it."""
        async for event in stream.events():
            yield event
            message = event.message
            self.next_offsets[(message.topic, message.partition)] = message.offset + 1

    def of_partition(self, topics: list[str], partition: int) -> dict[str, dict[int, int]]:
        return {
            topic: {partition: self.next_offsets[(topic, partition)]}
            for topic in topics
            if (topic, partition) in self.next_offsets
        }


@dataclass
class PartMaker:
    """Answers report tasks from the tables of the partitions this worker owns."""

    settings: Settings
    retention: Retention
    poll_days: Mapping[bytes, bytes]
    schedules: Mapping[bytes, bytes]
    zones: Mapping[bytes, bytes]
    offsets: AppliedOffsets
    #: "computed" / "skipped" / "failed" / "invalid" -> tasks (the worker's metric)
    outcomes: Counter[str]
    _pool: asyncpg.Pool | None = None
    _builders: dict[int, SnapshotBuilder] = field(default_factory=dict)
    _name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def keep_only(self, partitions: set[int]) -> None:
        """Forget the schedules remembered for partitions no longer this worker's."""
        for partition in self._builders.keys() - partitions:
            del self._builders[partition]

    async def answer(self, event: EventT) -> None:
        message = event.message
        try:
            task = ReportTask.decode(message.value)
        except InvalidTask as exc:
            self.outcomes["invalid"] += 1
            log.error(
                "invalid report task %s[%d]@%d: %s",
                message.topic,
                message.partition,
                message.offset,
                exc,
            )
            return
        context = {"report_id": task.report_id}
        if task.partition != message.partition:
            self.outcomes["invalid"] += 1
            log.error(
                "report task for partition %d found on partition %d: skipped",
                task.partition,
                message.partition,
                extra=context,
            )
            return
        started = time.monotonic()
        # Taken before anything is awaited: the caller saw the partition ready, and a
        # rebuild of it may begin at the next await.
        part = self.slice(task.partition, task.store_ids)
        state_offsets = self.offsets.of_partition(
            [self.settings.topic(topic) for topic in INPUT_TOPICS], task.partition
        )
        if not await self._database(
            lambda c: report_parts.part_wanted(c, task.report_id, task.partition)
        ):
            self.outcomes["skipped"] += 1
            return
        try:
            rows = await self._compute(task, part)
        except Exception as exc:  # Any: a part that cannot be made must end its report.
            self.outcomes["failed"] += 1
            log.exception("part %d of report %s failed", task.partition, task.report_id,
                          extra=context)
            reason = f"part {task.partition}: {type(exc).__name__}: {exc}"
            await self._database(lambda c: reports_db.fail_report(c, task.report_id, reason))
            return
        stored = await self._database(
            lambda c: report_parts.store_part(
                c,
                task.report_id,
                task.partition,
                rows,
                state_offsets=state_offsets,
                computed_by=self._name,
            )
        )
        self.outcomes["computed" if stored else "skipped"] += 1
        log.info(
            "part %d of report %s: %d rows in %.2f s%s",
            task.partition,
            task.report_id,
            len(rows),
            time.monotonic() - started,
            "" if stored else " (not stored: done elsewhere or report ended)",
            extra=context,
        )

    def slice(self, partition: int, store_ids: Iterable[str] | None = None) -> PartitionSlice:
        """The partition's stores (or those of `store_ids` it holds polls of) as this
        worker holds them, in store_id order (the engine then finds its polls sorted)."""
        held = self.retention.store_days(partition)
        wanted = held.keys() if store_ids is None else set(store_ids) & held.keys()
        part = PartitionSlice()
        for store_id in sorted(wanted):
            self.add_store(part, store_id, held[store_id])
        return part

    def add_store(self, part: PartitionSlice, store_id: str, days: Mapping[int, bytes]) -> None:
        """Add a store's polls (from its day keys `days`), schedule and zone to `part`.
        Values are taken by reference (the tables replace them, never change them): the
        slice stays as it was taken while the tables keep changing."""
        poll_day = self.poll_days.get
        polls = tuple(
            value for day in sorted(days) if (value := poll_day(days[day])) is not None
        )
        if polls:
            part.polls[store_id] = polls
        key = store_id.encode()
        schedule = self.schedules.get(key)
        if schedule is not None:
            part.schedules[store_id] = schedule
        zone = self.zones.get(key)
        if zone is not None:
            try:
                part.zones[store_id] = validate_timezone(zone.decode())
            except (UnicodeDecodeError, RowError) as exc:
                # Only a record written to the changelog by something else can be one.
                log.error("zone of store %r in state is invalid, taken as none: %s",
                          store_id, exc)

    async def _compute(self, task: ReportTask, part: PartitionSlice) -> list[tuple[str, str]]:
        builder = self._builders.setdefault(task.partition, SnapshotBuilder())

        def rows() -> list[tuple[str, str]]:
            computed: list[tuple[str, str]] = []
            for chunk in part.chunks(CHUNK_STORES):
                report = engine.compute(*builder.build(chunk), as_of=task.as_of_us)
                computed.extend(zip(report.store_ids.tolist(), report.csv_rows(), strict=True))
            if task.store_ids is None:
                builder.keep_only(part.schedules)
            return computed

        return await asyncio.to_thread(rows)

    async def _database(self, work: Callable[[asyncpg.Connection], Awaitable[T]]) -> T:
        if self._pool is None:
            self._pool = await DATABASE_RETRY.run(
                lambda: reports_db.create_pool(self.settings, APPLICATION_NAME, max_size=2),
                until_done=True,
                on_retry=_warn_retry,
            )
        pool = self._pool

        async def on_a_pooled_connection() -> T:
            async with reports_db.acquire(pool) as connection:
                return await work(connection)

        return await DATABASE_RETRY.run(
            on_a_pooled_connection, until_done=True, on_retry=_warn_retry
        )

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()


def _warn_retry(attempt: int, pause_s: float, error: BaseException) -> None:
    log.warning(
        "database unreachable for a report part (attempt %d), next try in %.1f s: %s",
        attempt,
        pause_s,
        error,
    )
