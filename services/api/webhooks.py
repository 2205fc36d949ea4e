"""The API's webhook sender: a report's ending POSTed, signed, to its callback_url.

Any API replica may send any webhook: each leases the due ones in PostgreSQL
(storemon/database/webhooks.py), posts them, and records every attempt with the
report. A failed attempt (no answer, or not 2xx; redirects are not followed: they
could lead anywhere) is tried again after 1, 2, 4, ... up to 60 seconds, until
STOREMON_WEBHOOK_RETRY_S after the report ended; then it is given up. The sender
looks when a report's status changes (the status channel) and every second for
retries that fell due.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta

import aiohttp
from aiohttp import web

from storemon.api.context import POOL, SETTINGS, STATUS_LISTENER, STOPPING
from storemon.database import reports_db, webhooks
from storemon.database.notifications import drain_when_notified
from storemon.database.reports_db import ReportRow
from storemon.messages.report_events import encode_event
from storemon.timebase import format_timestamp, now_us
from storemon.webhooks import SIGNATURE_HEADER, retry_pause_s, sign

log = logging.getLogger("storemon.api")

#: Webhooks leased and posted at a time, and for how long a lease keeps them.
BATCH = 20
LEASE_S = 30.0
#: A receiver must answer within this long.
POST_TIMEOUT_S = 10.0
#: Due retries are looked for this often.
LOOK_EVERY_S = 1.0


class WebhookSender:
    def __init__(self, app: web.Application, session: aiohttp.ClientSession) -> None:
        self._app = app
        self._session = session
        settings = app[SETTINGS]
        assert settings.webhook_secret is not None
        self._secret = settings.webhook_secret
        self._retry_s = settings.webhook_retry_s

    async def run(self) -> None:
        await drain_when_notified(
            self._app[STATUS_LISTENER], self._app[STOPPING], LOOK_EVERY_S, self.send_due,
            BATCH, "webhooks",
        )

    async def send_due(self) -> int:
        """Post the webhooks due now; how many."""
        async with reports_db.acquire(self._app[POOL]) as connection:
            due = await webhooks.lease_due(connection, BATCH, LEASE_S)
        await asyncio.gather(*(self._attempt(row, hook) for row, hook in due))
        return len(due)

    async def _attempt(self, row: ReportRow, hook: webhooks.Webhook) -> None:
        body = encode_event(row)
        headers = {
            "Content-Type": "application/json",
            SIGNATURE_HEADER: sign(self._secret, body),
            "X-Storemon-Report-Id": row.report_id,
        }
        attempt: dict[str, object] = {"at": format_timestamp(now_us())}
        try:
            async with self._session.post(
                hook.url, data=body, headers=headers, allow_redirects=False,
                timeout=aiohttp.ClientTimeout(total=POST_TIMEOUT_S),
            ) as response:
                attempt["status"] = response.status
                delivered = 200 <= response.status < 300
        except (aiohttp.ClientError, TimeoutError) as exc:
            attempt["error"] = str(exc) or type(exc).__name__
            delivered = False
        next_in_s = None
        if not delivered:
            pause_s = retry_pause_s(len(hook.attempts) + 1)
            assert row.finished_at is not None  # an ended report's
            give_up_at = row.finished_at + timedelta(seconds=self._retry_s)
            if datetime.now(UTC) + timedelta(seconds=pause_s) <= give_up_at:
                next_in_s = pause_s
        async with reports_db.acquire(self._app[POOL]) as connection:
            await webhooks.record_attempt(
                connection, row.report_id, attempt, delivered=delivered, next_in_s=next_in_s
            )
        outcome = "delivered" if delivered else (
            f"to be tried again in {next_in_s:g} s" if next_in_s else "given up"
        )
        log.info("webhook of report %s to %s: %s, %s", row.report_id, hook.url, attempt,
                 outcome, extra={"report_id": row.report_id})


async def sending(app: web.Application) -> AsyncIterator[None]:
    """The sender runs while the application does, where a webhook secret is set."""
    if app[SETTINGS].webhook_secret is None:
        yield
        return
    async with aiohttp.ClientSession() as session:
        task = asyncio.create_task(WebhookSender(app, session).run())
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
