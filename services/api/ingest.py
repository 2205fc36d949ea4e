"""`POST /events`: status observations over HTTP, as a JSON array, NDJSON or CSV.

Every row is judged by the same rules as every other way in
(storemon.events.observation_from_record). Valid rows go to `store-status`,
one batch record per store (schemas/status-batch.schema.json),
keyed by store_id; invalid rows go to the dead-letter topic and are answered
with their index, line and reason. The answer comes only once the broker has
confirmed every record; if it did not, the answer is 503 and the client sends
the batch again (replaying observations changes nothing).

NDJSON and CSV bodies are read line by line (a line ends at LF, CRLF or CR;
lines of spaces and tabs are skipped); no record is produced before the whole
body has been read and judged.
"""

from __future__ import annotations

import asyncio
import csv
import json
import re
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from storemon import config, events, inputs
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
_LINE_BREAK = re.compile(r"\r\n|\r|\n")


@dataclass(frozen=True)
class BodyRow:
    """One record of the body: its position, its text, and its fields or why it has none."""

    index: int
    #: Line in the body (NDJSON, CSV); None for a JSON array.
    line: int | None
    raw: str
    fields: dict[str, Any] | RowError


def _object_row(index: int, line: int | None, raw: str, value: Any) -> BodyRow:
    if isinstance(value, dict):
        return BodyRow(index, line, raw, value)
    return BodyRow(index, line, raw, RowError("(record)", "must be a JSON object"))


def _json_value(text: str) -> Any:
    """json.loads, with each way it can refuse a text as a RowError("(record)", why)."""
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        reason = f"not JSON: {exc}"
    except RecursionError:
        reason = "not JSON that can be read here: nested too deeply"
    except ValueError:  # the only other refusal: integer digits over Python's limit
        reason = (
            "not JSON that can be read here: a number has more than "
            f"{sys.get_int_max_str_digits()} digits"
        )
    raise RowError("(record)", reason)


def _item_text(value: Any) -> str:
    """An array item as compact JSON, for its dead-letter record."""
    try:
        return json.dumps(value, separators=(",", ":"))
    except RecursionError:  # json.loads reads a little deeper than json.dumps writes
        return "(an item nested too deeply to write back)"


def _json_rows(text: str) -> Iterator[BodyRow]:
    try:
        values = _json_value(text)
    except RowError as exc:
        raise ApiError(400, "bad_request", f"the body is {exc.reason}") from None
    if not isinstance(values, list):
        raise ApiError(400, "bad_request", "the body must be a JSON array of observations")
    for index, value in enumerate(values):
        yield _object_row(index, None, _item_text(value), value)


def _non_blank_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(_LINE_BREAK.split(text), start=1):
        if line.strip(" \t"):
            yield number, line


def _ndjson_rows(text: str) -> Iterator[BodyRow]:
    for index, (number, line) in enumerate(_non_blank_lines(text)):
        try:
            value = _json_value(line)
        except RowError as exc:
            yield BodyRow(index, number, line, exc)
        else:
            yield _object_row(index, number, line, value)


def _csv_cells(line: str) -> list[str]:
    try:
        return next(csv.reader([line]))
    except csv.Error as exc:  # e.g. a field over the csv module's size limit
        raise RowError("(row)", f"not CSV: {exc}") from None


def _csv_rows(text: str) -> Iterator[BodyRow]:
    # One record per line: no field of an observation can hold a line break.
    lines = _non_blank_lines(text)
    _, header_line = next(lines, (0, ""))
    try:
        header = _csv_cells(header_line)
    except RowError:
        header = []
    if sorted(header) != sorted(CSV_COLUMNS):
        raise ApiError(
            400,
            "bad_request",
            f"the CSV header must name the columns store_id, timestamp_utc and status; "
            f"got {header_line[:200]!r}",
        )
    for index, (number, line) in enumerate(lines):
        try:
            cells = _csv_cells(line)
        except RowError as exc:
            yield BodyRow(index, number, line, exc)
            continue
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
    body = await read_body(request)
    # The whole body is judged before anything is produced: a body refused as a whole
    # leaves nothing behind on the topics.
    rows = list(_body_rows(request, body))
    settings = request.app[SETTINGS]
    producer = request.app[PRODUCER]
    status_topic = settings.topic(config.TOPIC_STATUS)
    dlq_topic = settings.topic(config.TOPIC_STATUS_DLQ)
    received_at = events.now_us()
    deliveries = []
    accepted = 0
    rejected: list[dict[str, Any]] = []
    # Each store's polls, in request order, go out as batch records: a worker
    # absorbs a batch as one event.
    polls_by_store: dict[str, list[tuple[str, bool]]] = {}
    for row in rows:
        try:
            observation = _observation(row, received_at)
        except RowError as exc:
            field = events.shown_field(exc.field)
            rejected.append(
                {"index": row.index, "line": row.line, "field": field, "reason": exc.reason}
            )
            value = events.dlq_record(DLQ_SOURCE, row.index, field, exc.reason, row.raw)
            deliveries.append(await producer.produce_later(dlq_topic, None, value))
        else:
            accepted += 1
            polls_by_store.setdefault(observation.store_id, []).append(
                (inputs.format_timestamp(observation.timestamp_us), observation.status == "active")
            )
    for store_id, polls in polls_by_store.items():
        for first in range(0, len(polls), events.MAX_BATCH_POLLS):
            value = events.encode_observation_batch(
                store_id, polls[first : first + events.MAX_BATCH_POLLS]
            )
            deliveries.append(
                await producer.produce_later(status_topic, store_id.encode(), value)
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
