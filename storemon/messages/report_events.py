"""The `report-events` codec: a report ended, as its consumers learn it.

Schema: schemas/report-event.schema.json.

A reporter publishes one for every report the database shows Complete or Failed and
has not yet published (storemon/database/report_events.py), so an event never
precedes its row, and a crash between publishing and marking it published publishes
it again: consumers take `report_id` as the idempotency key.
"""

from __future__ import annotations

from typing import Any

from storemon.database.reports_db import COMPLETE, ReportRow
from storemon.messages import schemas
from storemon.messages.records import decode_valid, encode_json
from storemon.timebase import format_timestamp, us_from_datetime


class InvalidEvent(ValueError):
    """A value that breaks schemas/report-event.schema.json."""


def _timestamp(moment: Any) -> str | None:
    return None if moment is None else format_timestamp(us_from_datetime(moment))


def event_of(row: ReportRow) -> dict[str, Any]:
    """The event of an ended report."""
    event: dict[str, Any] = {
        "report_id": row.report_id,
        "status": row.status,
        "requested_at": _timestamp(row.requested_at),
        "finished_at": _timestamp(row.finished_at),
    }
    if row.status == COMPLETE:
        event |= {
            "as_of": _timestamp(row.as_of),
            "rows": row.row_count,
            "bytes": row.byte_size,
            "checksum_sha256": row.checksum_sha256,
            "download_path": f"/reports/{row.report_id}.csv",
        }
    else:
        event["error"] = row.error
    return event


def encode_event(row: ReportRow) -> bytes:
    return encode_json(event_of(row))


def decode_event(value: bytes | None) -> dict[str, Any]:
    """An event from its record value; InvalidEvent says what is wrong."""
    return decode_valid(value, schemas.REPORT_EVENT, InvalidEvent)
