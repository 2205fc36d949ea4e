"""`storemon reporter`: plans reports, has their parts computed where the state is, and
gathers them into CSVs stored in PostgreSQL. It holds no poll state.

One reporter process:

- consumes `report-requests` in the reporter consumer group; several reporters
  share its partitions;
- plans each report: its `as_of` (the request's, or the newest poll any worker
  accepted, read from one record per state partition: storemon/state/newest.py)
  and the state partitions it needs (all, or those holding the requested
  `store_ids`, found by murmur2 as producers partition them); the plan is kept in
  the report's row, so a reporter redoing the report asks the same;
- sends one task per partition to `report-tasks`; the worker owning that state
  partition computes and stores the part (services/ingest/parts.py);
- waits for the parts, then assembles the CSV from them into one large object and
  marks the report Complete in one transaction (storemon/database/report_parts.py);
  only then is the request's offset committed, so a reporter that dies mid-report
  leaves the request to whichever reporter gets its partition next, which asks
  only for the parts still missing. Redoing is harmless: a report that is no
  longer Running is skipped;
- a report still Running STOREMON_REPORT_TIMEOUT_S after its request ends Failed,
  naming the partitions whose part never came;
- retries database work while PostgreSQL cannot be reached, with exponential
  backoff, for about 25 seconds; beyond that the report is marked Failed
  (with the reason) as soon as the database answers again, and only then is the
  request's offset committed;
- every so often marks Failed the reports Running for longer than
  STOREMON_REPORT_TIMEOUT_S, and deletes the reports (and CSVs) older than
  STOREMON_REPORT_RETENTION_DAYS;
- serves /healthz, /readyz (PostgreSQL and Kafka reachable, in its consumer group and
  consuming) and /metrics on STOREMON_REPORTER_METRICS_PORT (services/reporter/metrics.py).
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import socket
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TypeVar

import asyncpg
from confluent_kafka import Consumer, KafkaException, Message, TopicPartition

from storemon.config import Settings
from storemon.database import notifications, reports_db
from storemon.database.notifications import Listener, wait_notified
from storemon.database.report_parts import (
    Plan,
    assemble_report,
    plan_report,
    report_progress,
)
from storemon.database.retry import RetriesExhausted, RetryPolicy
from storemon.kafka.clients import consumer_config, make_producer
from storemon.kafka.partitioning import partition_of
from storemon.kafka.topics import (
    TOPIC_REPORT_REQUESTS,
    TOPIC_REPORT_TASKS,
    input_partitions,
    reporter_group,
    topic_exists,
)
from storemon.messages.report_requests import InvalidRequest, ReportRequest
from storemon.messages.report_tasks import ReportTask
from storemon.observability.health import kafka_check, postgres_check
from storemon.observability.logs import configure_logging
from storemon.observability.prometheus import Cached
from storemon.reporter.announcer import Announcer
from storemon.reporter.metrics import STATE_LAG_MAX_AGE_S, ReporterMetrics, serving
from storemon.state.lag import StateLag, read_state_lag
from storemon.state.newest import NewestPollReader
from storemon.timebase import datetime_from_us, us_from_datetime
from storemon.uptime import engine

log = logging.getLogger("storemon.reporter")

APPLICATION_NAME = "storemon-reporter"
#: How long one consumer poll waits for a request (and so how soon a stop is noticed).
_POLL_S = 0.5
#: Pauses between two looks at a report's parts: short at first, for quick reports.
_FIRST_PART_CHECK_S = 0.01
_MAX_PART_CHECK_S = 0.25
#: A part not stored this long after its task was sent is asked for again, then after
#: twice as long, up to the most: a task can be lost to its owner in a rebalance
#: (faust-streaming drops a fetched but unprocessed record of a partition whose group
#: offset was never committed), and a duplicate part is harmless.
_FIRST_REASK_S = 5.0
_MAX_REASK_S = 60.0
#: Database work that cannot reach the server is tried 7 times, pausing 0.5 s, then
#: twice as long each time up to 8 s (about 25 s in all) before the report is given up.
DATABASE_RETRY = RetryPolicy(is_transient=reports_db.is_unavailable)
#: How long a /metrics scrape waits for Kafka's figures of the state (then kafka_up is 0).
READ_STATE_LAG_TIMEOUT_S = 3.0

T = TypeVar("T")


class DatabaseUnavailable(Exception):
    """PostgreSQL could not be reached for a report's work, however often it was tried."""


