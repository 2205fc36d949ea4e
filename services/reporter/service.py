"""`storemon reporter`: turns report requests into CSV reports stored in PostgreSQL.

One reporter process:

- consumes `report-requests` in the reporter consumer group; several reporters
  share its partitions;
- follows the workers' state (their table changelogs) with one StateReader for
  its whole life, so a report's snapshot only reads what is new since the last
  read (`catch_up()`), never the raw `store-status` topic;
- computes the report with the shared engine and stores the CSV as a large
  object, marking the report Complete in the same transaction; only then is the
  request's offset committed, so a reporter that dies mid-report leaves the
  request to whichever reporter gets its partition next. Redoing is harmless:
  a report that is no longer Running is skipped;
- retries database work while PostgreSQL cannot be reached, with exponential
  backoff, for about 25 seconds; beyond that the report is marked Failed
  (with the reason) as soon as the database answers again, and only then is the
  request's offset committed;
- every so often marks Failed the reports Running for longer than
  STOREMON_REPORT_TIMEOUT_S, and deletes the reports (and CSVs) older than
  STOREMON_REPORT_RETENTION_DAYS.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from collections.abc import Awaitable, Callable
from contextlib import AsyncExitStack
from typing import TypeVar

import asyncpg
from confluent_kafka import Consumer, KafkaException, Message

from storemon.config import Settings
from storemon.database import reports_db
from storemon.database.retry import RetriesExhausted, RetryPolicy
from storemon.kafka.clients import consumer_config
from storemon.kafka.topics import TOPIC_REPORT_REQUESTS, reporter_group
from storemon.messages.report_requests import InvalidRequest, ReportRequest
from storemon.observability.logs import configure_logging
from storemon.reporter.metrics import ReporterMetrics, serving
from storemon.reporter.snapshot import SnapshotBuilder
from storemon.state.reader import StateReader
from storemon.timebase import datetime_from_us
from storemon.uptime import engine

log = logging.getLogger("storemon.reporter")

APPLICATION_NAME = "storemon-reporter"
#: How long one consumer poll waits for a request (and so how soon a stop is noticed).
_POLL_S = 0.5
#: Pause between two reads of the state changelogs while no report is being made.
_FOLLOW_STATE_EVERY_S = 1.0
#: Database work that cannot reach the server is tried 7 times, pausing 0.5 s, then
#: twice as long each time up to 8 s (about 25 s in all) before the report is given up.
DATABASE_RETRY = RetryPolicy(is_transient=reports_db.is_unavailable)

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
        self._state = StateReader(settings)
        self.metrics = ReporterMetrics(self._state.skipped)
        # The reader is not thread-safe: one catch-up (or snapshot) at a time.
        self._state_lock = asyncio.Lock()
        self._snapshots = SnapshotBuilder()
        self._consumer = Consumer(_consumer_config(settings))

    async def run(self) -> None:
        """Serve requests until the stop event is set."""
        stop = self._stop
        # Read the whole state before joining the group, so that requests go to
        # reporters ready to answer them rather than to one still reading.
        started = time.monotonic()
        await asyncio.to_thread(self._state.catch_up, float(self._settings.report_timeout_s))
        log.info(
            "state read: %d polls of %d stores in %.1f s",
            self._state.view.poll_count(),
            len(self._state.view.poll_days),
            time.monotonic() - started,
        )
        self._consumer.subscribe([self._settings.topic(TOPIC_REPORT_REQUESTS)])
        helpers = [
            asyncio.create_task(self._follow_state(stop)),
            asyncio.create_task(self._housekeeping(stop)),
        ]
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
            stop.set()
            # Helpers stop at their next check; their blocking calls must end
            # before the clients they use are closed.
            await asyncio.gather(*helpers, return_exceptions=True)
            await asyncio.to_thread(self._consumer.close)
            self._state.close()

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
            self.metrics.reports["failed"] += 1
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
                self.metrics.reports["skipped"] += 1
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
            self.metrics.reports["failed"] += 1
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
                sleep=lambda seconds: _wait(self._stop, seconds),
                stopping=self._stop.is_set,
                until_done=until_done,
                on_retry=retrying,
            )
        except RetriesExhausted as exc:
            raise DatabaseUnavailable(f"{what}: {_reason(exc.last)}") from exc.last

    async def _make_report(self, request: ReportRequest) -> None:
        started = time.monotonic()
        async with self._state_lock:
            offsets = await asyncio.to_thread(
                self._state.catch_up, float(self._settings.report_timeout_s)
            )
            inputs = await asyncio.to_thread(self._snapshots.build, self._state.view)
        snapshot_s = time.monotonic() - started
        report = await asyncio.to_thread(
            engine.compute, *inputs, as_of=request.as_of_us, store_ids=request.store_ids
        )
        csv = await asyncio.to_thread(report.to_csv_bytes)
        as_of = None if report.as_of_us is None else datetime_from_us(report.as_of_us)
        stored = await self._database(
            lambda connection: reports_db.complete_report(
                connection,
                request.report_id,
                csv,
                row_count=len(report),
                as_of=as_of,
                state_offsets=offsets,
            ),
            "storing the report",
        )
        context = _report_context(request.report_id)
        self.metrics.reports["skipped" if stored is None else "complete"] += 1
        if stored is None:
            log.info(
                "report %s finished elsewhere meanwhile: result dropped",
                request.report_id,
                extra=context,
            )
        else:
            log.info(
                "report %s complete: %d stores, %d bytes, snapshot %.2f s, total %.2f s",
                request.report_id,
                len(report),
                stored.byte_size,
                snapshot_s,
                time.monotonic() - started,
                extra=context,
            )

    async def _follow_state(self, stop: asyncio.Event) -> None:
        """Keep reading the changelogs, so a report's catch-up has little left to read."""
        while not stop.is_set():
            try:
                async with self._state_lock:
                    await asyncio.to_thread(
                        self._state.catch_up, float(self._settings.report_timeout_s)
                    )
            except (TimeoutError, KafkaException, RuntimeError) as exc:
                log.warning("following the workers' state: %s", exc)
            except Exception:
                # Never end without a word: the next report's catch-up meets it again.
                log.exception("following the workers' state failed")
            await _wait(stop, _FOLLOW_STATE_EVERY_S)

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
            await _wait(stop, every_s)


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


async def _wait(stop: asyncio.Event, seconds: float) -> None:
    try:
        await asyncio.wait_for(stop.wait(), seconds)
    except TimeoutError:
        pass


async def serve(settings: Settings) -> None:
    """Run a reporter until SIGINT or SIGTERM."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(signal_number, stop.set)
    pool = await reports_db.create_pool(settings, APPLICATION_NAME, max_size=4)
    try:
        reporter = Reporter(settings, pool, stop)
        async with AsyncExitStack() as serving_metrics:
            if settings.reporter_metrics_port:
                await serving_metrics.enter_async_context(
                    serving(reporter.metrics, settings.api_host, settings.reporter_metrics_port)
                )
            log.info("reporter started (group %s)", reporter_group(settings))
            await reporter.run()
    finally:
        await pool.close()


def run_reporter(settings: Settings, loglevel: str = "info") -> None:
    configure_logging(loglevel)
    asyncio.run(serve(settings))
