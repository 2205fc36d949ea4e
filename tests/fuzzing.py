"""Hypothesis strategies for fuzzing storemon's inputs with malformed data.

Every generated row is valid or invalid *by construction*, so a test knows what must
become of it without asking the code under test: field values of the three inputs,
polls as JSON text, and CSV files whose rows are good, broken in one known
field, of the wrong width, garbage, or not UTF-8 at all.

Imported by tests/unit and tests/integration (this folder is on sys.path as the home of
the top-level conftest.py).
"""

from __future__ import annotations

import csv
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from hypothesis import strategies as st

from storemon.inputs.values import (
    DAY_ALIAS,
    FORMULA_PREFIXES,
    RowError,
    parse_hours_row,
    parse_poll,
    parse_timezone_row,
)

US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
STATUS_FIELDS = ("store_id", "timestamp_utc", "status")
#: Python's csv module refuses longer fields.
CSV_FIELD_LIMIT = csv.field_size_limit()
WRONG_WIDTH = "(row)"

Draw = Callable[[st.SearchStrategy[Any]], Any]


@dataclass(frozen=True)
class Expect:
    """What must become of one row.

    Accepted as `value` (the parsed row), or rejected blaming one of `fields`
    (`fields` None: rejected, whatever field is blamed).
    """

    value: tuple[Any, ...] | None = None
    fields: frozenset[str] | None = None

    @property
    def accepted(self) -> bool:
        return self.value is not None


def rejected(*fields: str) -> Expect:
    return Expect(fields=frozenset(fields))


REJECTED_ANYHOW = Expect()


