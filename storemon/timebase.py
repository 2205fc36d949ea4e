"""Time as storemon counts it: integer microseconds since the Unix epoch, UTC.

The units, the 8-day horizon a report looks back over, the UTC day an instant
falls in, and the one way an instant is written out (ISO-8601 with `Z`).
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

US_PER_SECOND = 1_000_000
US_PER_MINUTE = 60 * US_PER_SECOND
US_PER_HOUR = 60 * US_PER_MINUTE
US_PER_DAY = 24 * US_PER_HOUR

#: How far back a report looks (report-semantics.md): polls older than
#: `as_of - HORIZON_US` count for no window.
HORIZON_US = 8 * US_PER_DAY

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def now_us() -> int:
    """The wall clock now."""
    return time.time_ns() // 1000


def day_of(epoch_us: int) -> int:
    """The UTC day number (since the epoch) an instant falls in."""
    return epoch_us // US_PER_DAY


def datetime_from_us(epoch_us: int) -> datetime:
    """An instant as an aware UTC datetime."""
    return _EPOCH + timedelta(microseconds=int(epoch_us))


def us_from_datetime(moment: datetime) -> int:
    """An aware datetime as epoch microseconds."""
    return (moment - _EPOCH) // timedelta(microseconds=1)


def format_timestamp(epoch_us: int) -> str:
    """An instant as ISO-8601 UTC, e.g. `2023-01-22T12:09:39.388884Z`."""
    # isoformat, not strftime("%Y"), which writes the year 999 as "999".
    return datetime_from_us(epoch_us).isoformat(timespec="microseconds").replace("+00:00", "Z")
