"""The `store-timezones` codec: a store's IANA zone (schemas/store-timezone.schema.json)."""

from __future__ import annotations

import json

from storemon.inputs.values import parse_timezone_row
from storemon.messages.records import check_key, json_object, tombstone_store


def decode_zone(key: bytes | None, value: bytes | None) -> tuple[str, str | None]:
    """A `store-timezones` record: the store and its zone (None: the record deletes it)."""
    if value is None:
        return tombstone_store(key), None
    row = parse_timezone_row(json_object(value))
    check_key(key, row.store_id)
    return row.store_id, row.timezone_str


def encode_zone(store_id: str, timezone_str: str) -> bytes:
    return json.dumps(
        {"store_id": store_id, "timezone_str": timezone_str}, separators=(",", ":")
    ).encode()