def _consumer_config(settings: Settings) -> dict[str, object]:
    return consumer_config(
        settings,
        reporter_group(settings),
        **{
            # Committed by hand, after the report's transaction committed.
            "enable.auto.commit": False,
            # A new group takes every request still on the topic: each is checked
            # against its row, so requests already answered are skipped.
            "auto.offset.reset": "earliest",
            # Named in `storemon lag` as the owner of its partitions.
            "client.id": f"storemon-reporter@{socket.gethostname()}:{os.getpid()}",
            # A reporter that died hands its partitions over within seconds.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 2_000,
            "max.poll.interval.ms": max(300_000, (settings.report_timeout_s + 60) * 1000),
        },
    )


class Reporter:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, stop: asyncio.Event) -> None:
        self._settings = settings
        self._pool = pool
        self._stop = stop
        self.metrics = ReporterMetrics()
        self._newest = NewestPollReader(settings)
        self._tasks = make_producer(settings)
        self._announcer = Announcer(settings, pool, self._tasks)
        self._tasks_topic = settings.topic(TOPIC_REPORT_TASKS)
        self._parts_listener = Listener(pool, notifications.PARTS, settings.db_schema)
        #: The state partitions: those of the input topics, which report-tasks shares.
        self._partitions = input_partitions(settings)
        self._consumer = Consumer(_consumer_config(settings))
        #: Whether the consumer is a member of the reporter group with its assignment
        #: (maybe no partition: more reporters than partitions), and polls for requests.
        self._in_group = False
        self._consuming = False
        #: For /metrics only: its own consumer, so scrapes never wait for a report's reads.
        self._lag_reader = NewestPollReader(settings)
        self._state_lag: Cached[StateLag] = Cached(
            lambda: asyncio.to_thread(
                read_state_lag, settings, self._lag_reader, READ_STATE_LAG_TIMEOUT_S
            ),
            (KafkaException, TimeoutError, RuntimeError),
            STATE_LAG_MAX_AGE_S,
        )

    def _joined(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._in_group = True

    def _left(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        self._in_group = False

    async def readiness_checks(self) -> dict[str, str]:
        """/readyz: PostgreSQL and Kafka reachable, and requests being consumed."""
        topic = self._settings.topic(TOPIC_REPORT_REQUESTS)

        def tasks_topic_exists(name: str, timeout: float) -> Awaitable[bool]:
            return asyncio.to_thread(topic_exists, self._tasks, name, timeout)

        postgres, kafka = await asyncio.gather(
            postgres_check(self._pool), kafka_check(tasks_topic_exists, topic)
        )
        if not self._consuming:
            consumer = "not consuming"
        elif not self._in_group:
            consumer = f"not in group {reporter_group(self._settings)} (yet)"
        else:
            consumer = "ok"
        return {"postgres": postgres, "kafka": kafka, "consumer": consumer}

    async def metrics_text(self) -> str:
        """/metrics: this process's figures, and the state's lag as far as Kafka answers."""
        return self.metrics.render(await self._state_lag.get())

    def close_metrics(self) -> None:
        """Once nothing serves /metrics any more."""
        self._lag_reader.close()

    async def run(self) -> None:
        """Serve requests until the stop event is set."""
        stop = self._stop
        self._consumer.subscribe(
            [self._settings.topic(TOPIC_REPORT_REQUESTS)],
            on_assign=self._joined,
            on_revoke=self._left,
            on_lost=self._left,
        )
        helpers = [
            asyncio.create_task(self._housekeeping(stop)),
            asyncio.create_task(self._announcer.run(stop)),
        ]
        self._consuming = True
        try:
            while not stop.is_set():
                message = await asyncio.to_thread(self._consumer.poll, _POLL_S)
                if message is None:
                    continue
                if message.error() is not None:
                    log.warning("consuming report requests: %s", message.error())
                    continue
                try:
                    await self._handle(message)
                except DatabaseUnavailable as exc:
                    # Stopping before the outcome could be recorded: the offset stays
                    # uncommitted and the next reporter redoes the request.
                    _warn(message, "stopped before answering offset %d: %s", exc)
                    break
                await asyncio.to_thread(self._commit, message)
        finally:
            self._consuming = False
            stop.set()
            # Helpers stop at their next check; their blocking calls must end
            # before the clients they use are closed.
            await asyncio.gather(*helpers, return_exceptions=True)
            await asyncio.to_thread(self._consumer.close)
            self._newest.close()
            await self._parts_listener.close()
            await asyncio.to_thread(self._tasks.flush, 10)

    def _commit(self, message: Message) -> None:
        try:
            self._consumer.commit(message=message, asynchronous=False)
        except KafkaException as exc:
            # E.g. the partition moved to another reporter meanwhile: it redoes
            # the request, finds the report done and skips it.
            _warn(message, "could not commit report request offset %d: %s", exc)

    async def _handle(self, message: Message) -> None:
        try:
            request = ReportRequest.decode(message.value())
        except InvalidRequest as exc:
            log.warning(
                "invalid report request at offset %d: %s",
                message.offset(),
                exc.reason,
                extra=_report_context(exc.report_id),
            )
            self.metrics.reports.labels("failed").inc()
            if exc.report_id is not None:
                invalid_id, reason = exc.report_id, f"invalid request: {exc.reason}"
                await self._database(
                    lambda connection: reports_db.fail_report(connection, invalid_id, reason),
                    "recording an invalid request",
                    until_done=True,
                )
            return
        report_id = request.report_id
        try:
            row = await self._database(
                lambda connection: reports_db.start_attempt(connection, report_id),
                "starting the report",
            )
            if row is None:
                self.metrics.reports.labels("skipped").inc()
                log.info(
                    "report %s is not Running (done, failed or deleted): skipped",
                    report_id,
                    extra=_report_context(report_id),
                )
                return
            await self._make_report(request)
        except Exception as exc:
            if isinstance(exc, DatabaseUnavailable) and self._stop.is_set():
                raise  # Not a failure of the report: the next reporter redoes it.
            # If this fails for another reason than an unreachable database, the
            # error ends the process before the offset is committed, and the
            # request is redone elsewhere.
            log.exception("report %s failed", report_id, extra=_report_context(report_id))
            self.metrics.reports.labels("failed").inc()
            reason = _reason(exc)
            await self._database(
                lambda connection: reports_db.fail_report(connection, report_id, reason),
                "recording the failure",
                until_done=True,
            )

    async def _database(
        self,
        work: Callable[[asyncpg.Connection], Awaitable[T]],
        what: str,
        *,
        until_done: bool = False,
    ) -> T:
        """`work` on a pooled connection, tried again while the database cannot be reached.

        After DATABASE_RETRY's attempts, DatabaseUnavailable. With `until_done` (recording
        an outcome, without which the request's offset must not be committed), tries
        until the database answers. Either way gives up once the reporter is stopping.
        """

        async def on_a_pooled_connection() -> T:
            async with self._pool.acquire() as connection:
                return await work(connection)

        def retrying(attempt: int, pause_s: float, error: BaseException) -> None:
            log.warning(
                "database unreachable while %s (attempt %d), next try in %.1f s: %s",
                what,
                attempt,
                pause_s,
                _reason(error),
            )

        try:
            return await DATABASE_RETRY.run(
                on_a_pooled_connection,
                sleep=lambda seconds: wait_notified(self._stop, seconds),
                stopping=self._stop.is_set,
                until_done=until_done,
                on_retry=retrying,
            )
        except RetriesExhausted as exc:
            raise DatabaseUnavailable(f"{what}: {_reason(exc.last)}") from exc.last

    async def _make_report(self, request: ReportRequest) -> None:
        started = time.monotonic()
        report_id = request.report_id
        context = _report_context(report_id)
        as_of_us = request.as_of_us
        if as_of_us is None:
            as_of_us = await asyncio.to_thread(
                self._newest.newest_us, float(self._settings.report_timeout_s)
            )
        if as_of_us is None:
            # No worker has accepted a poll: the report has no rows, as the engine says.
            empty = await self._store(report_id, f"{engine.REPORT_HEADER}\n".encode())
            self._ended(empty, started)
            return
        wanted = stores_by_partition(request.store_ids, self._partitions)
        plan = await self._database(
            lambda connection: plan_report(
                connection, report_id, datetime_from_us(as_of_us), wanted
            ),
            "planning the report",
        )
        if plan is None:
            self.metrics.reports.labels("skipped").inc()
            return
        asked = plan.partitions
        await self._ask_for_parts(request, plan, wanted, set(asked))
        stored = await self._gather(
            report_id,
            plan,
            lambda missing: self._ask_for_parts(request, plan, wanted, missing),
        )
        self._ended(stored, started)
        if stored is None:
            log.info("report %s ended elsewhere meanwhile", report_id, extra=context)
        else:
            log.info(
                "report %s complete: %d parts, %d bytes, %.2f s",
                report_id,
                len(plan.partitions),
                stored.byte_size,
                time.monotonic() - started,
                extra=context,
            )

    async def _ask_for_parts(
        self,
        request: ReportRequest,
        plan: Plan,
        wanted: dict[int, tuple[str, ...] | None],
        partitions: set[int],
    ) -> None:
        """One task for each of `partitions` whose part is not stored yet."""
        progress = await self._database(
            lambda connection: report_progress(connection, request.report_id, 0),
            "reading the report's parts",
        )
        as_of_us = us_from_datetime(plan.as_of)
        for partition in sorted(partitions - progress.stored):
            task = ReportTask(request.report_id, partition, as_of_us, wanted.get(partition))
            self._tasks.produce(
                self._tasks_topic, task.encode(), request.report_id.encode(), partition=partition
            )
        undelivered = await asyncio.to_thread(self._tasks.flush, 30)
        if undelivered:
            raise RuntimeError(f"{undelivered} report tasks not delivered to Kafka in 30 s")

    async def _gather(
        self, report_id: str, plan: Plan, ask_again: Callable[[set[int]], Awaitable[None]]
    ) -> reports_db.StoredCsv | None:
        """Wait for every planned part (asking again for the late ones), then assemble the
        CSV; None if the report ended otherwise (timed out naming the missing parts,
        failed, done elsewhere)."""
        try:
            if not await self._parts_stored(report_id, plan, ask_again):
                return None
        finally:
            self.metrics.outstanding.pop(report_id, None)
        return await self._database(
            lambda connection: assemble_report(connection, report_id, engine.REPORT_HEADER),
            "assembling the report",
        )

    async def _parts_stored(
        self, report_id: str, plan: Plan, ask_again: Callable[[set[int]], Awaitable[None]]
    ) -> bool:
        """Wait until every planned part is stored (True) or the report ended (False)."""
        part_stored = self._parts_listener.watch(report_id)
        try:
            await self._parts_listener.listen()
            return await self._wait_for_parts(report_id, plan, ask_again, part_stored)
        finally:
            self._parts_listener.forget(part_stored, report_id)

    async def _wait_for_parts(
        self,
        report_id: str,
        plan: Plan,
        ask_again: Callable[[set[int]], Awaitable[None]],
        part_stored: asyncio.Event,
    ) -> bool:
        pause_s = _FIRST_PART_CHECK_S
        timeout_s = self._settings.report_timeout_s
        planned = set(plan.partitions)
        reask_s = _FIRST_REASK_S
        reask_at = time.monotonic() + reask_s
        while True:
            # Before reading: a part stored after the read wakes the wait below.
            part_stored.clear()
            progress = await self._database(
                lambda connection: report_progress(connection, report_id, timeout_s),
                "reading the report's parts",
            )
            self.metrics.outstanding[report_id] = len(planned - progress.stored)
            if not progress.running:
                return False
            if progress.stored >= planned:
                return True
            if progress.overdue:
                await self._database(
                    lambda connection: reports_db.fail_overdue(connection, timeout_s, report_id),
                    "timing the report out",
                )
                continue
            if time.monotonic() >= reask_at:
                missing = planned - progress.stored
                log.info(
                    "report %s: no part from partition(s) %s after %.0f s: asked again",
                    report_id,
                    ", ".join(map(str, sorted(missing))),
                    reask_s,
                    extra=_report_context(report_id),
                )
                self.metrics.reasked_parts.inc(len(missing))
                await ask_again(missing)
                reask_s = min(2 * reask_s, _MAX_REASK_S)
                reask_at = time.monotonic() + reask_s
            await wait_notified(self._stop, pause_s, part_stored)
            if self._stop.is_set():
                raise DatabaseUnavailable("stopping before the report's parts were in")
            pause_s = min(2 * pause_s, _MAX_PART_CHECK_S)

    async def _store(self, report_id: str, csv: bytes) -> reports_db.StoredCsv | None:
        return await self._database(
            lambda connection: reports_db.complete_report(
                connection, report_id, csv, row_count=0, as_of=None, state_offsets={}
            ),
            "storing the report",
        )

    def _ended(self, stored: reports_db.StoredCsv | None, started: float) -> None:
        """Count a report completed here (`stored`, planned at `started`) or ended elsewhere."""
        if stored is None:
            self.metrics.reports.labels("skipped").inc()
        else:
            self.metrics.reports.labels("complete").inc()
            self.metrics.durations.observe(time.monotonic() - started)

    async def _housekeeping(self, stop: asyncio.Event) -> None:
        """Time out reports stuck Running; delete reports past their retention."""
        every_s = max(1.0, min(30.0, self._settings.report_timeout_s / 5))
        while not stop.is_set():
            try:
                async with self._pool.acquire() as connection:
                    timed_out = await reports_db.fail_overdue(
                        connection, self._settings.report_timeout_s
                    )
                    deleted = await reports_db.delete_older_than(
                        connection, self._settings.report_retention_days
                    )
                for report_id in timed_out:
                    log.warning("report %s timed out", report_id, extra=_report_context(report_id))
                if deleted:
                    log.info("deleted %d reports past retention", deleted)
            except Exception as exc:
                # Housekeeping outlives any database trouble; it tries again next round.
                if not reports_db.is_database_error(exc):
                    raise
                log.warning("housekeeping: %s", _reason(exc))
            await wait_notified(stop, every_s)


def stores_by_partition(
    store_ids: tuple[str, ...] | None, partitions: int
) -> dict[int, tuple[str, ...] | None]:
    """State partition -> the stores asked for that it holds (None: all of its stores), for
    the partitions a report needs: every one, or those holding `store_ids` (murmur2 of the
    id, as producers partition it)."""
    if store_ids is None:
        return dict.fromkeys(range(partitions))
    by_partition: dict[int, list[str]] = {}
    for store_id in dict.fromkeys(store_ids):
        by_partition.setdefault(partition_of(store_id.encode(), partitions), []).append(store_id)
    return {partition: tuple(ids) for partition, ids in by_partition.items()}


def _report_context(report_id: str | bytes | None) -> dict[str, str]:
    """`extra=` of a log line about one report: its id as a field of its own, when known.

    A request's Kafka key is its report id, so a line about a request has it too.
    """
    if isinstance(report_id, bytes):
        report_id = report_id.decode(errors="replace")
    return {} if report_id is None else {"report_id": report_id}


def _warn(message: Message, text: str, error: BaseException) -> None:
    """A warning about one report request: `text` gets its offset and the error."""
    log.warning(text, message.offset(), error, extra=_report_context(message.key()))


def _reason(error: BaseException) -> str:
    text = str(error)
    return f"{type(error).__name__}: {text}" if text else type(error).__name__


async def serve(settings: Settings) -> None:
    """Run a reporter until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    # Two listening connections (parts stored, reports ended), the request being
    # answered, housekeeping and publishing report-events.
    pool = await reports_db.create_pool(settings, APPLICATION_NAME, max_size=6)
    try:
        reporter = Reporter(settings, pool, stop)
        try:
            async with AsyncExitStack() as http:
                if settings.reporter_metrics_port:
                    await http.enter_async_context(
                        serving(
                            settings.api_host,
                            settings.reporter_metrics_port,
                            reporter.metrics_text,
                            reporter.readiness_checks,
                        )
                    )
                    log.info(
                        "reporter serving /healthz, /readyz and /metrics on http://%s:%d",
                        settings.api_host,
                        settings.reporter_metrics_port,
                    )
                log.info("reporter started (group %s)", reporter_group(settings))
                await reporter.run()
        finally:
            reporter.close_metrics()
    finally:
        await pool.close()


def run_reporter(settings: Settings, loglevel: str = "info") -> None:
    configure_logging(loglevel)
    asyncio.run(serve(settings))
