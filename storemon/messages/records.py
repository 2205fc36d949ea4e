"""What the topic codecs share: a value that must be a JSON object, a key that names its store."""

from __future__ import annotations

import json
from typing import Any

from storemon.inputs.values import RowError, parse_store_id

UNKNOWN_FIELD = "unknown field"


class NotJson(ValueError):
    """A value that is not JSON: 'not JSON: <why>'."""


def decode_json(value: bytes | None) -> Any:
    """The JSON value of `value`; NotJson when it is none."""
    try:
        return json.loads(value or b"")
    except (ValueError, RecursionError) as exc:
        # ValueError: not UTF-8, not JSON, or an integer of over 4,300 digits;
        # RecursionError: nesting deeper than the parser goes.
        raise NotJson(f"not JSON: {str(exc)[:200]}") from None


def decode_valid(value: bytes | None, schema: str, invalid: type[ValueError]) -> dict[str, Any]:
    """The decoded record value if it is JSON that follows `schema` (a name of
    storemon.messages.schemas); else `invalid` saying what is wrong."""
    from storemon.messages import schemas  # schemas reads its files; records stays light

    try:
        decoded = decode_json(value)
    except NotJson as exc:
        raise invalid(str(exc)) from None
    errors = schemas.schema_errors(schema, decoded)
    if errors:
        raise invalid("; ".join(errors))
    checked: dict[str, Any] = decoded
    return checked


def encode_json(value: dict[str, Any]) -> bytes:
    """A record value as compact JSON."""
    return json.dumps(value, separators=(",", ":")).encode()


def json_object(value: bytes | None) -> dict[str, Any]:
    if value is None:
        raise RowError("value", "is empty")
    try:
        decoded = decode_json(value)
    except NotJson as exc:
        raise RowError("value", str(exc)) from None
    if not isinstance(decoded, dict):
        raise RowError("value", f"expected a JSON object, got {type(decoded).__name__}")
    return decoded


def check_key(key: bytes | None, store_id: str) -> None:
    # Partitioning is by key: a record keyed otherwise sits in another store's
    # partition, where the worker holding the store never sees it.
    if key != store_id.encode():
        raise RowError("key", f"must be the store_id {store_id!r}, got {key!r}")


def tombstone_store(key: bytes | None) -> str:
    if not key:
        raise RowError("key", "a deletion (null value) needs the store_id as key")
    return parse_store_id(key.decode(errors="replace"))