def epoch_us(moment: datetime) -> int:
    return (moment.replace(tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)


def without_line_breaks(strategy: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    return strategy.filter(lambda text: "\r" not in text and "\n" not in text)


# ---------------------------------------------------------------------------------------
# Field values: strategies of (text, parsed value) for valid ones, of text for invalid ones
# ---------------------------------------------------------------------------------------

_ID_CHARS = st.characters(categories=("L", "N")) | st.sampled_from("-_.:/#@+=")
#: A formula character (=, +, -, @) may be anywhere but first (CSV injection).
valid_store_ids = st.tuples(
    _ID_CHARS.filter(lambda char: char not in FORMULA_PREFIXES),
    st.text(_ID_CHARS, max_size=19),
).map("".join)
#: White space (ASCII and Unicode, line separators included), a comma, controls, format chars.
_NOT_IN_IDS = [" ", ",", "\t", "\x00", "\x0c", "\x1c", "\x7f", "\x85", "\xa0", "\u200b",
               "\u2028", "\ufeff"]
invalid_store_ids = st.one_of(
    st.just(""),
    st.tuples(valid_store_ids, st.sampled_from(_NOT_IN_IDS), valid_store_ids).map("".join),
    st.text(_ID_CHARS, min_size=129, max_size=200),
    st.tuples(st.sampled_from(FORMULA_PREFIXES), st.text(_ID_CHARS, max_size=19)).map("".join),
)

#: Over every field's own limit; the longest is over the csv module's field limit too.
huge_texts = st.tuples(
    st.sampled_from(["x", "\xe9", "\U0001f600"]), st.sampled_from([300, 5_000, CSV_FIELD_LIMIT + 1])
).map(lambda pair: pair[0] * pair[1])


@st.composite
def valid_timestamps(draw: Draw) -> tuple[str, int]:
    """A timestamp in one of the accepted forms and the instant it names (epoch µs)."""
    instant = draw(st.datetimes(min_value=datetime(1, 1, 2), max_value=datetime(2024, 12, 30)))
    zone = draw(st.sampled_from(["Z", "z", " UTC", "+hh:mm", "+hhmm"]))
    offset = draw(st.integers(-(23 * 60 + 59), 23 * 60 + 59)) if zone[0] == "+" else 0
    if zone[0] == "+":
        hours, minutes = divmod(abs(offset), 60)
        colon = ":" if zone == "+hh:mm" else ""
        zone = f"{'-' if offset < 0 else '+'}{hours:02d}{colon}{minutes:02d}"
    local = instant + timedelta(minutes=offset)
    digits = draw(st.integers(0, 9))
    fraction = (f"{instant.microsecond:06d}" + draw(st.text("0123456789", min_size=3,
                                                            max_size=3)))[:digits]
    text = (
        f"{local.year:04d}-{local.month:02d}-{local.day:02d}{draw(st.sampled_from('T '))}"
        f"{local.hour:02d}:{local.minute:02d}:{local.second:02d}"
        + (f".{fraction}" if digits else "") + zone
    )
    micros = int(fraction[:6].ljust(6, "0")) if digits else 0  # digits past µs are cut
    return text, epoch_us(instant.replace(microsecond=0)) + micros


#: Well-formed, but more than a day ahead of any clock running these tests.
future_timestamps = st.datetimes(
    min_value=datetime.now() + timedelta(days=3), max_value=datetime(9999, 12, 30)
).map(lambda moment: moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ"))

_TIMESTAMP_SHAPE = re.compile(r"\d{4}-\d\d-\d\d[T ]\d\d:\d\d:\d\d", re.ASCII)
#: `2023-06-15T12:30:45+01:00` with one part replaced by an impossible value.
_IMPOSSIBLE_PARTS = {
    "year": st.just("0000"),
    "month": st.sampled_from(["00", "13", "99"]),
    "day": st.sampled_from(["00", "31", "32", "99"]),  # June has 30 days
    "hour": st.integers(24, 99).map(str),
    "minute": st.integers(60, 99).map(str),
    "second": st.integers(60, 99).map(str),
    "offset": st.sampled_from(["+24:00", "-99:00", "+05:60", "+0599"]),
}


@st.composite
def impossible_timestamps(draw: Draw) -> str:
    parts = {"year": "2023", "month": "06", "day": "15", "hour": "12", "minute": "30",
             "second": "45", "offset": "+01:00"}
    broken = draw(st.sampled_from(sorted(_IMPOSSIBLE_PARTS)))
    parts[broken] = draw(_IMPOSSIBLE_PARTS[broken])
    return "{year}-{month}-{day}T{hour}:{minute}:{second}{offset}".format(**parts)


@st.composite
def out_of_range_timestamps(draw: Draw) -> str:
    """Each part in range, but the instant is before year 1 or after year 9999 in UTC."""
    minutes = draw(st.integers(1, 23 * 60 + 59))
    offset = f"{minutes // 60:02d}:{minutes % 60:02d}"
    if draw(st.booleans()):
        return f"0001-01-01T00:00:00.{draw(st.integers(0, 59)):02d}+{offset}"
    return f"9999-12-31T23:59:59.999-{offset}"


invalid_timestamps = st.one_of(
    st.text(max_size=40).filter(lambda text: not _TIMESTAMP_SHAPE.match(text)),
    impossible_timestamps(),
    out_of_range_timestamps(),
    st.sampled_from([
        "2023-01-22", "2023-01-22T12:00:00", "2023-01-22T12:00Z", "1674000000",
        "2023-01-22T12:00:00+05", "2023-01-22T12:00:00.Z", "2023-01-22T12:00:00.1234567890Z",
        "2023-01-22T12:00:00 utc", "2023-01-22T12:00:00Z\n", "2023-02-29T00:00:00Z",
    ]),
)

valid_statuses = st.sampled_from(["active", "inactive"]).flatmap(
    lambda word: st.tuples(*(st.sampled_from([c, c.upper()]) for c in word)).map("".join)
).map(lambda text: (text, text.lower()))
invalid_statuses = st.text(max_size=12).filter(
    lambda text: text.lower() not in ("active", "inactive")
)

valid_days = st.integers(0, 6).map(lambda day: (str(day), day))
invalid_days = st.one_of(
    st.sampled_from(["7", "-1", "01", "Monday", " 1", "1.0", "\uff11"]),
    st.text(max_size=6).filter(lambda text: text not in set("0123456")),
)


@st.composite
def valid_local_times(draw: Draw) -> tuple[str, int]:
    hour, minute, second = draw(st.integers(0, 23)), draw(st.integers(0, 59)), draw(
        st.integers(0, 59))
    text, micros = f"{hour:02d}:{minute:02d}", 0
    if draw(st.booleans()):
        text += f":{second:02d}"
        fraction = draw(st.text("0123456789", min_size=0, max_size=6))
        if fraction:
            text += f".{fraction}"
            micros = int(fraction.ljust(6, "0"))
    else:
        second = 0
    return text, (hour * 3600 + minute * 60 + second) * US + micros


_LOCAL_TIME = re.compile(r"([01]\d|2[0-3]):[0-5]\d(:[0-5]\d(\.\d{1,6})?)?", re.ASCII)
invalid_local_times = st.one_of(
    st.sampled_from(["24:00", "12:60", "9:00", "12:00:60", "12:00:00.1234567", "12", "9am",
                     "12:00:00 ", "\uff11\uff12:00"]),
    st.text(max_size=12).filter(lambda text: not _LOCAL_TIME.fullmatch(text)),
)

ZONES = ["America/New_York", "America/Chicago", "Asia/Kolkata", "Europe/London", "UTC",
         "Australia/Lord_Howe", "Pacific/Chatham", "America/Argentina/Buenos_Aires"]
valid_zones = st.sampled_from(ZONES).map(lambda zone: (zone, zone))


def _loadable_zone(name: str) -> bool:
    try:
        ZoneInfo(name)
    except Exception:
        return False
    return True


invalid_zones = st.one_of(
    st.sampled_from(["", "localtime", "Mars/Olympus_Mons", "../../etc/passwd", "america/chicago",
                     "America/New York", "UTC ", "/UTC"]),
    st.text(max_size=20).filter(lambda text: not _loadable_zone(text)),
)

# ---------------------------------------------------------------------------------------
# The three CSV inputs
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Field:
    name: str
    valid: st.SearchStrategy[tuple[str, Any]]
    invalid: st.SearchStrategy[str]


@dataclass(frozen=True)
class InputKind:
    """One of the three inputs: its fields, and how a row of parsed fields becomes a value."""

    name: str
    fields: tuple[Field, ...]
    #: The per-row validator, which a garbage row is judged by.
    parse_row: Callable[[dict[str, str]], tuple[Any, ...]]
    #: The reader's value of a good row, from the parsed fields in `fields` order.
    value: Callable[[list[Any]], tuple[Any, ...]]


STORE_ID = Field("store_id", valid_store_ids.map(lambda text: (text, text)), invalid_store_ids)
STATUS = InputKind(
    "status",
    (
        STORE_ID,
        Field("status", valid_statuses, invalid_statuses),
        Field("timestamp_utc", valid_timestamps(), invalid_timestamps),
    ),
    lambda row: tuple(parse_poll(row)),
    lambda parsed: (parsed[0], parsed[2], parsed[1]),
)
HOURS = InputKind(
    "hours",
    (
        STORE_ID,
        Field("day", valid_days, invalid_days),
        Field("start_time_local", valid_local_times(), invalid_local_times),
        Field("end_time_local", valid_local_times(), invalid_local_times),
    ),
    lambda row: tuple(parse_hours_row(row)),
    tuple,
)
TIMEZONES = InputKind(
    "timezones",
    (STORE_ID, Field("timezone_str", valid_zones, invalid_zones)),
    lambda row: tuple(parse_timezone_row(row)),
    tuple,
)
KINDS = (STATUS, HOURS, TIMEZONES)


@dataclass(frozen=True)
class CsvRow:
    #: Line of the file (or body) on which the record starts.
    line: int
    expect: Expect
    #: The record's text without its line break (None when it is not UTF-8).
    text: str | None


@dataclass(frozen=True)
class CsvFile:
    data: bytes
    header: list[str]
    rows: list[CsvRow]

    def __repr__(self) -> str:
        data = self.data if len(self.data) < 2000 else self.data[:1000]
        more = "" if data is self.data else f" + {len(self.data) - 1000} more bytes"
        return f"CsvFile(data={data!r}{more}, header={self.header!r}, rows={len(self.rows)})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # what Hypothesis prints of a failing example

    @property
    def good(self) -> list[tuple[Any, ...]]:
        return [row.expect.value for row in self.rows if row.expect.value is not None]

    @property
    def bad_lines(self) -> list[int]:
        return [row.line for row in self.rows if not row.expect.accepted]


def _quoted(cell: str) -> str:
    if any(special in cell for special in ',"\r\n'):
        return '"' + cell.replace('"', '""') + '"'
    return cell


def _line_breaks(data: bytes) -> int:
    return len(re.findall(rb"\r\n|\r|\n", data))


def _judge(kind: InputKind, header: list[str], cells: list[str]) -> Expect:
    """The fate of a garbage row, by the per-row validators (field by field)."""
    if len(cells) != len(header):
        return rejected(WRONG_WIDTH)
    record = dict(zip(header, cells, strict=True))
    bad = set()
    for field in kind.fields:
        name = _column_of(field.name, header)
        try:
            kind.parse_row({**_good_example(kind, header), name: record[name]})
        except RowError as error:
            bad.add(error.field)
    if bad:
        return rejected(*bad)
    return Expect(value=kind.parse_row(record))


def _column_of(field: str, header: list[str]) -> str:
    return DAY_ALIAS if field == "day" and DAY_ALIAS in header else field


_GOOD_CELLS = {"store_id": "s", "status": "active", "timestamp_utc": "2023-01-22T12:00:00Z",
               "day": "0", "start_time_local": "09:00", "end_time_local": "17:00",
               "timezone_str": "UTC"}


def _good_example(kind: InputKind, header: list[str]) -> dict[str, str]:
    return {_column_of(field.name, header): _GOOD_CELLS[field.name] for field in kind.fields}


@st.composite
def csv_files(
    draw: Draw,
    kind: InputKind,
    *,
    http: bool = False,
    max_rows: int = 25,
) -> CsvFile:
    """A CSV input: header (any column order) and good, broken, garbage and blank rows.

    `http`: as `POST /events` takes it: exactly the three columns, every record on one
    line, UTF-8, and far-future polls rejected. Otherwise as the file readers take it:
    extra columns, the `dayOfWeek` alias, quoted line breaks, invalid UTF-8, a BOM.
    """
    columns = [field.name for field in kind.fields]
    if kind is HOURS and not http and draw(st.booleans()):
        columns[1] = DAY_ALIAS
    extra = [] if http else draw(st.lists(st.sampled_from(["extra", "note", "x y"]),
                                          unique=True, max_size=2))
    header = draw(st.permutations(columns + extra))
    newline = draw(st.sampled_from(["\n", "\r\n"])).encode()
    bom = b"\xef\xbb\xbf" if not http and draw(st.booleans()) else b""
    parts = [bom + ",".join(header).encode() + newline]
    line = 2
    rows: list[CsvRow] = []
    cell_text = st.text(max_size=12) if not http else without_line_breaks(st.text(max_size=12))
    for _ in range(draw(st.integers(0, max_rows))):
        shape = draw(st.sampled_from(
            ["good", "good", "good", "broken", "broken", "width", "garbage", "blank"]
            + ([] if http else ["not utf-8", "garbage bytes"])
            + (["future"] if http and kind is STATUS else [])
        ))
        if shape == "blank":
            parts.append(newline)
            line += 1
            continue
        if shape in ("garbage", "garbage bytes"):
            # No quotes: an unmatched one would swallow the lines after it (CSV's rules).
            if shape == "garbage":
                text = draw(without_line_breaks(st.text(min_size=1, max_size=40)).filter(
                    lambda t: '"' not in t and t.strip()))
                data = text.encode()
            else:
                data = draw(st.binary(min_size=1, max_size=40).filter(
                    lambda b: not set(b) & set(b'"\r\n') and b.strip()))
                text = None
            cells = data.decode("utf-8", "surrogateescape").split(",")
            expect = _judge(kind, header, cells)
            parts.append(data + newline)
            rows.append(CsvRow(line, expect, text))
            line += 1
            continue
        values: dict[str, tuple[str, Any]] = {
            _column_of(field.name, header): draw(field.valid) for field in kind.fields
        }
        cells_of = {column: text for column, (text, _) in values.items()}
        for column in extra:
            cells_of[column] = draw(cell_text)
        encoded: dict[str, bytes] = {}
        broken_field = draw(st.sampled_from(kind.fields))
        broken_column = _column_of(broken_field.name, header)
        if shape == "broken":
            bad_values = st.one_of(broken_field.invalid, huge_texts)
            bad = draw(without_line_breaks(bad_values) if http else bad_values)
            cells_of[broken_column] = bad
            blamed = {broken_column}
            if len(bad) > CSV_FIELD_LIMIT:
                # The row-by-row reader cannot read the field, nor tell where its record
                # ends: the rest of the line is skipped, so no quoted line break after it.
                blamed.add(WRONG_WIDTH)
                for column in extra:
                    cells_of[column] = re.sub(r"[\r\n]", "", cells_of[column])
            expect = rejected(*blamed)
        elif shape == "not utf-8":
            encoded[broken_column] = draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80"]))
            expect = rejected(broken_column)
        elif shape == "future":
            cells_of["timestamp_utc"] = draw(future_timestamps)
            expect = rejected("timestamp_utc")
        elif shape == "width":
            expect = rejected(WRONG_WIDTH)
        else:
            parsed = [values[_column_of(field.name, header)][1] for field in kind.fields]
            expect = Expect(value=kind.value(parsed))
        for column, text in cells_of.items():
            encoded.setdefault(column, _quoted(text).encode())
        cells = [encoded[column] for column in header]
        if shape == "width":
            if draw(st.booleans()) and len(cells) > 1:
                del cells[draw(st.integers(0, len(cells) - 1))]
            else:
                cells.append(_quoted(draw(cell_text)).encode())
        data = b",".join(cells)
        if cells == [b""]:
            data = b'""'  # a lone empty cell, not a blank line
        parts.append(data + newline)
        text = data.decode("utf-8") if shape != "not utf-8" else None
        rows.append(CsvRow(line, expect, text))
        line += _line_breaks(data) + 1
    body = b"".join(parts)
    if rows and draw(st.booleans()):
        body = body.removesuffix(newline)  # no line break after the last record
    return CsvFile(body, header, rows)


# ---------------------------------------------------------------------------------------
# Polls as JSON (POST /events, the store-status topic)
# ---------------------------------------------------------------------------------------

_WRONG_TYPES = st.sampled_from([0, -1, 1.5, True, False, [], {}, ["active"], {"a": 1}])
_JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(
    max_size=8)
#: Field names a future version might give a meaning to are never used as "unknown".
_RESERVED = {*STATUS_FIELDS, "observations"}
_INVALID_OF = {"store_id": invalid_store_ids, "status": invalid_statuses,
               "timestamp_utc": invalid_timestamps}


@st.composite
def poll_records(draw: Draw) -> tuple[dict[str, Any], Expect]:
    """A JSON object meant as one poll: valid, or broken in one known way.

    The expected value of a valid one is (store_id, epoch µs, status).
    """
    store_id = draw(valid_store_ids)
    stamp, micros = draw(valid_timestamps())
    status, canonical_status = draw(valid_statuses)
    record: dict[str, Any] = {"store_id": store_id, "timestamp_utc": stamp, "status": status}
    field = draw(st.sampled_from(STATUS_FIELDS))
    breakage = draw(st.sampled_from(
        ["none", "none", "none", "missing", "null", "type", "value", "value", "huge", "unknown",
         "future"]
    ))
    if breakage == "none":
        expect = Expect(value=(store_id, micros, canonical_status))
    elif breakage == "unknown":
        name = draw(st.text(max_size=10).filter(lambda key: key not in _RESERVED))
        record[name] = draw(_JSON_SCALARS)
        expect = rejected(name)
    else:
        expect = rejected(field)
        if breakage == "missing":
            del record[field]
        elif breakage == "null":
            record[field] = None
        elif breakage == "type":
            record[field] = draw(_WRONG_TYPES)
        elif breakage == "value":
            record[field] = draw(_INVALID_OF[field])
        elif breakage == "huge":
            record[field] = draw(huge_texts)
        else:
            record["timestamp_utc"] = draw(future_timestamps)
            expect = rejected("timestamp_utc")
    order = draw(st.permutations(list(record)))
    return {key: record[key] for key in order}, expect


#: JSON texts that are not objects.
non_objects = st.sampled_from(["7", '"x"', "null", "[]", "true", "[{}]", '"{}"', "-0.5e3"])
#: Valid JSON that Python's json module cannot take: over 4300 digits, or nested too deeply.
unreadable_json = st.sampled_from([
    '{"store_id": ' + "1" * 5000 + "}",
    "[" * 100_000 + "]" * 100_000,
    '{"a": ' * 50_000 + "1" + "}" * 50_000,
])
any_json = st.recursive(
    _JSON_SCALARS,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.sampled_from([*STATUS_FIELDS, "x", ""]) | st.text(max_size=6), children,
                      max_size=4),
    max_leaves=12,
)
