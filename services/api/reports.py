"""The report routes: trigger, poll, download, list, delete."""

from __future__ import annotations

import asyncio
import csv
import json
import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import aclosing
from dataclasses import replace
from datetime import datetime
from typing import Any
from urllib.parse import urlencode

import asyncpg
from aiohttp import web

from storemon.api.body import read_body
from storemon.api.context import POOL, PRODUCER, SETTINGS, STATUS_LISTENER, STOPPING
from storemon.api.errors import ApiError
from storemon.database import notifications, reports_db, webhooks
from storemon.database.notifications import Listener, wait_notified
from storemon.database.reports_db import COMPLETE, FAILED, RUNNING, ReportRow
from storemon.inputs.values import RowError, parse_store_id, parse_timestamp
from storemon.kafka.async_producer import DeliveryError
from storemon.kafka.topics import TOPIC_REPORT_REQUESTS
from storemon.messages.report_requests import (
    ReportRequest,
    is_report_id,
    new_report_id,
    parse_as_of,
)
from storemon.timebase import datetime_from_us, format_timestamp, now_us, us_from_datetime
from storemon.uptime.engine import REPORT_COLUMNS
from storemon.webhooks import callback_problem

log = logging.getLogger("storemon.api")

#: The largest report request the API produces, encoded: the broker's default message
#: limit (message.max.bytes, about 1 MB) with room for the record's own overhead.
MAX_REQUEST_BYTES = 900_000
#: The schema's limit on store_ids (schemas/report-request.schema.json): that many ids
#: of the longest kind (128 characters, 131 bytes encoded) fit in MAX_REQUEST_BYTES.
#: Ids whose characters JSON escapes take more room: the encoded size is checked too.
MAX_STORE_IDS = 6_000
#: A Running report's stream looks at the row this often without a notification...
EVENTS_RECHECK_S = 5.0
#: ...and writes a comment line after this long without an event.
EVENTS_KEEP_ALIVE_S = 15.0
#: GET /reports/{id}/rows: rows a page, and store ids a request.
DEFAULT_ROWS_LIMIT = 100
MAX_ROWS_LIMIT = 1000
MAX_ROWS_STORE_IDS = 100
DEFAULT_LIST_LIMIT = 50
MAX_LIST_LIMIT = 1000


def _iso(moment: datetime | None) -> str | None:
    if moment is None:
        return None
    if moment.tzinfo is None:
        # asyncpg reads PostgreSQL's infinite timestamps (which rows written before
        # as_of was bounded may hold) as naive datetime.min / datetime.max.
        return "-infinity" if moment == datetime.min else "infinity"
    return format_timestamp(us_from_datetime(moment))


def _bad_request(message: str) -> ApiError:
    return ApiError(400, "bad_request", message)


# ---------------------------------------------------------------------------------------
# POST|GET /trigger_report
# ---------------------------------------------------------------------------------------


