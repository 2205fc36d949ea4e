"""Report ids announced on a PostgreSQL channel (LISTEN/NOTIFY), per deployment schema.

Two channels: a part of a report stored (`PARTS`, wakes the reporter gathering it), and
a report's status changed (`STATUS`, a trigger on `reports`, whatever ended it: wakes
the reporter that publishes `report-events` and the API's Server-Sent Events streams).
A notification is only a shortcut: whoever waits also looks every so often, so one
lost with a broken connection costs time, never a report.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

import asyncpg

from storemon.database.reports_db import is_database_error

log = logging.getLogger(__name__)

#: Channel prefixes; the schema's name completes them (one deployment per schema).
PARTS = "storemon_parts_"
STATUS = "storemon_reports_"
#: How long to wait for a connection to listen on.
LISTEN_TIMEOUT_S = 5.0


@dataclass
class Listener:
    """Events set when a watched report id is announced on `prefix + schema`."""

    pool: asyncpg.Pool
    prefix: str
    schema: str
    _connection: asyncpg.pool.PoolConnectionProxy | None = None
    _events: dict[str, set[asyncio.Event]] = field(default_factory=dict)
    _any: set[asyncio.Event] = field(default_factory=set)

    async def listen(self) -> None:
        """Listen on a connection of the pool, unless listening already; a failure is
        logged, not raised (the next call tries again)."""
        if self._connection is not None and not self._connection.is_closed():
            return
        await self.close()
        try:
            connection = await self.pool.acquire(timeout=LISTEN_TIMEOUT_S)
            try:
                await connection.add_listener(self.prefix + self.schema, self._notified)
            except BaseException:
                await self.pool.release(connection)
                raise
        except Exception as exc:  # a timeout is an OSError too
            if not is_database_error(exc):
                raise
            log.warning("cannot listen on %s (looking instead): %s", self.prefix, exc)
            return
        self._connection = connection

    def _notified(self, connection: object, pid: int, channel: str, report_id: str) -> None:
        for event in (*self._events.get(report_id, ()), *self._any):
            event.set()

    def watch(self, report_id: str | None = None) -> asyncio.Event:
        """An event set whenever `report_id` (None: any report) is announced from now on
        (clear it to rearm); `forget` it when done."""
        event = asyncio.Event()
        if report_id is None:
            self._any.add(event)
        else:
            self._events.setdefault(report_id, set()).add(event)
        return event

    def forget(self, event: asyncio.Event, report_id: str | None = None) -> None:
        if report_id is None:
            self._any.discard(event)
            return
        watching = self._events.get(report_id)
        if watching is not None:
            watching.discard(event)
            if not watching:
                del self._events[report_id]

    async def close(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            try:
                if not connection.is_closed():
                    await connection.remove_listener(self.prefix + self.schema, self._notified)
                await self.pool.release(connection)
            except Exception as exc:  # a broken connection: the pool replaces it
                if not is_database_error(exc):
                    raise


async def wait_notified(stop: asyncio.Event, seconds: float, *also: asyncio.Event) -> None:
    """Until `stop` or one of `also` (e.g. watched notifications) is set, or `seconds` have
    passed: the wait of a loop that looks every so often and sooner when told to."""
    waits = [asyncio.ensure_future(event.wait()) for event in (stop, *also)]
    try:
        await asyncio.wait(waits, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for wait in waits:
            wait.cancel()


async def drain_when_notified(
    listener: Listener,
    stop: asyncio.Event,
    every_s: float,
    work: Callable[[], Awaitable[int]],
    batch: int,
    what: str,
    tolerated: tuple[type[Exception], ...] = (),
) -> None:
    """Until `stop`: whenever `listener` announces any report, or `every_s` passed, run
    `work` (one batch; returns how many it did) until a batch is not full. Database
    trouble, and `tolerated` errors, are logged as `what` and tried again next time."""
    announced = listener.watch()
    try:
        while not stop.is_set():
            await listener.listen()
            announced.clear()
            try:
                while await work() == batch:
                    pass
            except Exception as exc:
                if not (is_database_error(exc) or isinstance(exc, tolerated)):
                    raise
                log.warning("%s: %s; tried again shortly", what, exc)
            await wait_notified(stop, every_s, announced)
    finally:
        listener.forget(announced)
