"""Publishing `report-events`: every report the database shows ended, at least once.

The database is the source of truth, the topic follows it (a transactional outbox):
a reporter takes the ended reports not yet published, locked (`FOR UPDATE SKIP
LOCKED`: reporters publishing at once never take the same one), produces one event
each, waits until the broker confirmed them all, then marks them published, in that
one transaction. An event therefore never precedes its row; a crash after producing
and before the commit leaves them unpublished, so they go out again (consumers take
`report_id` as the idempotency key). It looks when a report's status changes (the
`reports` trigger's NOTIFY, whoever ended it) and every few seconds anyway.
"""

from __future__ import annotations

import asyncio
import logging

import asyncpg
from confluent_kafka import KafkaError, Message, Producer

from storemon.config import Settings
from storemon.database import notifications, reports_db
from storemon.database.notifications import Listener, drain_when_notified
from storemon.kafka.topics import TOPIC_REPORT_EVENTS
from storemon.messages.report_events import encode_event

log = logging.getLogger(__name__)

#: Looked at this often even without a notification (one lost with a connection).
ANNOUNCE_EVERY_S = 5.0
#: Events produced, then confirmed, then marked, at a time.
BATCH = 500
#: The broker must confirm a batch within this long, or it is published again later.
DELIVERY_TIMEOUT_S = 30.0


class NotDelivered(Exception):
    """The broker did not confirm every event of a batch: none is marked published."""


class Announcer:
    def __init__(self, settings: Settings, pool: asyncpg.Pool, producer: Producer) -> None:
        self._pool = pool
        self._producer = producer
        self._topic = settings.topic(TOPIC_REPORT_EVENTS)
        self._listener = Listener(pool, notifications.STATUS, settings.db_schema)
        #: Events confirmed by the broker (a report published twice counts twice).
        self.published = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set; database or broker trouble is tried again."""
        try:
            await drain_when_notified(
                self._listener, stop, ANNOUNCE_EVERY_S, self.publish_pending, BATCH,
                "report-events", tolerated=(NotDelivered,),
            )
        finally:
            await self._listener.close()

    async def publish_pending(self) -> int:
        """Publish one batch of ended, unpublished reports; how many."""
        async with reports_db.acquire(self._pool) as connection, connection.transaction():
            rows = await reports_db.ended_unannounced(connection, BATCH)
            if not rows:
                return 0
            failures: list[KafkaError] = []

            def delivered(error: KafkaError | None, message: Message) -> None:
                if error is not None:
                    failures.append(error)

            for row in rows:
                self._producer.produce(
                    self._topic, key=row.report_id.encode(), value=encode_event(row),
                    on_delivery=delivered,
                )
            left = await asyncio.to_thread(self._producer.flush, DELIVERY_TIMEOUT_S)
            if left or failures:
                reason = failures[0].str() if failures else f"{left} not confirmed in time"
                raise NotDelivered(f"{len(rows)} events: {reason}")
            await reports_db.mark_announced(connection, [row.report_id for row in rows])
        self.published += len(rows)
        for row in rows:
            log.info("report %s %s: published on %s", row.report_id, row.status, self._topic,
                     extra={"report_id": row.report_id})
        return len(rows)