async def _requested_report(request: web.Request) -> tuple[ReportRequest, str | None]:
    """A new report's request: `as_of` and `store_ids` from a JSON body, or else from the
    query string; and its webhook's `callback_url` (None: none)."""
    if request.method != "POST" and request.body_exists:
        raise _bad_request(
            "GET /trigger_report takes no body: send the JSON body with POST /trigger_report,"
            " or as_of and store_ids in the query string"
        )
    body = await read_body(request) if request.method == "POST" else b""
    if body.strip():
        try:
            given = json.loads(body)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise _bad_request(f"the body is not JSON: {exc}") from None
        if not isinstance(given, dict):
            raise _bad_request('the body must be a JSON object {"as_of", "store_ids"}')
    else:
        given = {}
        if "as_of" in request.query:
            given["as_of"] = request.query["as_of"]
        if "store_ids" in request.query:
            given["store_ids"] = [s for s in request.query["store_ids"].split(",") if s]
        if "callback_url" in request.query:
            given["callback_url"] = request.query["callback_url"]
    unknown = sorted(set(given) - {"as_of", "store_ids", "callback_url"})
    if unknown:
        raise _bad_request(
            f"unknown parameter {unknown[0]!r}: only as_of, store_ids and callback_url"
        )
    callback_url = _callback_url(request, given.get("callback_url"))
    as_of_us = None
    if given.get("as_of") is not None:
        try:
            as_of_us = parse_as_of(given["as_of"])
        except RowError as exc:
            raise _bad_request(f"as_of: {exc.reason}") from None
    report = ReportRequest(new_report_id(), now_us(), as_of_us)
    store_ids = given.get("store_ids")
    if store_ids is not None:
        if not isinstance(store_ids, list) or not store_ids:
            raise _bad_request("store_ids must be a non-empty list of store ids")
        if len(store_ids) > MAX_STORE_IDS:
            raise _bad_request(
                f"store_ids names {len(store_ids)} stores, more than the limit of"
                f" {MAX_STORE_IDS}; request several reports, or one of every store"
            )
        try:
            report = replace(report, store_ids=tuple(parse_store_id(s) for s in store_ids))
        except RowError as exc:
            raise _bad_request(f"store_ids: {exc.reason}") from None
        size = len(report.encode())
        if size > MAX_REQUEST_BYTES:
            raise _bad_request(
                f"the request would take {size} bytes in Kafka, over the limit of"
                f" {MAX_REQUEST_BYTES}: name fewer stores"
            )
    return report, callback_url


def _callback_url(request: web.Request, given: object) -> str | None:
    """A webhook URL the deployment allows (storemon/webhooks.py), or None if none given."""
    if given is None:
        return None
    if not isinstance(given, str):
        raise _bad_request("callback_url must be a string")
    settings = request.app[SETTINGS]
    if settings.webhook_secret is None:
        raise _bad_request(
            "callback_url is not accepted: this API signs no webhooks"
            " (STOREMON_WEBHOOK_SECRET is not set)"
        )
    problem = callback_problem(given, settings.webhook_allowed_hosts)
    if problem is not None:
        raise _bad_request(f"callback_url {problem}")
    return given


async def trigger_report(request: web.Request) -> web.Response:
    """Register the report as Running, queue its request (confirmed), answer 202."""
    report, callback_url = await _requested_report(request)
    report_id, parameters = report.report_id, report.parameters()
    pool = request.app[POOL]
    async with reports_db.acquire(pool) as connection, connection.transaction():
        requested_at = await reports_db.insert_running(connection, report_id, parameters)
        if callback_url is not None:
            await webhooks.register(connection, report_id, callback_url)
    # The request carries the database's requested_at, the clock reports are timed by.
    report = replace(report, requested_at_us=us_from_datetime(requested_at))
    topic = request.app[SETTINGS].topic(TOPIC_REPORT_REQUESTS)
    try:
        await request.app[PRODUCER].produce(topic, report_id.encode(), report.encode())
    except DeliveryError as exc:
        log.error(
            "report request %s not delivered: %s", report_id, exc, extra={"report_id": report_id}
        )
        async with reports_db.acquire(pool) as connection:
            await reports_db.fail_report(connection, report_id, f"request not queued: {exc}")
        raise ApiError(
            503, "kafka_unavailable", "the report request could not be queued; try again"
        ) from None
    # One line per report (not per status poll), to follow a report across the services.
    log.info(
        "report %s requested: %s",
        report_id,
        parameters or "every store, as of the latest poll",
        extra={"report_id": report_id},
    )
    status_url = f"/get_report?report_id={report_id}"
    return web.json_response(
        {"report_id": report_id, "status": RUNNING, "status_url": status_url},
        status=202,
        headers={"Location": status_url},
    )


# ---------------------------------------------------------------------------------------
# Reading reports
# ---------------------------------------------------------------------------------------


