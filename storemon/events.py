"""The values on storemon's topics: decoding with per-field errors, encoding, DLQ records.

Every path that puts a record on a topic or takes one off (the CSV loader,
`POST /events`, the Faust worker) judges it here, with the per-field rules of
storemon/inputs.py, so a record is accepted or rejected the same way wherever
it comes from, and always as schemas/ describes it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from storemon import inputs
from storemon.inputs import HoursRow, Observation, RowError

#: Polls from further in the future than this are a clock or producer bug: one of
#: them would become every report's as_of and push all real polls out of the window.
MAX_FUTURE_US = 24 * 3600 * 1_000_000

OBSERVATION_FIELDS = frozenset({"store_id", "timestamp_utc", "status"})
BATCH_FIELDS = frozenset({"store_id", "observations"})

#: Most characters of a rejected record a dead letter keeps: JSON escapes one
#: character in up to 12 bytes, and the letter must stay well under Kafka's 1 MB.
DLQ_RAW_CHARS = 16_384

#: Longest field name a dead letter, an HTTP answer or a metric repeats: the field
#: blamed may be a producer's key of any length (UNKNOWN_FIELD).
MAX_FIELD_CHARS = 200
UNKNOWN_FIELD = "unknown field"

#: Most polls one batch record may carry (~60 bytes each, well inside Kafka's 1 MB).
MAX_BATCH_POLLS = 1000


def now_us() -> int:
    return time.time_ns() // 1000


def _json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise RowError("value", "is empty")
    try:
        decoded = json.loads(value)
    except (ValueError, RecursionError) as exc:
        # ValueError: not UTF-8, not JSON, or an integer of over 4,300 digits;
        # RecursionError: nesting deeper than the parser goes.
        raise RowError("value", f"not JSON: {str(exc)[:200]}") from None
    if not isinstance(decoded, dict):
        raise RowError("value", f"expected a JSON object, got {type(decoded).__name__}")
    return decoded


def _check_key(key: bytes | None, store_id: str) -> None:
    # Partitioning is by key: a record keyed otherwise sits in another store's
    # partition, where the worker holding the store never sees it.
    if key != store_id.encode():
        raise RowError("key", f"must be the store_id {store_id!r}, got {key!r}")


def observation_from_record(record: Mapping[str, object], received_at_us: int) -> Observation:
    """A status observation given as a mapping (JSON object, CSV row), fully checked."""
    unknown = set(record) - OBSERVATION_FIELDS
    if unknown:
        raise RowError(sorted(unknown)[0], UNKNOWN_FIELD)
    observation = inputs.parse_observation(record)
    if observation.timestamp_us > received_at_us + MAX_FUTURE_US:
        raise RowError("timestamp_utc", inputs.TOO_FAR_AHEAD)
    return observation


@dataclass
class ObservationBatch:
    """One `store-status` record: one store's polls, in record order (the later wins)."""

    store_id: str
    observations: list[Observation] = field(default_factory=list)
    #: Entries of a batch that failed their checks, each with its raw JSON.
    rejected: list[tuple[RowError, str]] = field(default_factory=list)


def decode_observations(key: bytes | None, value: bytes | None) -> ObservationBatch:
    """A `store-status` record, one observation or a batch of one store's, checked.

    A record that is wrong as a whole raises RowError; in a batch, each bad entry
    is rejected on its own (field `observations.<index>.<field>`) and the others kept.
    """
    record = _json_object(value)
    received_at_us = now_us()
    if "observations" not in record:
        observation = observation_from_record(record, received_at_us)
        _check_key(key, observation.store_id)
        return ObservationBatch(observation.store_id, [observation])
    unknown = set(record) - BATCH_FIELDS
    if unknown:
        raise RowError(sorted(unknown)[0], UNKNOWN_FIELD)
    store_id = inputs.parse_store_id(record.get("store_id"))
    _check_key(key, store_id)
    entries = record["observations"]
    if not isinstance(entries, list) or not entries:
        raise RowError("observations", "must be a non-empty list of {timestamp_utc, status}")
    if len(entries) > MAX_BATCH_POLLS:
        raise RowError("observations", f"more than {MAX_BATCH_POLLS} polls in one record")
    batch = ObservationBatch(store_id)
    for position, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise RowError("", "must be an object {timestamp_utc, status}")
            if "store_id" in entry:
                raise RowError("store_id", "belongs to the batch, not to its entries")
            batch.observations.append(
                observation_from_record({"store_id": store_id, **entry}, received_at_us)
            )
        except RowError as exc:
            where = f"observations.{position}" + (f".{exc.field}" if exc.field else "")
            batch.rejected.append((RowError(where, exc.reason), json.dumps(entry)))
    return batch


