"""`POST /events`: polls over HTTP, as a JSON array, NDJSON or CSV.

Every row is judged by the same rules as every other way in
(storemon.messages.polls.poll_from_record). Valid rows go to `store-status` in
partition batches shared with the requests under way (services/api/batching.py);
invalid rows go to the dead-letter topic and are answered
with their index, line and reason. The answer comes only once the broker has
confirmed every record; if it did not, the answer is 503 and the client sends
the batch again (replaying polls changes nothing).

NDJSON and CSV bodies are read line by line (a line ends at LF, CRLF or CR;
lines of spaces and tabs are skipped), JSON arrays item by item. No record is
produced before the whole body has been read and judged as a whole (UTF-8,
JSON syntax, CSV header), so a body refused as a whole leaves nothing behind.

Memory per request is bounded by the body, whatever it holds: rows are judged
one at a time, never all kept; records go out in groups of DELIVERY_GROUP
whose confirmations are awaited before the next group; the answer lists at
most MAX_ERRORS_LISTED rejected rows (all are counted and dead-lettered). The
work yields to the event loop every YIELD_EVERY_ROWS rows, so a large body
does not hold up other requests.
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

from storemon.api.body import read_body
from storemon.api.context import BATCHER, METRICS, PRODUCER, SETTINGS
from storemon.api.errors import ApiError
from storemon.inputs.values import Poll, RowError
from storemon.kafka.async_producer import AsyncProducer, DeliveryError
from storemon.kafka.topics import TOPIC_STATUS_DLQ
from storemon.messages.dead_letters import dlq_record, shown_field
from storemon.messages.polls import poll_from_record
from storemon.timebase import now_us

#: The answer lists at most this many rejected rows (all are counted and dead-lettered).
MAX_ERRORS_LISTED = 1000
#: Records in flight at most per request: their confirmations are awaited as a group.
DELIVERY_GROUP = 5000
#: Rows judged between two turns of the event loop (some milliseconds of work).
YIELD_EVERY_ROWS = 500
CSV_COLUMNS = frozenset({"store_id", "timestamp_utc", "status"})
JSON_TYPES = frozenset({"application/json"})
NDJSON_TYPES = frozenset({"application/x-ndjson", "application/ndjson", "application/jsonl"})
CSV_TYPES = frozenset({"text/csv"})
#: What the dead-letter records name as their source.
DLQ_SOURCE = "http"
_LINE_BREAK = re.compile(r"\r\n|\r|\n")
_JSON_WHITESPACE = re.compile(r"[ \t\n\r]*")
_JSON_DECODER = json.JSONDecoder()


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


def _json_value_at(text: str, start: int) -> tuple[Any, int]:
    """The JSON value starting at `start` and where it ends (json.JSONDecoder.raw_decode),
    with each way it can refuse a text as a RowError("(record)", why)."""
    try:
        return _JSON_DECODER.raw_decode(text, start)
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


def _skip_json_whitespace(text: str, position: int) -> int:
    match = _JSON_WHITESPACE.match(text, position)
    assert match is not None  # it matches the empty string
    return match.end()


def _json_value(text: str) -> Any:
    """json.loads, its refusals as RowError("(record)", why)."""
    value, end = _json_value_at(text, _skip_json_whitespace(text, 0))
    end = _skip_json_whitespace(text, end)
    if end != len(text):
        raise RowError("(record)", f"not JSON: {json.JSONDecodeError('Extra data', text, end)}")
    return value


def _item_text(value: Any) -> str:
    """An array item as compact JSON, for its dead-letter record."""
    try:
        return json.dumps(value, separators=(",", ":"))
    except RecursionError:  # json.loads reads a little deeper than json.dumps writes
        return "(an item nested too deeply to write back)"


def _json_array_items(text: str) -> Iterator[Any]:
    """The items of the JSON array `text`, one at a time (never the whole list); a text
    that is not one is ApiError 400, once its end shows it."""
    start = _skip_json_whitespace(text, 0)
    if not text.startswith("[", start):
        try:
            _json_value(text)
        except RowError as exc:
            raise ApiError(400, "bad_request", f"the body is {exc.reason}") from None
        raise ApiError(400, "bad_request", "the body must be a JSON array of polls")
    position = _skip_json_whitespace(text, start + 1)
    closed = text.startswith("]", position)
    if closed:
        position += 1
    try:
        while not closed:
            value, position = _json_value_at(text, position)
            yield value
            position = _skip_json_whitespace(text, position)
            if text.startswith(",", position):
                position = _skip_json_whitespace(text, position + 1)
            elif text.startswith("]", position):
                position, closed = position + 1, True
            else:
                error = json.JSONDecodeError("Expecting ',' delimiter", text, position)
                raise RowError("(record)", f"not JSON: {error}")
        position = _skip_json_whitespace(text, position)
        if position != len(text):
            error = json.JSONDecodeError("Extra data", text, position)
            raise RowError("(record)", f"not JSON: {error}")
    except RowError as exc:
        raise ApiError(400, "bad_request", f"the body is {exc.reason}") from None


def _json_rows(text: str) -> Iterator[BodyRow]:
    for index, value in enumerate(_json_array_items(text)):
        yield _object_row(index, None, _item_text(value), value)


def _lines(text: str) -> Iterator[str]:
    """_LINE_BREAK.split(text), one line at a time."""
    start = 0
    for line_break in _LINE_BREAK.finditer(text):
        yield text[start : line_break.start()]
        start = line_break.end()
    yield text[start:]


def _non_blank_lines(text: str) -> Iterator[tuple[int, str]]:
    for number, line in enumerate(_lines(text), start=1):
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
    # One record per line: no field of an poll can hold a line break.
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


async def _body_rows(request: web.Request, body: bytes) -> Iterator[BodyRow]:
    """The body's rows, once the body as a whole is known to be readable (else ApiError)."""
    parsers = {
        **dict.fromkeys(JSON_TYPES, _json_rows),
        **dict.fromkeys(NDJSON_TYPES, _ndjson_rows),
        **dict.fromkeys(CSV_TYPES, _csv_rows),
    }
    parser = parsers.get(request.content_type.lower())
    if parser is None:
        raise ApiError(
            415,
            "unsupported_media_type",
            "Content-Type must be application/json (an array), application/x-ndjson or text/csv",
        )
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise ApiError(400, "bad_request", f"the body is not UTF-8: {exc}") from None
    if parser is _json_rows:
        # Only the array's end shows it is one: read it through first, item by item.
        for count, _ in enumerate(_json_array_items(text), start=1):
            if count % YIELD_EVERY_ROWS == 0:
                await asyncio.sleep(0)
    return parser(text)