def _checked_report_id(text: str | None) -> str:
    if not text:
        raise _bad_request("report_id is required")
    if not is_report_id(text):
        raise _bad_request("report_id must be 32 lower-case hexadecimal characters")
    return text


async def _current_report(request: web.Request, report_id: str) -> ReportRow:
    """The report's row (404 if none), timed out first if it has been Running too long."""
    async with reports_db.acquire(request.app[POOL]) as connection:
        row = await reports_db.fetch_report(connection, report_id)
        if row is None:
            raise ApiError(404, "not_found", f"no report {report_id}")
        timeout_s = request.app[SETTINGS].report_timeout_s
        if row.status == RUNNING and await reports_db.fail_overdue(
            connection, timeout_s, report_id
        ):
            row = await reports_db.fetch_report(connection, report_id)
            if row is None:  # deleted just now
                raise ApiError(404, "not_found", f"no report {report_id}")
    return row


def _download_url(request: web.Request, report_id: str) -> str:
    """Under STOREMON_PUBLIC_URL, or relative: never under the Host a client claims."""
    path = f"/reports/{report_id}.csv"
    public_url = request.app[SETTINGS].public_url
    return path if public_url is None else public_url.rstrip("/") + path


def _request_summary(asked: dict[str, Any]) -> dict[str, Any]:
    """What a report request asked for, with the number of stores named rather than
    their ids (thousands of them, repeated in every listing)."""
    summary: dict[str, Any] = {}
    if asked.get("as_of") is not None:
        summary["as_of"] = asked["as_of"]
    if isinstance(asked.get("store_ids"), list):
        summary["store_ids_count"] = len(asked["store_ids"])
    return summary


def _summary(row: ReportRow, request: web.Request) -> dict[str, Any]:
    """Everything about a report, as JSON."""
    summary: dict[str, Any] = {
        "report_id": row.report_id,
        "status": row.status,
        "requested_at": _iso(row.requested_at),
        "request": _request_summary(row.request),
        "attempts": row.attempts,
        "finished_at": _iso(row.finished_at),
    }
    if row.status == COMPLETE:
        summary |= {
            "download_url": _download_url(request, row.report_id),
            "rows": row.row_count,
            "bytes": row.byte_size,
            "checksum_sha256": row.checksum_sha256,
            "as_of": _iso(row.as_of),
            "state_offsets": row.state_offsets,
        }
    elif row.status == FAILED:
        summary["error"] = row.error
    return summary


def _prefers_json(accept: str) -> bool:
    """Whether an Accept header ranks application/json above text/csv (the default)."""
    quality = {"application/json": 0.0, "text/csv": 0.0}
    for media_range in accept.split(","):
        media_type, *parameters = (part.strip() for part in media_range.split(";"))
        if media_type.lower() not in quality:
            continue
        q = 1.0
        for parameter in parameters:
            name, _, value = parameter.partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        quality[media_type.lower()] = max(quality[media_type.lower()], q)
    return quality["application/json"] > quality["text/csv"]


async def get_report(request: web.Request) -> web.StreamResponse:
    """Running / Failed: the status as JSON; Complete: the CSV, or JSON if asked for."""
    report_id = _checked_report_id(request.query.get("report_id"))
    row = await _current_report(request, report_id)
    if row.status != COMPLETE or _prefers_json(request.headers.get("Accept", "")):
        return web.json_response(await _status(row, request))
    return await _stream_csv(request, row)


async def _status(row: ReportRow, request: web.Request) -> dict[str, Any]:
    """A report's status as GET /get_report answers it in JSON (and its events carry),
    with its webhook's attempts when it has one."""
    if row.status == RUNNING:
        status: dict[str, Any] = {"report_id": row.report_id, "status": RUNNING}
    elif row.status == FAILED:
        status = {"report_id": row.report_id, "status": FAILED, "error": row.error}
    else:
        status = _summary(row, request)
    async with reports_db.acquire(request.app[POOL]) as connection:
        hook = await webhooks.of_report(connection, row.report_id)
    if hook is not None:
        status["webhook"] = {
            "url": hook.url,
            "attempts": hook.attempts,
            "delivered_at": _iso(hook.delivered_at),
            "given_up_at": _iso(hook.given_up_at),
        }
    return status


