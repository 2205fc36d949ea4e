"""Per-value and per-row validators of the inputs; each raises `RowError(field, reason)`.

- `parse_store_id(text) -> str`
- `parse_timestamp(text) -> int` (epoch microseconds, UTC)
- `parse_status(text) -> "active" | "inactive"`
- `parse_day(value) -> int` (0 = Monday … 6 = Sunday)
- `parse_local_time(text) -> int` (microseconds since local midnight)
- `validate_timezone(text) -> str`
- whole records: `parse_poll`, `parse_hours_row`, `parse_timezone_row`

Pure functions: the CSV readers, the Kafka loader, `POST /events` and the Faust
worker all judge a value here, so it is accepted or rejected the same way
wherever it comes from.
"""
from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date as date_type
from datetime import datetime
from functools import lru_cache
from typing import Literal, NamedTuple
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from storemon.timebase import US_PER_DAY, US_PER_SECOND

#: Days from 0001-01-01 (ordinal 1) to 1970-01-01.
_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()

STATUS_COLUMNS = ("store_id", "status", "timestamp_utc")
HOURS_COLUMNS = ("store_id", "day", "start_time_local", "end_time_local")
DAY_ALIAS = "dayOfWeek"
TIMEZONE_COLUMNS = ("store_id", "timezone_str")
#: Why a poll more than a day after now (or after the file's `latest_us`) is refused.
TOO_FAR_AHEAD = "more than a day in the future"

Status = Literal["active", "inactive"]


class RowError(ValueError):
    """One field of one record is invalid."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason



# ---------------------------------------------------------------------------------------

_MAX_STORE_ID_LENGTH = 128
_STORE_ID_RE = re.compile(r"[^\s,]+")
#: First characters that make a spreadsheet read a cell as a formula (report-semantics.md).
FORMULA_PREFIXES = ("=", "+", "-", "@")


def _text(value: object, field_name: str) -> str:
    if not isinstance(value, str):
        raise RowError(field_name, f"must be a string, got {type(value).__name__}")
    return value


def parse_store_id(value: object) -> str:
    """A store id as given: an opaque, non-empty string without whitespace or commas,
    not beginning with a formula character."""
    return _checked_store_id(_text(value, "store_id"))


@lru_cache(maxsize=1 << 16)
def _checked_store_id(text: str) -> str:
    """Cached: a stream names the same stores over and over (a refused id raises, and
    is not cached)."""
    if not text:
        raise RowError("store_id", "is empty")
    if len(text) > _MAX_STORE_ID_LENGTH:
        raise RowError("store_id", f"is longer than {_MAX_STORE_ID_LENGTH} characters")
    if _STORE_ID_RE.fullmatch(text) is None or not text.isprintable():
        raise RowError("store_id", f"contains whitespace, a comma or a control character: {text!r}")
    if text.startswith(FORMULA_PREFIXES):
        raise RowError(
            "store_id",
            f"begins with {text[0]!r}: a spreadsheet would run it as a formula (CSV injection)",
        )
    return text


_TIMESTAMP_RE = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[T ](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?"
    r"(Z|z| UTC|[+-]\d{2}:?\d{2})",
    re.ASCII,
)


@lru_cache(maxsize=4096)
def _days_since_epoch(year: str, month: str, day: str) -> int:
    """Days from 1970-01-01 to a calendar date; ValueError when there is no such date.

    Cached: a stream's polls fall on few dates, and this was a third of parsing one.
    """
    return date_type(int(year), int(month), int(day)).toordinal() - _EPOCH_ORDINAL


#: The instants a timestamp can name: the years 1 to 9999, in UTC.
_MIN_US = (datetime.min.toordinal() - _EPOCH_ORDINAL) * US_PER_DAY
_MAX_US = (datetime.max.toordinal() + 1 - _EPOCH_ORDINAL) * US_PER_DAY - 1


def parse_timestamp(value: object) -> int:
    """An instant as integer microseconds since the Unix epoch (UTC).

    Accepts ISO-8601 with `Z` or a numeric offset (`2023-01-22T12:09:39.388884Z`,
    `...+00:00`, `...+0530`) and the Loop form `2023-01-22 12:09:39.388884 UTC`; `T` and a
    space are interchangeable. Fractions have 1 to 9 digits; digits beyond microseconds
    are truncated.
    """
    text = _text(value, "timestamp_utc")
    match = _TIMESTAMP_RE.fullmatch(text)
    if match is None:
        raise RowError("timestamp_utc", f"not a timestamp: {text[:48]!r}")
    year, month, day, hour, minute, second, fraction, zone = match.groups()
    hour, minute, second = int(hour), int(minute), int(second)
    if hour > 23 or minute > 59 or second > 59:
        raise RowError("timestamp_utc", f"time of day out of range: {text!r}")
    try:
        days = _days_since_epoch(year, month, day)
    except ValueError as exc:
        raise RowError("timestamp_utc", f"{exc}: {text!r}") from None
    offset_us = 0
    if zone[0] in "+-":
        digits = zone[1:].replace(":", "")
        offset_hours, offset_minutes = int(digits[:2]), int(digits[2:])
        if offset_hours > 23 or offset_minutes > 59:
            raise RowError("timestamp_utc", f"invalid UTC offset {zone!r}")
        offset_us = (offset_hours * 3600 + offset_minutes * 60) * US_PER_SECOND
        if zone[0] == "-":
            offset_us = -offset_us
    micros = int(fraction[:6].ljust(6, "0")) if fraction else 0
    epoch_us = (
        days * US_PER_DAY
        + (hour * 3600 + minute * 60 + second) * US_PER_SECOND
        + micros
        - offset_us
    )
    if not _MIN_US <= epoch_us <= _MAX_US:
        # An offset can carry year 1 or 9999 past what format_timestamp can write.
        raise RowError("timestamp_utc", f"outside the years 1 to 9999 in UTC: {text!r}")
    return epoch_us


def parse_status(value: object) -> Status:
    """`active` or `inactive`, case-insensitive, returned lower-case."""
    text = _text(value, "status")
    lowered = text.lower()
    if lowered == "active":
        return "active"
    if lowered == "inactive":
        return "inactive"
    raise RowError("status", f"must be 'active' or 'inactive', got {text[:32]!r}")


def parse_day(value: object, field_name: str = "day") -> int:
    """A weekday number, 0 = Monday … 6 = Sunday (an int or its decimal string)."""
    if isinstance(value, bool):
        raise RowError(field_name, "must be a weekday number 0-6, got a boolean")
    if isinstance(value, int):
        day = value
    else:
        text = _text(value, field_name)
        if not (len(text) == 1 and "0" <= text <= "6"):
            raise RowError(field_name, f"must be a weekday number 0-6, got {text[:16]!r}")
        day = int(text)
    if not 0 <= day <= 6:
        raise RowError(field_name, f"must be a weekday number 0-6, got {day}")
    return day


_LOCAL_TIME_RE = re.compile(r"([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d)(?:\.(\d{1,6}))?)?", re.ASCII)


def parse_local_time(value: object, field_name: str = "start_time_local") -> int:
    """A local wall-clock time `HH:MM[:SS[.ffffff]]` as microseconds since midnight."""
    text = _text(value, field_name)
    match = _LOCAL_TIME_RE.fullmatch(text)
    if match is None:
        raise RowError(field_name, f"not a time HH:MM[:SS[.ffffff]]: {text[:32]!r}")
    hour, minute, second, fraction = match.groups()
    micros = int(fraction.ljust(6, "0")) if fraction else 0
    return (int(hour) * 3600 + int(minute) * 60 + int(second or 0)) * US_PER_SECOND + micros


@lru_cache(maxsize=4096)
def _zone_known(name: str) -> bool:
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        return False
    return True


def validate_timezone(value: object) -> str:
    """An IANA time-zone name that this machine's zone database knows."""
    text = _text(value, "timezone_str")
    # "localtime" would silently follow the host's own zone.
    if not text or text == "localtime" or not _zone_known(text):
        raise RowError("timezone_str", f"unknown time zone {text[:64]!r}")
    return text