def encode_observation(observation: Observation) -> bytes:
    """The canonical `store-status` value (schemas/status-observation.schema.json)."""
    return json.dumps(
        {
            "store_id": observation.store_id,
            "timestamp_utc": inputs.format_timestamp(observation.timestamp_us),
            "status": observation.status,
        },
        separators=(",", ":"),
    ).encode()


def encode_observation_batch(store_id: str, polls: Iterable[tuple[str, bool]]) -> bytes:
    """A batch `store-status` value of (ISO-8601 UTC timestamp, active) pairs.

    Formatted by hand: the loader encodes millions of polls, and json.dumps per
    poll would halve its throughput. Timestamps are ISO-8601 text, safe in JSON.
    """
    entries = ",".join(
        f'{{"timestamp_utc":"{stamp}","status":"{"active" if active else "inactive"}"}}'
        for stamp, active in polls
    )
    return f'{{"store_id":{json.dumps(store_id)},"observations":[{entries}]}}'.encode()


def decode_schedule(key: bytes | None, value: bytes | None) -> tuple[str, list[HoursRow] | None]:
    """A `store-hours` record: the store and its weekly rows (None: the record deletes it)."""
    if value is None:
        return _tombstone_store(key), None
    record = _json_object(value)
    store_id = inputs.parse_store_id(record.get("store_id"))
    _check_key(key, store_id)
    hours = record.get("hours")
    if not isinstance(hours, list):
        raise RowError("hours", "must be a list of {day, start_time_local, end_time_local}")
    rows = []
    for position, row in enumerate(hours):
        if not isinstance(row, dict):
            raise RowError(f"hours.{position}", "must be an object")
        try:
            rows.append(inputs.parse_hours_row({**row, "store_id": store_id}))
        except RowError as exc:
            raise RowError(f"hours.{position}.{exc.field}", exc.reason) from None
    return store_id, rows


def encode_schedule(store_id: str, rows: list[HoursRow]) -> bytes:
    """The canonical `store-hours` value (schemas/store-hours.schema.json)."""
    return json.dumps(
        {
            "store_id": store_id,
            "hours": [
                {
                    "day": row.day,
                    "start_time_local": _format_local_time(row.start_us),
                    "end_time_local": _format_local_time(row.end_us),
                }
                for row in rows
            ],
        },
        separators=(",", ":"),
    ).encode()


def _format_local_time(micros: int) -> str:
    seconds, fraction = divmod(micros, 1_000_000)
    text = f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"
    return f"{text}.{fraction:06d}" if fraction else text


def decode_zone(key: bytes | None, value: bytes | None) -> tuple[str, str | None]:
    """A `store-timezones` record: the store and its zone (None: the record deletes it)."""
    if value is None:
        return _tombstone_store(key), None
    row = inputs.parse_timezone_row(_json_object(value))
    _check_key(key, row.store_id)
    return row.store_id, row.timezone_str


def encode_zone(store_id: str, timezone_str: str) -> bytes:
    return json.dumps(
        {"store_id": store_id, "timezone_str": timezone_str}, separators=(",", ":")
    ).encode()


def _tombstone_store(key: bytes | None) -> str:
    if not key:
        raise RowError("key", "a deletion (null value) needs the store_id as key")
    return inputs.parse_store_id(key.decode(errors="replace"))


def shown_field(field: str) -> str:
    """A field name as answers and dead letters repeat it: cut to MAX_FIELD_CHARS."""
    return field if len(field) <= MAX_FIELD_CHARS else f"{field[:MAX_FIELD_CHARS]}..."


def dlq_record(
    source: str, line: int | None, field: str | None, reason: str, raw: bytes | str | None
) -> bytes:
    """The dead-letter value (schemas/dlq-record.schema.json) for a rejected record.

    `raw` is cut to DLQ_RAW_CHARS characters (saying so) and `field` to
    MAX_FIELD_CHARS, so that a dead letter always fits in a Kafka record (1 MB)
    however large the rejected one was.
    """
    if isinstance(raw, bytes):
        raw = raw.decode(errors="replace")
    if raw and len(raw) > DLQ_RAW_CHARS:
        raw = f"{raw[:DLQ_RAW_CHARS]}... [cut: {len(raw):,} characters in all]"
    return json.dumps(
        {
            "source": source,
            "line": line,
            "field": None if field is None else shown_field(field),
            "reason": reason,
            "raw": raw or "",
            "rejected_at": datetime.now(UTC).isoformat().replace("+00:00", "Z"),
        },
        separators=(",", ":"),
    ).encode()