async def report_events(request: web.Request) -> web.StreamResponse:
    """GET /reports/{id}/events: the report's status as Server-Sent Events (`event:
    status`, the JSON of GET /get_report): at once, on every change, and the stream ends
    with the report (Complete or Failed). A change is noticed by the database's NOTIFY,
    or at the latest at the next look; a comment line keeps idle connections open."""
    report_id = _checked_report_id(request.match_info["report_id"])
    row = await _current_report(request, report_id)
    response = web.StreamResponse(
        headers={
            "Content-Type": "text/event-stream",
            "Cache-Control": "no-cache",
            "X-Accel-Buffering": "no",  # a proxy must not hold the events back
        }
    )
    await response.prepare(request)
    listener = request.app[STATUS_LISTENER]
    changed = listener.watch(report_id)
    loop = asyncio.get_running_loop()
    try:
        await listener.listen()
        last: dict[str, Any] | None = None
        quiet_since = loop.time()
        while True:
            changed.clear()
            status = await _status(row, request)
            if status != last:
                await response.write(_server_sent("status", status))
                last, quiet_since = status, loop.time()
            if row.status != RUNNING:
                break
            await wait_notified(request.app[STOPPING], EVENTS_RECHECK_S, changed)
            if request.app[STOPPING].is_set():
                break
            if loop.time() - quiet_since >= EVENTS_KEEP_ALIVE_S:
                await response.write(b": keep-alive\n\n")
                quiet_since = loop.time()
            try:
                row = await _current_report(request, report_id)
            except ApiError as error:  # deleted meanwhile
                failure = {"error": {"code": error.code, "message": error.message}}
                await response.write(_server_sent("error", failure))
                break
    finally:
        listener.forget(changed, report_id)
    await response.write_eof()
    return response


def _server_sent(event: str, data: dict[str, Any]) -> bytes:
    return f"event: {event}\ndata: {json.dumps(data)}\n\n".encode()


async def download_csv(request: web.Request) -> web.StreamResponse:
    report_id = _checked_report_id(request.match_info["report_id"])
    row = await _current_report(request, report_id)
    if row.status == RUNNING:
        raise ApiError(409, "not_ready", f"report {report_id} is still Running")
    if row.status == FAILED:
        raise ApiError(409, "report_failed", f"report {report_id} failed: {row.error}")
    return await _stream_csv(request, row)


async def _stream_csv(request: web.Request, row: ReportRow) -> web.StreamResponse:
    """The CSV from its large object, a chunk at a time."""
    assert row.lo_oid is not None and row.byte_size is not None  # Complete rows have them
    etag = f'"{row.checksum_sha256}"'
    headers = {
        "Content-Type": "text/csv; charset=utf-8",
        "Content-Disposition": f'attachment; filename="storemon-report-{row.report_id}.csv"',
        "ETag": etag,
        "X-Report-Status": COMPLETE,
        # The CSV of a report id never changes.
        "Cache-Control": "private, max-age=31536000, immutable",
    }
    if any(tag.value == row.checksum_sha256 for tag in request.if_none_match or ()):
        return web.Response(status=304, headers={"ETag": etag})
    response = web.StreamResponse(headers=headers)
    response.content_length = row.byte_size
    if request.method == "HEAD":
        await response.prepare(request)
        return response
    chunks = reports_db.large_object_chunks(request.app[POOL], row.lo_oid, row.byte_size)
    async with aclosing(chunks):
        try:
            first = await anext(chunks, b"")
        except asyncpg.UndefinedObjectError:
            raise ApiError(404, "not_found", f"report {row.report_id} was deleted") from None
        await response.prepare(request)
        try:
            await response.write(first)
            async for chunk in chunks:
                await response.write(chunk)
        except (asyncpg.PostgresError, OSError) as exc:
            # The headers are out: all that is left is to end the answer short of
            # its Content-Length, which the client sees as an incomplete download.
            # So it goes when the report is deleted meanwhile, the database cannot
            # be reached, or the client went away.
            log.warning(
                "streaming report %s stopped: %s",
                row.report_id,
                exc,
                extra={"report_id": row.report_id},
            )
            if request.transport is not None:
                request.transport.close()
            return response
    await response.write_eof()
    return response


