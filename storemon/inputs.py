"""Parsing and validating the three inputs: status polls, business hours and time zones.

This module is the single place that knows the textual forms of report-semantics.md.

Per-row validators (pure, used by the CSV readers here and by the Kafka loader, the HTTP
ingest and the Faust worker); each raises `RowError(field, reason)`:

- `parse_store_id(text) -> str`
- `parse_timestamp(text) -> int` (epoch microseconds, UTC) and `format_timestamp(us) -> str`
- `parse_status(text) -> "active" | "inactive"`
- `parse_day(value) -> int` (0 = Monday … 6 = Sunday)
- `parse_local_time(text) -> int` (microseconds since local midnight)
- `validate_timezone(text) -> str`
- whole records: `parse_observation`, `parse_hours_row`, `parse_timezone_row`

File readers (vectorised with pyarrow; a malformed file falls back to a row-by-row reader
so every bad row is still named by line):

- `read_status_csv(path, strict=False) -> ReadResult[Observations]`
- `read_hours_csv(path, strict=False) -> ReadResult[BusinessHours]`
- `read_timezones_csv(path, strict=False) -> ReadResult[Timezones]`

With `strict=True` a reader raises `InputFileError` at the first bad row; otherwise bad
rows are skipped and returned in `ReadResult.bad_rows`.
"""
from __future__ import annotations

import calendar
import csv
import mmap
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from datetime import date as date_type
from functools import lru_cache
from pathlib import Path
from typing import Generic, Literal, NamedTuple, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv
from numpy.lib.stride_tricks import sliding_window_view

from storemon.engine import BusinessHours, Observations, Timezones

US_PER_SECOND = 1_000_000
US_PER_DAY = 86_400 * US_PER_SECOND
#: Days from 0001-01-01 (ordinal 1) to 1970-01-01.
_EPOCH_ORDINAL = datetime(1970, 1, 1).toordinal()

STATUS_COLUMNS = ("store_id", "status", "timestamp_utc")
HOURS_COLUMNS = ("store_id", "day", "start_time_local", "end_time_local")
DAY_ALIAS = "dayOfWeek"
TIMEZONE_COLUMNS = ("store_id", "timezone_str")

Status = Literal["active", "inactive"]


class RowError(ValueError):
    """One field of one record is invalid."""

    def __init__(self, field_name: str, reason: str) -> None:
        super().__init__(f"{field_name}: {reason}")
        self.field = field_name
        self.reason = reason


class InputFileError(Exception):
    """A file cannot be used (missing, no header, missing column) or, in strict mode, a bad row."""


@dataclass(frozen=True)
class BadRow:
    """A rejected row of an input file, with where and why."""

    file: str
    line: int
    field: str
    reason: str

    def __str__(self) -> str:
        return f"{self.file}, line {self.line}, field {self.field}: {self.reason}"


DataT = TypeVar("DataT")


@dataclass(frozen=True)
class ReadResult(Generic[DataT]):
    """The accepted rows of a file (columnar) and the rows that were skipped."""

    data: DataT
    rows_read: int
    bad_rows: list[BadRow] = field(default_factory=list)


# ---------------------------------------------------------------------------------------
# Per-row validators
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
    text = _text(value, "store_id")
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


def format_timestamp(epoch_us: int) -> str:
    """An instant (epoch microseconds) as ISO-8601 UTC, e.g. `2023-01-22T12:09:39.388884Z`."""
    moment = datetime(1970, 1, 1, tzinfo=UTC) + timedelta(microseconds=int(epoch_us))
    # isoformat, not strftime("%Y"), which writes the year 999 as "999".
    return moment.isoformat(timespec="microseconds").replace("+00:00", "Z")


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


class Observation(NamedTuple):
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