def _poll(row: BodyRow, received_at_us: int) -> Poll:
    if isinstance(row.fields, RowError):
        raise row.fields
    return poll_from_record(row.fields, received_at_us)


class _Deliveries:
    """Records produced for one request, at most DELIVERY_GROUP of them unconfirmed:
    producing more first awaits the broker's answers (503 if it refused one)."""

    def __init__(self, producer: AsyncProducer) -> None:
        self._group = producer.group()

    async def produce(self, topic: str, key: bytes | None, value: bytes) -> None:
        if self._group.unconfirmed >= DELIVERY_GROUP:
            await self.confirmed()
        try:
            await self._group.produce(topic, key, value)
        except DeliveryError as exc:
            raise _not_confirmed(exc) from None

    async def confirmed(self) -> None:
        """Once the broker confirmed every record produced so far."""
        try:
            await self._group.confirmed()
        except DeliveryError as exc:
            raise _not_confirmed(exc) from None


def _not_confirmed(error: DeliveryError) -> ApiError:
    return ApiError(
        503,
        "kafka_unavailable",
        f"{error}; send the request again (replayed polls change nothing)",
    )


async def post_events(request: web.Request) -> web.Response:
    body = await read_body(request)
    rows = await _body_rows(request, body)
    settings = request.app[SETTINGS]
    dlq_topic = settings.topic(TOPIC_STATUS_DLQ)
    received_at = now_us()
    deliveries = _Deliveries(request.app[PRODUCER])
    batcher = request.app[BATCHER]
    try:
        await batcher.ready()
    except DeliveryError as exc:
        raise _not_confirmed(exc) from None
    accepted = 0
    rejected = 0
    errors: list[dict[str, Any]] = []
    # The partition batches (shared with concurrent requests) carrying this request's
    # polls: it is answered once the broker confirmed each of them.
    batches: dict[int, asyncio.Future[None]] = {}
    for row in rows:
        if row.index % YIELD_EVERY_ROWS == YIELD_EVERY_ROWS - 1:
            await asyncio.sleep(0)
        try:
            poll = _poll(row, received_at)
        except RowError as exc:
            rejected += 1
            field = shown_field(exc.field)
            if len(errors) < MAX_ERRORS_LISTED:
                errors.append(
                    {"index": row.index, "line": row.line, "field": field, "reason": exc.reason}
                )
            value = dlq_record(DLQ_SOURCE, row.index, field, exc.reason, row.raw)
            await deliveries.produce(dlq_topic, None, value)
        else:
            accepted += 1
            sent = batcher.add(poll)
            batches[id(sent)] = sent
    await deliveries.confirmed()
    try:
        await asyncio.gather(*batches.values())
    except DeliveryError as exc:
        raise _not_confirmed(exc) from None
    metrics = request.app[METRICS]
    metrics.events["accepted"] += accepted
    metrics.events["rejected"] += rejected
    return web.json_response({"accepted": accepted, "rejected": rejected, "errors": errors})