async def list_reports(request: web.Request) -> web.Response:
    """Reports, newest first, a page at a time: `?limit=` (default 50, at most 1000),
    `?status=` (Running, Complete, Failed), `?since=` (requested at or after), and the
    `cursor` of the previous page's `next`."""
    query = request.query
    unknown = sorted(set(query) - {"limit", "status", "since", "cursor"})
    if unknown:
        raise _bad_request(f"unknown parameter {unknown[0]!r}: only limit, status, since, cursor")
    limit = _limit(query, DEFAULT_LIST_LIMIT, MAX_LIST_LIMIT)
    status = query.get("status")
    if status is not None and status not in (RUNNING, COMPLETE, FAILED):
        raise _bad_request(f"status must be one of {RUNNING}, {COMPLETE}, {FAILED}")
    since = None
    if "since" in query:
        try:
            since = datetime_from_us(parse_timestamp(query["since"]))
        except RowError as exc:
            raise _bad_request(f"since: {exc.reason}") from None
    before = _cursor(query["cursor"]) if "cursor" in query else None
    async with reports_db.acquire(request.app[POOL]) as connection:
        await reports_db.fail_overdue(connection, request.app[SETTINGS].report_timeout_s)
        rows = await reports_db.list_reports(
            connection, limit, status=status, since=since, before=before
        )
    following = None
    if len(rows) == limit:
        last = rows[-1]
        cursor = f"{us_from_datetime(last.requested_at)}.{last.report_id}"
        kept = {name: query[name] for name in ("limit", "status", "since") if name in query}
        following = f"/reports?{urlencode({**kept, 'cursor': cursor})}"
    return web.json_response(
        {"reports": [_summary(row, request) for row in rows], "next": following}
    )


def _limit(query: Mapping[str, str], default: int, maximum: int) -> int:
    """`?limit=`: an integer from 1 to `maximum`, `default` when not given."""
    try:
        limit = int(query.get("limit", default))
    except ValueError:
        raise _bad_request("limit must be an integer") from None
    if not 1 <= limit <= maximum:
        raise _bad_request(f"limit must be between 1 and {maximum}")
    return limit


def _cursor(text: str) -> tuple[datetime, str]:
    """(requested_at, report_id) of the last report of a page, from its `cursor`."""
    micros, _, report_id = text.partition(".")
    if not (micros.isdigit() and is_report_id(report_id)):
        raise _bad_request("cursor is not one this API gave (take it from `next`)")
    return datetime_from_us(int(micros)), report_id


