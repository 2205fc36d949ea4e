"""The three CSV readers, vectorised with pyarrow; every bad row is named by line.

- `read_status_csv(path, strict=False) -> ReadResult[Polls]`
- `read_hours_csv(path, strict=False) -> ReadResult[BusinessHours]`
- `read_timezones_csv(path, strict=False) -> ReadResult[Timezones]`

A malformed file falls back to a row-by-row reader so every bad row is still
named by line. With `strict=True` a reader raises `InputFileError` at the first
bad row; otherwise bad rows are skipped and returned in `ReadResult.bad_rows`.
"""
from __future__ import annotations

import csv
import mmap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Generic, TypeVar

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pa_csv

from storemon.inputs.timestamps import ARROW_POOL, parse_timestamps_arrow
from storemon.inputs.values import (
    DAY_ALIAS,
    HOURS_COLUMNS,
    STATUS_COLUMNS,
    TIMEZONE_COLUMNS,
    TOO_FAR_AHEAD,
    HoursRow,
    RowError,
    TimezoneRow,
    parse_day,
    parse_hours_row,
    parse_local_time,
    parse_poll,
    parse_status,
    parse_store_id,
    parse_timestamp,
    parse_timezone_row,
    validate_timezone,
)
from storemon.uptime.engine import BusinessHours, Polls, Timezones, object_array


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
            memory_pool=ARROW_POOL,
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
        table[name]
        if name in free_text
        else pc.dictionary_encode(table[name], memory_pool=ARROW_POOL)
        for name in columns
    ]
    table = pa.Table.from_arrays(encoded, names=columns).unify_dictionaries(memory_pool=ARROW_POOL)
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


def read_status_csv(
    path: str | Path, *, strict: bool = False, latest_us: int | None = None
) -> ReadResult[Polls]:
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
    polls = Polls(
        store_ids=stores.values,
        store_index=store_index,
        timestamp_us=timestamps,
        active=active_by_value[status_index] if len(active_by_value) else np.zeros(0, bool),
    )
    return ReadResult(polls, table.num_rows, bad.rows)


def _read_status_rows(
    path: Path, bad: _BadRows, latest_us: int | None = None
) -> ReadResult[Polls]:
    store_ids: list[str] = []
    timestamps: list[int] = []
    active: list[bool] = []
    for line, record in _csv_records(path, bad):
        try:
            poll = parse_poll(record)
            if latest_us is not None and poll.timestamp_us > latest_us:
                raise RowError("timestamp_utc", TOO_FAR_AHEAD)
        except RowError as exc:
            bad.add(line, exc.field, exc.reason)
            continue
        store_ids.append(poll.store_id)
        timestamps.append(poll.timestamp_us)
        active.append(poll.status == "active")
    polls = Polls.from_columns(store_ids, timestamps, active)
    return ReadResult(polls, len(timestamps) + len(bad.rows), bad.rows)


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


RowT = TypeVar("RowT")


def _parsed_rows(path: Path, bad: _BadRows, parse: Callable[[dict[str, str]], RowT]) -> list[RowT]:
    """Every record `parse` accepts, read row by row; the others go to `bad` by line."""
    rows: list[RowT] = []
    for line, record in _csv_records(path, bad):
        try:
            rows.append(parse(record))
        except RowError as exc:
            bad.add(line, exc.field, exc.reason)
    return rows


def _read_hours_rows(path: Path, bad: _BadRows) -> ReadResult[BusinessHours]:
    rows: list[HoursRow] = _parsed_rows(path, bad, parse_hours_row)
    hours = BusinessHours.from_rows(rows)
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
    rows: list[TimezoneRow] = _parsed_rows(path, bad, parse_timezone_row)
    timezones = Timezones(
        store_id=object_array([row.store_id for row in rows]),
        timezone_str=object_array([row.timezone_str for row in rows]),
    )
    return ReadResult(timezones, len(rows) + len(bad.rows), bad.rows)
