"""The `store-hours` codec: a store's whole weekly schedule (schemas/store-hours.schema.json)."""

from __future__ import annotations

import json

from storemon.inputs.values import HoursRow, RowError, parse_hours_row, parse_store_id
from storemon.messages.records import check_key, json_object, tombstone_store


def decode_schedule(key: bytes | None, value: bytes | None) -> tuple[str, list[HoursRow] | None]:
    """A `store-hours` record: the store and its weekly rows (None: the record deletes it)."""
    if value is None:
        return tombstone_store(key), None
    record = json_object(value)
    store_id = parse_store_id(record.get("store_id"))
    check_key(key, store_id)
    hours = record.get("hours")
    if not isinstance(hours, list):
        raise RowError("hours", "must be a list of {day, start_time_local, end_time_local}")
    rows = []
    for position, row in enumerate(hours):
        if not isinstance(row, dict):
            raise RowError(f"hours.{position}", "must be an object")
        try:
            rows.append(parse_hours_row({**row, "store_id": store_id}))
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