async def report_rows(request: web.Request) -> web.Response:
    """GET /reports/{id}/rows: a Complete report's rows as JSON, read from its stored CSV
    a chunk at a time (never whole): those of `?store_id=` (repeatable), or a page of
    `?limit=` rows (default 100, at most 1000) after the store_id `?after=`."""
    report_id = _checked_report_id(request.match_info["report_id"])
    query = request.query
    unknown = sorted(set(query) - {"store_id", "after", "limit"})
    if unknown:
        raise _bad_request(f"unknown parameter {unknown[0]!r}: only store_id, after, limit")
    wanted = set()
    for raw in query.getall("store_id", []):
        try:
            wanted.add(parse_store_id(raw))
        except RowError as exc:
            raise _bad_request(f"store_id: {exc.reason}") from None
    if len(wanted) > MAX_ROWS_STORE_IDS:
        raise _bad_request(f"at most {MAX_ROWS_STORE_IDS} store_id a request")
    if wanted and ("after" in query or "limit" in query):
        raise _bad_request("store_id is not paged: give it without after and limit")
    limit = _limit(query, DEFAULT_ROWS_LIMIT, MAX_ROWS_LIMIT)
    after = query.get("after")
    row = await _current_report(request, report_id)
    if row.status != COMPLETE:
        raise ApiError(409, "not_ready", f"report {report_id} is {row.status}, not Complete")
    found: list[dict[str, Any]] = []
    async for cells in _csv_rows(request, row):
        store_id = cells[0]
        if wanted:
            if store_id in wanted:
                found.append(_row_json(cells))
                if len(found) == len(wanted):
                    break
        elif after is None or store_id > after:  # the CSV is in store_id (code point) order
            found.append(_row_json(cells))
            if len(found) > limit:
                break
    following = None
    if not wanted and len(found) > limit:
        found = found[:limit]
        following = (
            f"/reports/{report_id}/rows?"
            f"{urlencode({'after': found[-1]['store_id'], 'limit': limit})}"
        )
    return web.json_response({"report_id": report_id, "rows": found, "next": following})


def _row_json(cells: list[str]) -> dict[str, Any]:
    return {
        REPORT_COLUMNS[0]: cells[0],
        **{column: float(cell) for column, cell in zip(REPORT_COLUMNS[1:], cells[1:], strict=True)},
    }


async def _csv_rows(request: web.Request, row: ReportRow) -> AsyncIterator[list[str]]:
    """The stored CSV's rows (header left out), parsed, one large-object chunk at a time."""
    assert row.lo_oid is not None and row.byte_size is not None  # Complete rows have them
    chunks = reports_db.large_object_chunks(request.app[POOL], row.lo_oid, row.byte_size)
    pending = b""
    header = True
    try:
        async with aclosing(chunks):
            async for chunk in chunks:
                *lines, pending = (pending + chunk).split(b"\n")
                for cells in csv.reader(line.decode() for line in lines):
                    if header:
                        header = False
                        continue
                    yield cells
    except asyncpg.UndefinedObjectError:
        raise ApiError(404, "not_found", f"report {row.report_id} was deleted") from None


async def delete_report(request: web.Request) -> web.Response:
    """Delete the report and unlink its CSV."""
    report_id = _checked_report_id(request.match_info["report_id"])
    async with reports_db.acquire(request.app[POOL]) as connection:
        if not await reports_db.delete_report(connection, report_id):
            raise ApiError(404, "not_found", f"no report {report_id}")
    return web.Response(status=204)


async def _listening(app: web.Application) -> AsyncIterator[None]:
    """What GET /reports/{id}/events waits on: the status channel, and the API stopping
    (open streams end rather than hold the shutdown up)."""
    app[STATUS_LISTENER] = Listener(app[POOL], notifications.STATUS, app[SETTINGS].db_schema)
    app[STOPPING] = asyncio.Event()
    yield
    await app[STATUS_LISTENER].close()


async def _stopping(app: web.Application) -> None:
    app[STOPPING].set()


def add_routes(app: web.Application) -> None:
    app.cleanup_ctx.append(_listening)
    app.on_shutdown.append(_stopping)
    app.router.add_get("/reports/{report_id}/events", report_events)
    app.router.add_get("/reports/{report_id}/rows", report_rows)
    app.router.add_post("/trigger_report", trigger_report)
    app.router.add_get("/trigger_report", trigger_report, allow_head=False)
    app.router.add_get("/get_report", get_report)
    app.router.add_get("/reports", list_reports)
    app.router.add_get("/reports/{report_id}.csv", download_csv)
    app.router.add_delete("/reports/{report_id}", delete_report)
