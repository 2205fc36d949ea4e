"""`POST /events`: status observations over HTTP, as a JSON array, NDJSON or CSV.

Every row is judged by the same rules as every other way in
(storemon.events.observation_from_record). Valid rows go to `store-status`
keyed by store_id; invalid rows go to the dead-letter topic and are answered
with their index, line and reason. The answer comes only once the broker has
confirmed every record; if it did not, the answer is 503 and the client sends
the batch again (replaying observations changes nothing).
"""

from __future__ import annotations

import asyncio
import csv
import hmac
import json
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from storemon import config, events
from storemon.api.body import read_body
from storemon.api.context import METRICS, PRODUCER, SETTINGS
from storemon.api.errors import ApiError
from storemon.inputs import Observation, RowError

#: The answer lists at most this many rejected rows (all are counted and dead-lettered).
MAX_ERRORS_LISTED = 1000
CSV_COLUMNS = frozenset({"store_id", "timestamp_utc", "status"})
JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
CSV_TYPES = frozenset({"text/csv"})
#: What the dead-letter records name as their source.
DLQ_SOURCE = "http"


@dataclass(frozen=True)
class BodyRow:
    """One record of the body: its position, its text, and its fields or why it has none."""

    index: int
    #: Line in the body (NDJSON, CSV); None for a JSON array.
    line: int | None
    raw: str
    fields: dict[str, Any] | RowError


def _check_token(request: web.Request) -> None:
    token = request.app[SETTINGS].ingest_token
    if token is None:
        return
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip(), token):
        raise ApiError(
            401,
            "unauthorized",
            "POST /events needs the header 'Authorization: Bearer <STOREMON_INGEST_TOKEN>'",
            headers={"WWW-Authenticate": 'Bearer realm="storemon"'},
        )


def _object_row(index: int, line: int | None, raw: str, value: Any) -> BodyRow:
    if isinstance(value, dict):
        return BodyRow(index, line, raw, value)
    return BodyRow(index, line, raw, RowError("(record)", "must be a JSON object"))


def _json_rows(text: str) -> Iterator[BodyRow]:
    try:
        values = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ApiError(400, "bad_request", f"the body is not JSON: {exc}") from None
    if not isinstance(values, list):
        raise ApiError(400, "bad_request", "the body must be a JSON array of observations")
    for index, value in enumerate(values):
        yield _object_row(index, None, json.dumps(value, separators=(",", ":")), value)


def _non_blank_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(text.splitlines(), start=1):
        if line.strip():
            yield number, line


def _ndjson_rows(text: str) -> Iterator[BodyRow]:
    for index, (number, line) in enumerate(_non_blank_lines(text)):
        try:
            value = json.loads(line)
        except json.JSONDecodeError as exc:
            yield BodyRow(index, number, line, RowError("(record)", f"not JSON: {exc}"))
        else:
            yield _object_row(index, number, line, value)


def _csv_rows(text: str) -> Iterator[BodyRow]:
    # One record per line: no field of an observation can hold a line break.
    lines = _non_blank_lines(text)
    _, header_line = next(lines, (0, ""))
    header = next(csv.reader([header_line]), [])
    if sorted(header) != sorted(CSV_COLUMNS):
        raise ApiError(
            400,
            "bad_request",
            f"the CSV header must name the columns store_id, timestamp_utc and status; "
            f"got {header_line[:200]!r}",
        )
    for index, (number, line) in enumerate(lines):
        cells = next(csv.reader([line]))
        if len(cells) == len(header):
            yield BodyRow(index, number, line, dict(zip(header, cells, strict=True)))
        else:
            error = RowError("(row)", f"has {len(cells)} cells, the header {len(header)}")
            yield BodyRow(index, number, line, error)


def _body_rows(request: web.Request, body: bytes) -> Iterator[BodyRow]:
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_request", f"the body is not UTF-8: {exc}") from None
    content_type = request.content_type.lower()
    if content_type in JSON_TYPES:
        return _json_rows(text)
    if content_type in NDJSON_TYPES:
        return _ndjson_rows(text)
    if content_type in CSV_TYPES:
        return _csv_rows(text)
    raise ApiError(
        415,
        "unsupported_media_type",
        "Content-Type must be application/json (an array), application/x-ndjson or text/csv",
    )


def _observation(row: BodyRow, received_at_us: int) -> Observation:
    if isinstance(row.fields, RowError):
        raise row.fields
    return events.observation_from_record(row.fields, received_at_us)


async def post_events(request: web.Request) -> web.Response:
    _check_token(request)
    body = await read_body(request)
    settings = request.app[SETTINGS]
    producer = request.app[PRODUCER]
    status_topic = settings.topic(config.TOPIC_STATUS)
    dlq_topic = settings.topic(config.TOPIC_STATUS_DLQ)
    received_at = events.now_us()
    deliveries = []
    accepted = 0
    rejected: list[dict[str, Any]] = []
    for row in _body_rows(request, body):
        try:
            observation = _observation(row, received_at)
        except RowError as exc:
            rejected.append(
                {"index": row.index, "line": row.line, "field": exc.field, "reason": exc.reason}
            )
            value = events.dlq_record(DLQ_SOURCE, row.index, exc.field, exc.reason, row.raw)
            deliveries.append(await producer.produce_later(dlq_topic, None, value))
        else:
            accepted += 1
            deliveries.append(
                await producer.produce_later(
                    status_topic,
                    observation.store_id.encode(),
                    events.encode_observation(observation),
                )
            )
    outcomes = await asyncio.gather(*deliveries, return_exceptions=True)
    failures = [outcome for outcome in outcomes if isinstance(outcome, BaseException)]
    if failures:
        raise ApiError(
            503,
            "kafka_unavailable",
            f"{len(failures)} of {len(deliveries)} records were not confirmed by the broker "
            f"({failures[0]}); send the request again (replayed observations change nothing)",
        )
    metrics = request.app[METRICS]
    metrics.events["accepted"] += accepted
    metrics.events["rejected"] += len(rejected)
    return web.json_response(
        {
            "accepted": accepted,
            "rejected": len(rejected),
            "errors": rejected[:MAX_ERRORS_LISTED],
        }
    )