class Poll(NamedTuple):
    store_id: str
    timestamp_us: int
    status: Status


class HoursRow(NamedTuple):
    store_id: str
    day: int
    start_us: int
    end_us: int


class TimezoneRow(NamedTuple):
    store_id: str
    timezone_str: str


def _field(record: Mapping[str, object], name: str) -> object:
    if name not in record or record[name] is None:
        raise RowError(name, "is required")
    return record[name]


def parse_poll(record: Mapping[str, object]) -> Poll:
    """A poll from a mapping with `store_id`, `timestamp_utc`, `status`."""
    return Poll(
        parse_store_id(_field(record, "store_id")),
        parse_timestamp(_field(record, "timestamp_utc")),
        parse_status(_field(record, "status")),
    )


def parse_hours_row(record: Mapping[str, object]) -> HoursRow:
    """A business-hours row; `dayOfWeek` is accepted in place of `day`."""
    day_field = "day" if record.get("day") is not None or DAY_ALIAS not in record else DAY_ALIAS
    return HoursRow(
        parse_store_id(_field(record, "store_id")),
        parse_day(_field(record, day_field), day_field),
        parse_local_time(_field(record, "start_time_local"), "start_time_local"),
        parse_local_time(_field(record, "end_time_local"), "end_time_local"),
    )


def parse_timezone_row(record: Mapping[str, object]) -> TimezoneRow:
    """A store's zone from a mapping with `store_id` and `timezone_str`."""
    return TimezoneRow(
        parse_store_id(_field(record, "store_id")),
        validate_timezone(_field(record, "timezone_str")),
    )