def parse_observation(record: Mapping[str, object]) -> Observation:
    """A status observation from a mapping with `store_id`, `timestamp_utc`, `status`."""
    return Observation(
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


# ---------------------------------------------------------------------------------------
# Vectorised timestamp parsing
# ---------------------------------------------------------------------------------------


def _memory_pool() -> pa.MemoryPool:
    # Arrow's default (mimalloc) was about twice as slow to read the Loop-scale file on
    # fresh memory as jemalloc or the system allocator.
    try:
        return pa.jemalloc_memory_pool()
    except NotImplementedError:
        return pa.system_memory_pool()


_POOL = _memory_pool()
_DIGIT_0 = ord("0")
#: Rows per block of the timestamp parser: a block's bytes stay in the CPU cache.
_BLOCK_ROWS = 1 << 15
_WINDOW_BYTES = 32
_U64 = np.uint64


def _bytes_word(text: bytes) -> np.uint64:
    """Little-endian 8-byte word: the first byte of `text` is the least significant."""
    return _U64(int.from_bytes(text.ljust(8, b"\0"), "little"))


def _byte_mask(positions: Iterable[int]) -> np.uint64:
    return _U64(sum(0xFF << (8 * position) for position in positions))


_ZEROS = _bytes_word(b"00000000")
_LOW_BYTES = _U64(0x00FF00FF00FF00FF)
_LOW_PAIRS = _U64(0x0000FFFF0000FFFF)
_LOW_HALF = _U64(0xFFFFFFFF)
_HIGH_BITS = _U64(0x8080808080808080)
_DIGIT_LIMIT = _U64(0x7676767676767676)  # a byte x <= 9 stays below 0x80 after adding 0x76
# Words (after ^ '0') of bytes 0-7 `YYYY-MM-`, 8-15 `DD?hh:mm`, 16-18 `:ss`.
_DATE_DIGITS = _byte_mask([0, 1, 2, 3, 5, 6])
_DATE_FIXED = _byte_mask([4, 7])
_DATE_TEMPLATE = (_bytes_word(b"0000-00-") ^ _ZEROS) & _DATE_FIXED
_CLOCK_DIGITS = _byte_mask([0, 1, 3, 4, 6, 7])
_CLOCK_FIXED = _byte_mask([5])
_CLOCK_TEMPLATE = (_bytes_word(b"00000:00") ^ _ZEROS) & _CLOCK_FIXED
_SEPARATOR_BYTE = _byte_mask([2])
_SPACE_SEPARATOR = (_bytes_word(b"00 ") ^ _ZEROS) & _SEPARATOR_BYTE
_T_SEPARATOR = (_bytes_word(b"00T") ^ _ZEROS) & _SEPARATOR_BYTE
_SECONDS_DIGITS = _byte_mask([1, 2])
_SECONDS_FIXED = _byte_mask([0])
_SECONDS_TEMPLATE = (_bytes_word(b":") ^ _ZEROS) & _SECONDS_FIXED
_UTC_SUFFIX = _U64(int.from_bytes(b" UTC", "little"))


def _month_tables() -> tuple[np.ndarray, np.ndarray]:
    """Days since the epoch of each month's first day, and the month's length, for the
    years `_TABLE_FIRST_YEAR` … `_TABLE_LAST_YEAR`, indexed `(year - first) * 16 + month`.
    Slots of months 0 and 13-15 have length 0, so they never validate."""
    years = range(_TABLE_FIRST_YEAR, _TABLE_LAST_YEAR + 1)
    starts = np.zeros(len(years) * 16, dtype=np.int64)
    lengths = np.zeros(len(years) * 16, dtype=np.int64)
    epoch = date_type(1970, 1, 1)
    for index, year in enumerate(years):
        for month in range(1, 13):
            starts[index * 16 + month] = (date_type(year, month, 1) - epoch).days
            lengths[index * 16 + month] = calendar.monthrange(year, month)[1]
    return starts, lengths


# The vectorised parser handles these years; others go through `parse_timestamp`.
_TABLE_FIRST_YEAR, _TABLE_LAST_YEAR = 1970, 2199
_MONTH_START_DAY, _MONTH_LENGTH = _month_tables()


def _non_digit_bits(word: np.ndarray, digit_mask: np.uint64) -> np.ndarray:
    """High bits set in the bytes under `digit_mask` that are not digits (word ^ '0')."""
    digits = word & digit_mask
    return (digits + _DIGIT_LIMIT) | digits


def _byte(word: np.ndarray, index: int) -> np.ndarray:
    return (word >> _U64(8 * index)) & _U64(0xFF)


def _digit_pairs(word: np.ndarray) -> np.ndarray:
    """Two-digit values of bytes (0,1), (2,3), (4,5), (6,7) in 16-bit lanes (word ^ '0')."""
    return ((word & _LOW_BYTES) * _U64(10) + ((word >> _U64(8)) & _LOW_BYTES)) & _LOW_BYTES


def _lane(word: np.ndarray, index: int) -> np.ndarray:
    return ((word >> _U64(16 * index)) & _U64(0xFFFF)).astype(np.int64)


def _eight_digits(word: np.ndarray) -> np.ndarray:
    """The number written by 8 digit bytes (word ^ '0'; first byte most significant)."""
    word = _digit_pairs(word)
    word = (word * _U64(100) + (word >> _U64(16))) & _LOW_PAIRS
    return ((word * _U64(10000) + (word >> _U64(32))) & _LOW_HALF).astype(np.int64)


def _parse_timestamp_block(
    windows: np.ndarray, start: np.ndarray, length: np.ndarray
) -> tuple[np.ndarray, np.ndarray]:
    """`parse_timestamp` for the rows at byte `start` (`length` bytes): (epoch µs, ok).

    `windows[i]` is the 32 bytes from byte i of the buffer (a strided view), so one
    gather brings a row in as four little-endian words, and each arithmetic operation
    then handles 8 bytes of every row. Rows with `ok` False go to `parse_timestamp`
    (they may be valid but unusual, e.g. longer than 32 bytes); the tests compare the
    two on random strings.
    """
    words = windows[start].view("<u8")
    ok = (length - 20).view(np.uint64) <= 32 - 20
    date = words[:, 0] ^ _ZEROS  # YYYY-MM-
    clock = words[:, 1] ^ _ZEROS  # DD hh:mm
    seconds = words[:, 2] ^ _ZEROS  # :ss and what follows
    rest = words[:, 3] ^ _ZEROS
    separator = clock & _SEPARATOR_BYTE
    ok &= (date & _DATE_FIXED) == _DATE_TEMPLATE
    ok &= (clock & _CLOCK_FIXED) == _CLOCK_TEMPLATE
    ok &= (separator == _SPACE_SEPARATOR) | (separator == _T_SEPARATOR)
    ok &= (seconds & _SECONDS_FIXED) == _SECONDS_TEMPLATE
    ok &= (
        (
            _non_digit_bits(date, _DATE_DIGITS)
            | _non_digit_bits(clock, _CLOCK_DIGITS)
            | _non_digit_bits(seconds, _SECONDS_DIGITS)
        ) & _HIGH_BITS
    ) == 0
    # Digit pairs in 16-bit lanes: YY YY ?M M? / DD ?h h? mm / ?s s? ...
    date_pairs, clock_pairs = _digit_pairs(date), _digit_pairs(clock)
    shifted_date, shifted_clock = _digit_pairs(date >> _U64(8)), _digit_pairs(clock >> _U64(8))
    year = _lane(date_pairs, 0) * 100 + _lane(date_pairs, 1)
    month = _lane(shifted_date, 2)
    day = _lane(clock_pairs, 0)
    hour = _lane(shifted_clock, 1)
    minute = _lane(clock_pairs, 3)
    second = _lane(_digit_pairs(seconds >> _U64(8)), 0)
    month_slot = (year - _TABLE_FIRST_YEAR) * 16 + month
    ok &= (month_slot >= 0) & (month_slot < len(_MONTH_LENGTH)) & (month <= 12)
    month_slot[~ok] = 0
    ok &= (day >= 1) & (day <= _MONTH_LENGTH[month_slot])
    ok &= (hour <= 23) & (minute <= 59) & (second <= 59)

    # The last 8 bytes of the row (bytes length-8 … length-1 of the window).
    tail_byte = np.clip(length - 8, 8, 24).astype(np.uint64)
    tail_word = tail_byte >> _U64(3)
    shift = (tail_byte & _U64(7)) * _U64(8)
    low = np.where(tail_word == 1, clock, np.where(tail_word == 2, seconds, rest)) ^ _ZEROS
    high = np.where(tail_word == 1, seconds, np.where(tail_word == 2, rest, 0)) ^ _ZEROS
    # numpy defines shifts by 64 or more as 0, which the rows ending at byte 32 need.
    tail = (low >> shift) | np.where(shift == 0, _U64(0), high << (_U64(64) - shift))
    last = tail >> _U64(56)
    zulu = (last == ord("Z")) | (last == ord("z"))
    utc = (tail >> _U64(32)) == _UTC_SUFFIX
    suffix_length = np.where(zulu, 1, np.where(utc, 4, 0))
    offset_us = np.zeros(len(start), dtype=np.int64)
    numeric = ~(zulu | utc) & ok
    if numeric.any():
        rows = np.flatnonzero(numeric)
        offset_us[rows], suffix_length[rows], numeric_ok = _numeric_offsets(tail[rows])
        ok[rows] &= numeric_ok

    # Between the seconds and the suffix: nothing, or a dot and 1 to 9 digits (bytes
    # 20-28: the top half of the seconds word and the start of the next word).
    fraction_digits = length - 20 - suffix_length
    has_fraction = fraction_digits >= 1
    ok &= (suffix_length > 0) & ((fraction_digits == -1) | (
        has_fraction & (fraction_digits <= 9) & (_byte(seconds, 3) == (ord(".") ^ _DIGIT_0))
    ))
    digits = np.clip(fraction_digits, 0, 8).astype(np.uint64)
    # Bytes past the last digit count as '0' (0 after the xor), so the 8 bytes read as
    # the fraction in units of 10 ns; shifting by 64 clears the whole word.
    kept = np.where(digits == 8, ~_U64(0), ~(~_U64(0) << (digits * _U64(8))))
    fraction = ((seconds >> _U64(32)) | (rest << _U64(32))) & kept
    ninth = np.where(fraction_digits == 9, _byte(rest, 4), _U64(0))
    ok &= ((_non_digit_bits(fraction, ~_U64(0)) & _HIGH_BITS) == 0) & (ninth <= 9)
    micros = _eight_digits(fraction) // 100  # digits past 6 are truncated
    epoch_us = (
        (_MONTH_START_DAY[month_slot] + day - 1) * US_PER_DAY
        + (hour * 3600 + minute * 60 + second) * US_PER_SECOND
        + micros
        - offset_us
    )
    return epoch_us, ok


def _numeric_offsets(tail: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`+HH:MM` / `+HHMM` suffixes in the last 8 bytes: (offset µs, suffix length, ok)."""

    def byte(index: int) -> np.ndarray:
        return ((tail >> _U64(8 * index)) & _U64(0xFF)).astype(np.int64)

    def digits(first: int, second: int) -> tuple[np.ndarray, np.ndarray]:
        high, low = byte(first) - _DIGIT_0, byte(second) - _DIGIT_0
        return high * 10 + low, (high >= 0) & (high <= 9) & (low >= 0) & (low <= 9)

    with_colon = np.isin(byte(2), [ord("+"), ord("-")]) & (byte(5) == ord(":"))
    plain = np.isin(byte(3), [ord("+"), ord("-")]) & ~with_colon
    colon_hours, colon_hours_ok = digits(3, 4)
    plain_hours, plain_hours_ok = digits(4, 5)
    minutes, minutes_ok = digits(6, 7)
    hours = np.where(with_colon, colon_hours, plain_hours)
    ok = (with_colon | plain) & np.where(with_colon, colon_hours_ok, plain_hours_ok)
    ok &= minutes_ok & (hours <= 23) & (minutes <= 59)
    sign = np.where(with_colon, byte(2), byte(3))
    magnitude = (hours * 3600 + minutes * 60) * US_PER_SECOND
    offset = np.where(sign == ord("-"), -magnitude, magnitude)
    return offset, np.where(with_colon, 6, 5), ok


def _string_chunk_parts(chunk: pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """The int64 offsets (length + 1) and the byte buffer of an Arrow string array."""
    chunk = chunk.cast(pa.large_string())
    _, offsets_buffer, data_buffer = chunk.buffers()
    offsets = np.frombuffer(
        offsets_buffer, dtype=np.int64, count=len(chunk) + 1, offset=chunk.offset * 8
    )
    data = (
        np.frombuffer(data_buffer, dtype=np.uint8) if data_buffer is not None
        else np.zeros(0, np.uint8)
    )
    return offsets, data


def _windows(data: np.ndarray) -> np.ndarray:
    """The 32 bytes from every byte of `data` on (a strided view; the last 31 are absent)."""
    if len(data) < _WINDOW_BYTES:
        data = np.concatenate([data, np.zeros(_WINDOW_BYTES, np.uint8)])
    return sliding_window_view(data, _WINDOW_BYTES)


#: Suffixes of the common forms, for the all-rows-alike fast path.
_UNIFORM_SUFFIXES = (" UTC", "Z")
#: Everything before the suffix: `YYYY-MM-DD hh:mm:ss` and an optional fraction.
_SHORTEST_CLOCK = 19


def _parse_uniform_suffix(column: pa.ChunkedArray | pa.Array) -> np.ndarray | None:
    """Epoch µs when every row has the same UTC suffix and is valid, else None.

    This is the Loop file's case, and Arrow's C++ ISO-8601 parser then does the work in
    one pass. Once the suffix is cut, Arrow accepts `YYYY-MM-DD[ T]hh:mm:ss[.f{1,9}]`
    plus shorter forms (`YYYY-MM-DD`, `… hh`, `… hh:mm`) that the length check rules out,
    which is exactly what `parse_timestamp` accepts before such a suffix.
    """
    if len(column) == 0:
        return None
    for suffix in _UNIFORM_SUFFIXES:
        if not pc.all(pc.ends_with(column, suffix, memory_pool=_POOL)).as_py():
            continue
        shortest = pc.min(pc.binary_length(column)).as_py()
        if shortest < _SHORTEST_CLOCK + len(suffix):
            return None
        try:
            stripped = pc.utf8_slice_codeunits(column, 0, -len(suffix), memory_pool=_POOL)
            nanos = pc.cast(stripped, pa.timestamp("ns"), memory_pool=_POOL)
        except pa.ArrowInvalid:  # an invalid row, or a year nanoseconds cannot hold
            return None
        chunks = nanos.chunks if isinstance(nanos, pa.ChunkedArray) else [nanos]
        values = np.concatenate([
            np.frombuffer(chunk.buffers()[1], np.int64, len(chunk), chunk.offset * 8)
            for chunk in chunks
        ])
        # Floor division truncates the fraction past microseconds, as parse_timestamp does.
        return values // 1000
    return None


def parse_timestamps_arrow(column: pa.ChunkedArray | pa.Array) -> tuple[np.ndarray, np.ndarray]:
    """Vectorised `parse_timestamp` over an Arrow string column: (epoch µs int64, ok bool).

    Rows the vectorised parser rejects go through `parse_timestamp` one by one, so the
    outcome is always the per-row function's.
    """
    uniform = _parse_uniform_suffix(column)
    if uniform is not None:
        return uniform, np.ones(len(uniform), dtype=bool)
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    values_parts, ok_parts = [], []
    for chunk in chunks:
        offsets, data = _string_chunk_parts(chunk)
        windows = _windows(data)
        values = np.zeros(len(chunk), dtype=np.int64)
        ok = np.zeros(len(chunk), dtype=bool)
        # The block parser reads 32 bytes from each row's start; the last rows of the
        # buffer may not have them and are left to the row-by-row parser.
        safe_rows = int(np.searchsorted(offsets[:-1], len(windows) - 1, side="right"))
        for first in range(0, safe_rows, _BLOCK_ROWS):
            last = min(first + _BLOCK_ROWS, safe_rows)
            block_offsets = offsets[first : last + 1]
            values[first:last], ok[first:last] = _parse_timestamp_block(
                windows, block_offsets[:-1], np.diff(block_offsets)
            )
        for row in np.flatnonzero(~ok).tolist():
            text = bytes(data[offsets[row] : offsets[row + 1]]).decode("utf-8", "replace")
            try:
                values[row] = parse_timestamp(text)
                ok[row] = True
            except RowError:
                pass
        values_parts.append(values)
        ok_parts.append(ok)
    if not values_parts:
        return np.zeros(0, np.int64), np.zeros(0, bool)
    return np.concatenate(values_parts), np.concatenate(ok_parts)


# ---------------------------------------------------------------------------------------
# CSV files
# ---------------------------------------------------------------------------------------

_HEADER_LINE = 1


class _BadRows:
    """Collects the bad rows of one file; in strict mode the first one is fatal."""

    def __init__(self, file: str, strict: bool) -> None:
        self.file = file
        self.strict = strict
        self.rows: list[BadRow] = []

    def add(self, line: int, field_name: str, reason: str) -> None:
        bad = BadRow(self.file, line, field_name, reason)
        if self.strict:
            raise InputFileError(str(bad))
        self.rows.append(bad)

    def add_vectorised(self, problems: list[tuple[np.ndarray, str, list[str]]]) -> None:
        """Record per-column failures: (bad mask, field, reason per row) for each column.

        Lines are reported in file order and only the first failing field of a row counts,
        so strict mode stops at the earliest bad line.
        """
        found: dict[int, tuple[str, str]] = {}
        for mask, field_name, reasons in problems:
            for index, row in enumerate(np.flatnonzero(mask).tolist()):
                found.setdefault(row, (field_name, reasons[index]))
        for row in sorted(found):
            self.add(row + _HEADER_LINE + 1, *found[row])


def _header(path: Path) -> list[str]:
    try:
        with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
            first_line = handle.readline()
    except OSError as exc:
        raise InputFileError(f"{path}: cannot read: {exc.strerror or exc}") from None
    if not first_line.strip():
        raise InputFileError(f"{path}: empty file (expected a header line)")
    try:
        return next(csv.reader([first_line]))
    except csv.Error as exc:
        raise InputFileError(f"{path}: the header line is not CSV: {exc}") from None


def _require_columns(path: Path, header: list[str], columns: tuple[str, ...]) -> None:
    missing = [name for name in columns if name not in header]
    if missing:
        raise InputFileError(
            f"{path}: missing column {missing[0]!r} (header is {','.join(header)!r})"
        )


def _read_arrow(path: Path, columns: list[str], free_text: tuple[str, ...] = ()) -> pa.Table | None:
    """The named columns, or None when the file is not plain, regular CSV.

    Columns come dictionary-encoded (few distinct values: ids, statuses, times), except
    those in `free_text`, which come as strings.
    """
    try:
        table = pa_csv.read_csv(
            path,
            memory_pool=_POOL,
            read_options=pa_csv.ReadOptions(block_size=8 << 20),
            # Blank lines must not be skipped, so that row i is on line i + 2 (Arrow reads a
            # quoted line break all the same: _spans_lines checks for those).
            parse_options=pa_csv.ParseOptions(ignore_empty_lines=False, newlines_in_values=False),
            convert_options=pa_csv.ConvertOptions(
                include_columns=columns,
                column_types=dict.fromkeys(columns, pa.string()),
                strings_can_be_null=False,
                quoted_strings_can_be_null=False,
            ),
        )
    except (pa.ArrowInvalid, UnicodeDecodeError):
        return None
    if _spans_lines(path, table.num_rows + 1):
        return None
    # Encoding after the read: the reader's own dictionary columns parse serially, which
    # made reading the Loop-scale status file twice as slow.
    encoded = [
        table[name] if name in free_text else pc.dictionary_encode(table[name], memory_pool=_POOL)
        for name in columns
    ]
    table = pa.Table.from_arrays(encoded, names=columns).unify_dictionaries(memory_pool=_POOL)
    # Arrow reads a blank line as a row of empty values, where the row reader skips it; only
    # a file with an empty value in every column can have one, and that one is read row by row.
    if all(
        table[name].num_chunks and pc.index(table[name].chunk(0).dictionary, "").as_py() >= 0
        for name in columns
        if name not in free_text
    ):
        return None
    return table


def _spans_lines(path: Path, records: int) -> bool:
    """Whether the file has more lines than `records`: a record spans lines (a quoted line
    break), so the rows after it are not on the lines their position says."""
    with path.open("rb") as handle, mmap.mmap(handle.fileno(), 0, access=mmap.ACCESS_READ) as data:
        if data.find(b'"') < 0:  # only a quoted value can hold a line break (fast: memchr)
            return False
        text = data[:]
    breaks = text.count(b"\n") + text.count(b"\r") - text.count(b"\r\n")
    return breaks + (not text.endswith((b"\n", b"\r"))) != records


def _csv_records(path: Path, bad: _BadRows) -> Iterator[tuple[int, dict[str, str]]]:
    """(line, record) of each data row, row by row; rows of the wrong width are bad rows.

    A field over the csv module's size limit (128 KiB) makes a bad row of its line, and
    reading goes on with the next line.
    """
    with path.open(encoding="utf-8-sig", errors="surrogateescape", newline="") as handle:
        reader = csv.reader(handle)
        header: list[str] | None = None
        line = 0
        while True:
            try:
                row: list[str] | csv.Error = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                row = exc
            first_line, line = line + 1, reader.line_num
            if header is None:
                if isinstance(row, csv.Error):
                    raise InputFileError(f"{path}: the header is not CSV: {row}")
                header = row
            elif isinstance(row, csv.Error):
                bad.add(first_line, "(row)", f"not CSV: {row}")
            elif not row:  # a blank line
                continue
            elif len(row) != len(header):
                bad.add(first_line, "(row)", f"expected {len(header)} fields, got {len(row)}")
            else:
                yield first_line, dict(zip(header, row, strict=True))


@dataclass(frozen=True)
class _ParsedColumn:
    """A string column parsed once per distinct value.

    `values` holds the distinct valid parsed values; `index` maps each row to its value
    (meaningless where `bad`); `reasons` gives the reason of each bad row, in row order.
    """

    values: np.ndarray
    index: np.ndarray
    bad: np.ndarray
    reasons: list[str]


def _int32_values(array: pa.Array) -> np.ndarray:
    """A null-free int32 Arrow array as numpy, zero-copy.

    (`Array.to_numpy` would import pandas, which costs more than this whole read.)
    """
    return np.frombuffer(
        array.buffers()[1], dtype=np.int32, count=len(array), offset=array.offset * 4
    )


def _parse_distinct(column: pa.ChunkedArray, parse: Callable[[str], object]) -> _ParsedColumn:
    """Parse a dictionary-encoded column (dictionaries unified) once per distinct value."""
    distinct = column.chunk(0).dictionary.to_pylist() if column.num_chunks else []
    valid_values: list[object] = []
    position = np.full(len(distinct) + 1, -1, dtype=np.int64)
    reason_of: dict[int, str] = {}
    for i, text in enumerate(distinct):
        try:
            valid_values.append(parse(text))
        except RowError as exc:
            reason_of[i] = exc.reason
            continue
        position[i] = len(valid_values) - 1
    distinct_of_row = np.concatenate(
        [_int32_values(chunk.indices) for chunk in column.chunks] or [np.zeros(0, np.int32)]
    )
    row_index = position[distinct_of_row]
    bad = row_index < 0
    reasons = [reason_of[i] for i in distinct_of_row[bad].tolist()] if reason_of else []
    values = np.empty(len(valid_values), dtype=object)
    values[:] = valid_values
    return _ParsedColumn(values, row_index, bad, reasons)


def _timestamp_reason(column: pa.ChunkedArray, row: int) -> str:
    try:
        parse_timestamp(column[row].as_py())
    except RowError as exc:
        return exc.reason
    return "not a timestamp"


def _object_array(items: list[str]) -> np.ndarray:
    array = np.empty(len(items), dtype=object)
    array[:] = items
    return array


#: Why a poll after `latest_us` (read_status_csv) is a bad row.
TOO_FAR_AHEAD = "more than a day in the future"


def read_status_csv(
    path: str | Path, *, strict: bool = False, latest_us: int | None = None
) -> ReadResult[Observations]:
    """Status polls from a CSV with columns `store_id,status,timestamp_utc` (any order).

    Row order is kept: it is the acceptance order that decides duplicate timestamps.
    With `latest_us`, polls after it are bad rows (ingest refuses polls from the future).
    """
    path = Path(path)
    _require_columns(path, _header(path), STATUS_COLUMNS)
    bad = _BadRows(str(path), strict)
    table = _read_arrow(path, list(STATUS_COLUMNS), free_text=("timestamp_utc",))
    if table is None:
        return _read_status_rows(path, bad, latest_us)
    stores = _parse_distinct(table["store_id"], parse_store_id)
    statuses = _parse_distinct(table["status"], parse_status)
    timestamps, timestamp_ok = parse_timestamps_arrow(table["timestamp_utc"])
    timestamp_reasons = [
        _timestamp_reason(table["timestamp_utc"], int(row)) for row in np.flatnonzero(~timestamp_ok)
    ]
    too_far = np.zeros(len(timestamps), dtype=bool)
    if latest_us is not None:
        too_far = timestamp_ok & (timestamps > latest_us)
    bad.add_vectorised([
        (stores.bad, "store_id", stores.reasons),
        (statuses.bad, "status", statuses.reasons),
        (~timestamp_ok, "timestamp_utc", timestamp_reasons),
        (too_far, "timestamp_utc", [TOO_FAR_AHEAD] * int(too_far.sum())),
    ])
    timestamp_ok &= ~too_far
    active_by_value = np.array([value == "active" for value in statuses.values], dtype=bool)
    store_index, status_index = stores.index, statuses.index
    if bad.rows:
        good = ~(stores.bad | statuses.bad) & timestamp_ok
        store_index, status_index, timestamps = (
            store_index[good], status_index[good], timestamps[good]
        )
    observations = Observations(
        store_ids=stores.values,
        store_index=store_index,
        timestamp_us=timestamps,
        active=active_by_value[status_index] if len(active_by_value) else np.zeros(0, bool),
    )
    return ReadResult(observations, table.num_rows, bad.rows)


def _read_status_rows(
    path: Path, bad: _BadRows, latest_us: int | None = None
) -> ReadResult[Observations]:
    store_ids: list[str] = []
    timestamps: list[int] = []
    active: list[bool] = []
    for line, record in _csv_records(path, bad):
        try:
            observation = parse_observation(record)
            if latest_us is not None and observation.timestamp_us > latest_us:
                raise RowError("timestamp_utc", TOO_FAR_AHEAD)
        except RowError as exc:
            bad.add(line, exc.field, exc.reason)
            continue
        store_ids.append(observation.store_id)
        timestamps.append(observation.timestamp_us)
        active.append(observation.status == "active")
    observations = Observations.from_columns(store_ids, timestamps, active)
    return ReadResult(observations, len(timestamps) + len(bad.rows), bad.rows)


def read_hours_csv(path: str | Path, *, strict: bool = False) -> ReadResult[BusinessHours]:
    """Business hours from `store_id,day,start_time_local,end_time_local` (`dayOfWeek` ok)."""
    path = Path(path)
    header = _header(path)
    day_column = "day" if "day" in header or DAY_ALIAS not in header else DAY_ALIAS
    columns = tuple(day_column if name == "day" else name for name in HOURS_COLUMNS)
    _require_columns(path, header, columns)
    bad = _BadRows(str(path), strict)
    table = _read_arrow(path, list(columns))
    if table is None:
        return _read_hours_rows(path, bad)
    stores = _parse_distinct(table["store_id"], parse_store_id)
    days = _parse_distinct(table[day_column], lambda text: parse_day(text, day_column))
    starts = _parse_distinct(
        table["start_time_local"], lambda text: parse_local_time(text, "start_time_local")
    )
    ends = _parse_distinct(
        table["end_time_local"], lambda text: parse_local_time(text, "end_time_local")
    )
    bad.add_vectorised([
        (stores.bad, "store_id", stores.reasons),
        (days.bad, day_column, days.reasons),
        (starts.bad, "start_time_local", starts.reasons),
        (ends.bad, "end_time_local", ends.reasons),
    ])
    good = ~(stores.bad | days.bad | starts.bad | ends.bad)

    def column(parsed: _ParsedColumn, dtype: type) -> np.ndarray:
        return parsed.values.astype(dtype)[parsed.index[good]]

    hours = BusinessHours(
        store_id=column(stores, object),
        day=column(days, np.int64),
        start_us=column(starts, np.int64),
        end_us=column(ends, np.int64),
    )
    return ReadResult(hours, table.num_rows, bad.rows)


def _read_hours_rows(path: Path, bad: _BadRows) -> ReadResult[BusinessHours]:
    rows: list[HoursRow] = []
    for line, record in _csv_records(path, bad):
        try:
            rows.append(parse_hours_row(record))
        except RowError as exc:
            bad.add(line, exc.field, exc.reason)
    hours = BusinessHours(
        store_id=_object_array([row.store_id for row in rows]),
        day=np.array([row.day for row in rows], dtype=np.int64),
        start_us=np.array([row.start_us for row in rows], dtype=np.int64),
        end_us=np.array([row.end_us for row in rows], dtype=np.int64),
    )
    return ReadResult(hours, len(rows) + len(bad.rows), bad.rows)


def read_timezones_csv(path: str | Path, *, strict: bool = False) -> ReadResult[Timezones]:
    """Store zones from `store_id,timezone_str`; a later row for a store replaces earlier ones."""
    path = Path(path)
    _require_columns(path, _header(path), TIMEZONE_COLUMNS)
    bad = _BadRows(str(path), strict)
    table = _read_arrow(path, list(TIMEZONE_COLUMNS))
    if table is None:
        return _read_timezone_rows(path, bad)
    stores = _parse_distinct(table["store_id"], parse_store_id)
    zones = _parse_distinct(table["timezone_str"], validate_timezone)
    bad.add_vectorised([
        (stores.bad, "store_id", stores.reasons),
        (zones.bad, "timezone_str", zones.reasons),
    ])
    good = ~(stores.bad | zones.bad)
    timezones = Timezones(
        store_id=stores.values[stores.index[good]],
        timezone_str=zones.values[zones.index[good]],
    )
    return ReadResult(timezones, table.num_rows, bad.rows)


def _read_timezone_rows(path: Path, bad: _BadRows) -> ReadResult[Timezones]:
    rows: list[TimezoneRow] = []
    for line, record in _csv_records(path, bad):
        try:
            rows.append(parse_timezone_row(record))
        except RowError as exc:
            bad.add(line, exc.field, exc.reason)
    timezones = Timezones(
        store_id=_object_array([row.store_id for row in rows]),
        timezone_str=_object_array([row.timezone_str for row in rows]),
    )
    return ReadResult(timezones, len(rows) + len(bad.rows), bad.rows)
