"""The `store-status-dlq` value: a rejected record and why (schemas/dlq-record.schema.json)."""

from __future__ import annotations

import json

from storemon.timebase import format_timestamp, now_us

#: Most characters of a rejected record a dead letter keeps: JSON escapes one
#: character in up to 12 bytes, and the letter must stay well under Kafka's 1 MB.
DLQ_RAW_CHARS = 16_384

#: Longest field name a dead letter, an HTTP answer or a metric repeats: the field
#: blamed may be a producer's key of any length (UNKNOWN_FIELD).
MAX_FIELD_CHARS = 200


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
            "rejected_at": format_timestamp(now_us()),
        },
        separators=(",", ":"),
    ).encode()
