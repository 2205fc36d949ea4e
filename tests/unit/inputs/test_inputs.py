"""Per-row validators, the vectorised timestamp parser and the CSV readers."""
from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from storemon.inputs.csv_files import (
    InputFileError,
    _BadRows,
    _read_status_rows,
    read_hours_csv,
    read_status_csv,
    read_timezones_csv,
)
from storemon.inputs.timestamps import parse_timestamps_arrow
from storemon.inputs.values import (
    RowError,
    parse_day,
    parse_hours_row,
    parse_local_time,
    parse_poll,
    parse_status,
    parse_store_id,
    parse_timestamp,
    validate_timezone,
)
from storemon.timebase import format_timestamp

US = 1_000_000
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def epoch_us(*args: int) -> int:
    return (datetime(*args, tzinfo=UTC) - EPOCH) // timedelta(microseconds=1)


# ---------------------------------------------------------------------------------------
# Per-row validators
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("2023-01-22 12:09:39.388884 UTC", epoch_us(2023, 1, 22, 12, 9, 39, 388884)),
    ("2023-01-22 12:09:39.38888 UTC", epoch_us(2023, 1, 22, 12, 9, 39, 388880)),
    ("2023-01-22 12:09:39 UTC", epoch_us(2023, 1, 22, 12, 9, 39)),
    ("2023-01-22T12:09:39.388884Z", epoch_us(2023, 1, 22, 12, 9, 39, 388884)),
    ("2023-01-22T12:09:39z", epoch_us(2023, 1, 22, 12, 9, 39)),
    ("2023-01-22T12:09:39+00:00", epoch_us(2023, 1, 22, 12, 9, 39)),
    ("2023-01-22T12:09:39.5+05:30", epoch_us(2023, 1, 22, 6, 39, 39, 500000)),
    ("2023-01-22 12:09:39-0800", epoch_us(2023, 1, 22, 20, 9, 39)),
    ("2023-01-22T12:09:39.123456789Z", epoch_us(2023, 1, 22, 12, 9, 39, 123456)),
    ("2024-02-29T00:00:00Z", epoch_us(2024, 2, 29)),
    ("1969-12-31T23:59:59.9999999Z", -1),
])
def test_parse_timestamp_accepts_the_spec_forms(text, expected):
    assert parse_timestamp(text) == expected


INVALID_TIMESTAMPS = [
    "", "2023-01-22", "2023-01-22 12:09 UTC", "2023-01-22 12:09:39", "2023-02-29T00:00:00Z",
    "2023-01-22T24:00:00Z", "2023-01-22T12:60:00Z", "2023-01-22T12:00:60Z",
    "2023-1-22T12:00:00Z", "2023-01-22t12:00:00Z", "2023-01-22T12:00:00.Z",
    "2023-01-22T12:00:00.1234567890Z", "2023-01-22T12:00:00+24:00", "2023-01-22T12:00:00+05",
    " 2023-01-22T12:00:00Z", "2023-01-22T12:00:00Z ", "2023-01-22T12:00:00 utc",
    "\uff12\uff10\uff12\uff13-01-22T12:00:00Z",  # full-width digits
    "0000-01-01T00:00:00Z", "2023-01-22T12:00:00.12345678xZ",
    "2023-00-10T12:00:00Z", "2023-13-10T12:00:00Z", "2023-04-31T12:00:00Z",
    "2023-01-00T12:00:00Z", "2023-01-22T12:00:00+05:60", "2023-01-22T12:00:00+05:3",
    "2023-01-22T12:00:00+5:30", "2023-01-22T12:00:00.123 UTC ", "2023-01-22T12:00:00 UTC\n",
]


@pytest.mark.parametrize("text", INVALID_TIMESTAMPS)
def test_parse_timestamp_rejects_everything_else(text):
    with pytest.raises(RowError) as error:
        parse_timestamp(text)
    assert error.value.field == "timestamp_utc"


def test_format_timestamp_round_trips():
    moment = epoch_us(2023, 1, 22, 12, 9, 39, 388884)
    assert format_timestamp(moment) == "2023-01-22T12:09:39.388884Z"
    assert parse_timestamp(format_timestamp(moment)) == moment


def test_parse_status_is_case_insensitive_and_lower_cases():
    assert parse_status("ACTIVE") == "active"
    assert parse_status("Inactive") == "inactive"
    for text in ["", "up", "active ", 1]:
        with pytest.raises(RowError, match="status"):
            parse_status(text)


def test_parse_day():
    assert [parse_day(str(d)) for d in range(7)] == list(range(7))
    assert parse_day(6) == 6
    for value in ["7", "-1", "01", "", "Monday", True, 1.5, 9]:
        with pytest.raises(RowError):
            parse_day(value)


@pytest.mark.parametrize(("text", "expected"), [
    ("09:00", 9 * 3600 * US),
    ("09:00:00", 9 * 3600 * US),
    ("23:59:59", (86400 - 1) * US),
    ("23:59:59.999999", 86400 * US - 1),
    ("00:00:00.5", 500000),
])
def test_parse_local_time(text, expected):
    assert parse_local_time(text) == expected


@pytest.mark.parametrize("text", ["9:00", "24:00", "12:60", "12:00:60", "12:00:00.1234567",
                                  "12", "", "12:00:00 "])
def test_parse_local_time_rejects(text):
    with pytest.raises(RowError):
        parse_local_time(text)


def test_validate_timezone():
    assert validate_timezone("America/New_York") == "America/New_York"
    for name in ["Mars/Olympus", "", "../../etc/passwd", "localtime", "america/new york"]:
        with pytest.raises(RowError, match="timezone_str"):
            validate_timezone(name)


def test_store_ids_are_opaque_strings():
    for store_id in ["0042", "8419537941919820732", "0b1c7e52-6d55-4d2e-8d5b-3f1c2a9e4f10"]:
        assert parse_store_id(store_id) == store_id
    for bad in ["", "a b", "a,b", "x" * 129, "tab\there", 42]:
        with pytest.raises(RowError, match="store_id"):
            parse_store_id(bad)


def test_record_parsers_name_the_field():
    with pytest.raises(RowError) as error:
        parse_poll({"store_id": "1", "status": "active"})
    assert error.value.field == "timestamp_utc"
    assert error.value.reason == "is required"
    row = parse_hours_row({"store_id": "1", "dayOfWeek": "3", "start_time_local": "09:00",
                           "end_time_local": "17:00"})
    assert (row.day, row.start_us, row.end_us) == (3, 9 * 3600 * US, 17 * 3600 * US)
    with pytest.raises(RowError) as error:
        parse_hours_row({"store_id": "1", "dayOfWeek": "8", "start_time_local": "09:00",
                         "end_time_local": "17:00"})
    assert error.value.field == "dayOfWeek"


# ---------------------------------------------------------------------------------------
# Vectorised timestamps == parse_timestamp
# ---------------------------------------------------------------------------------------

ZONE_SUFFIXES = ["Z", "z", " UTC", "+00:00", "-05:00", "+0530", "-0000", "+23:59"]
moments = st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31))


@st.composite
def timestamp_texts(draw, suffixes=ZONE_SUFFIXES, mutate=True):
    moment = draw(moments)
    digits = draw(st.integers(0, 9))
    fraction = f"{moment.microsecond:06d}{draw(st.integers(0, 999)):03d}"[:digits]
    text = moment.strftime("%Y-%m-%d") + draw(st.sampled_from("T ")) + moment.strftime(
        "%H:%M:%S") + (f".{fraction}" if digits else "") + draw(st.sampled_from(suffixes))
    if mutate and draw(st.integers(0, 3)) == 0:
        position = draw(st.integers(0, len(text) - 1))
        replacement = draw(st.sampled_from(["", "0", "9", ":", "-", ".", " ", "Z", "x", "é"]))
        text = text[:position] + replacement + text[position + 1:]
    return text


def per_row(texts):
    values, ok = [], []
    for text in texts:
        try:
            values.append(parse_timestamp(text))
            ok.append(True)
        except RowError:
            values.append(0)
            ok.append(False)
    return np.array(values, dtype=np.int64), np.array(ok)


def assert_same_as_per_row(texts, column):
    values, ok = parse_timestamps_arrow(column)
    expected_values, expected_ok = per_row(texts)
    assert ok.tolist() == expected_ok.tolist()
    assert values[ok].tolist() == expected_values[ok].tolist()


@settings(max_examples=150, deadline=None)
@given(st.lists(timestamp_texts(), min_size=1, max_size=60))
def test_vectorised_timestamps_equal_the_row_parser(texts):
    array = pa.array(texts, pa.string())
    assert_same_as_per_row(texts, array)
    cut = len(texts) // 3
    sliced = pa.chunked_array([array.slice(0, cut), array.slice(cut)], pa.string())
    assert_same_as_per_row(texts, sliced)


@settings(max_examples=60, deadline=None)
@given(st.lists(timestamp_texts(suffixes=[" UTC"]), min_size=1, max_size=60),
       st.integers(0, 5))
def test_uniform_suffix_fast_path_equals_the_row_parser(texts, cut):
    # Chunked and sliced, as the CSV reader hands them over.
    array = pa.array(texts, pa.string())
    cut = min(cut, len(texts))
    column = pa.chunked_array([array.slice(0, cut), array.slice(cut)], pa.string())
    assert_same_as_per_row(texts, column)
    zulu = [text[:-4] + "Z" if text.endswith(" UTC") else text for text in texts]
    assert_same_as_per_row(zulu, pa.chunked_array([pa.array(zulu, pa.string())]))


def test_vectorised_timestamps_many_rows():
    texts = [f"2023-01-{day:02d}T{hour:02d}:{minute:02d}:07.{minute * 7:0{day % 9 + 1}d}Z"
             for day in range(1, 29) for hour in range(24) for minute in range(0, 60, 7)]
    texts[5] = "2023-01-01T00:00:0x.1Z"  # one bad row among thousands
    assert_same_as_per_row(texts, pa.array(texts, pa.string()))


# ---------------------------------------------------------------------------------------
# CSV files
# ---------------------------------------------------------------------------------------


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def test_read_status_csv_accepts_every_form(tmp_path):
    path = write(tmp_path, "status.csv", "\ufefftimestamp_utc,extra,status,store_id\n"
                 "2023-01-22 12:09:39.388884 UTC,x,ACTIVE,8419537941919820732\n"
                 "2023-01-22T12:10:00Z,x,Inactive,0b1c7e52-6d55-4d2e-8d5b-3f1c2a9e4f10\n"
                 "2023-01-22T12:10:00+01:00,x,active,0042\n")
    result = read_status_csv(path)
    assert result.bad_rows == []
    assert result.rows_read == 3
    data = result.data
    assert data.store_ids[data.store_index].tolist() == [
        "8419537941919820732", "0b1c7e52-6d55-4d2e-8d5b-3f1c2a9e4f10", "0042"]
    assert data.timestamp_us.tolist() == [
        epoch_us(2023, 1, 22, 12, 9, 39, 388884), epoch_us(2023, 1, 22, 12, 10),
        epoch_us(2023, 1, 22, 11, 10)]
    assert data.active.tolist() == [True, False, True]


STATUS_WITH_BAD_ROWS = (
    "store_id,status,timestamp_utc\n"
    "1,active,2023-01-22 12:09:39 UTC\n"
    "2,active,2023-01-22 25:09:39 UTC\n"    # line 3: bad timestamp
    "3,active,2023-01-22 12:09:39 UTC\n"
    "4,sleeping,2023-01-22 12:09:39 UTC\n"  # line 5: bad status
    ",active,2023-01-22 12:09:39 UTC\n"     # line 6: empty store id
)


def test_bad_rows_are_skipped_and_named_by_file_line_and_field(tmp_path):
    path = write(tmp_path, "status.csv", STATUS_WITH_BAD_ROWS)
    result = read_status_csv(path)
    assert [(bad.line, bad.field) for bad in result.bad_rows] == [
        (3, "timestamp_utc"), (5, "status"), (6, "store_id")]
    assert str(result.bad_rows[0]).startswith(f"{path}, line 3, field timestamp_utc: ")
    assert result.data.store_ids[result.data.store_index].tolist() == ["1", "3"]
    assert result.rows_read == 5


def test_strict_mode_fails_on_the_first_bad_row(tmp_path):
    path = write(tmp_path, "status.csv", STATUS_WITH_BAD_ROWS)
    with pytest.raises(InputFileError, match=r"line 3, field timestamp_utc"):
        read_status_csv(path, strict=True)


def test_malformed_csv_is_read_row_by_row_with_exact_lines(tmp_path):
    path = write(tmp_path, "status.csv",
                 "store_id,status,timestamp_utc\n"
                 "1,active,2023-01-22 12:09:39 UTC\n"
                 "\n"                                      # blank line: skipped
                 "2,active\n"                              # line 4: a field short
                 '"3","inactive","2023-01-22\n12:09:39 UTC"\n'  # lines 5-6: bad timestamp
                 '"4","inactive","2023-01-22 12:09:40 UTC"\n')
    result = read_status_csv(path)
    assert [(bad.line, bad.field) for bad in result.bad_rows] == [
        (4, "(row)"), (5, "timestamp_utc")]
    assert result.data.store_ids[result.data.store_index].tolist() == ["1", "4"]
    assert result.data.active.tolist() == [True, False]
    with pytest.raises(InputFileError, match="line 4"):
        read_status_csv(path, strict=True)


def test_read_hours_csv_with_day_of_week_alias_and_bad_rows(tmp_path):
    path = write(tmp_path, "hours.csv",
                 "store_id,dayOfWeek,start_time_local,end_time_local\n"
                 "1,0,09:00:00,17:00:00\n"
                 "1,7,09:00:00,17:00:00\n"
                 "2,6,22:00,02:00:00.5\n"
                 "3,1,25:00:00,02:00:00\n")
    result = read_hours_csv(path)
    assert [(bad.line, bad.field) for bad in result.bad_rows] == [
        (3, "dayOfWeek"), (5, "start_time_local")]
    hours = result.data
    assert hours.store_id.tolist() == ["1", "2"]
    assert hours.day.tolist() == [0, 6]
    assert hours.start_us.tolist() == [9 * 3600 * US, 22 * 3600 * US]
    assert hours.end_us.tolist() == [17 * 3600 * US, 2 * 3600 * US + 500000]


def test_read_timezones_csv(tmp_path):
    path = write(tmp_path, "tz.csv", "store_id,timezone_str\n1,America/Denver\n2,Mars/Base\n")
    result = read_timezones_csv(path)
    assert result.data.store_id.tolist() == ["1"]
    assert result.data.timezone_str.tolist() == ["America/Denver"]
    assert [(bad.line, bad.field) for bad in result.bad_rows] == [(3, "timezone_str")]


def test_file_level_errors(tmp_path):
    with pytest.raises(InputFileError, match="missing column 'timestamp_utc'"):
        read_status_csv(write(tmp_path, "a.csv", "store_id,status\n1,active\n"))
    with pytest.raises(InputFileError, match="empty file"):
        read_hours_csv(write(tmp_path, "b.csv", ""))
    with pytest.raises(InputFileError, match="cannot read"):
        read_timezones_csv(tmp_path / "missing.csv")


def test_header_only_files_give_empty_data(tmp_path):
    result = read_status_csv(write(tmp_path, "s.csv", "store_id,status,timestamp_utc\n"))
    assert result.rows_read == 0
    assert len(result.data.timestamp_us) == 0


def test_fast_and_row_by_row_readers_agree(tmp_path):
    path = write(tmp_path, "status.csv", "store_id,status,timestamp_utc\n" + "".join(
        f"{i % 7},{'active' if i % 3 else 'INACTIVE'},2023-01-{1 + i % 28:02d}T10:00:{i % 60:02d}"
        f".{i}Z\n" for i in range(500)))
    fast = read_status_csv(path).data
    slow = _read_status_rows(path, _BadRows(str(path), strict=False)).data
    for data in (fast, slow):
        assert data.store_ids[data.store_index].tolist() == [str(i % 7) for i in range(500)]
    assert fast.timestamp_us.tolist() == slow.timestamp_us.tolist()
    assert fast.active.tolist() == slow.active.tolist()


# ---------------------------------------------------------------------------------------
# The real Loop data
# ---------------------------------------------------------------------------------------

LOOP_DIR = Path(__file__).resolve().parents[3].parent / "shared" / "data" / "loop-2023"
needs_loop_data = pytest.mark.skipif(
    not (LOOP_DIR / "store_status_sample.csv").is_file(),
    reason=f"the Loop data set is not at {LOOP_DIR}",
)


@needs_loop_data
def test_the_real_loop_files_parse_cleanly():
    from storemon.uptime.engine import compute

    status = read_status_csv(LOOP_DIR / "store_status_sample.csv", strict=True)
    hours = read_hours_csv(LOOP_DIR / "menu_hours.csv", strict=True)
    zones = read_timezones_csv(LOOP_DIR / "timezones.csv", strict=True)
    assert (status.rows_read, hours.rows_read, zones.rows_read) == (5032, 86198, 13559)
    report = compute(status.data, hours.data, zones.data)
    assert len(report) == len(set(status.data.store_index.tolist()))
    assert np.array_equal(report.uptime_us + report.downtime_us, report.business_us)
    assert (report.figures[:, [0, 3]] <= 6000).all()  # hour window, in minutes


@pytest.mark.parametrize("texts", [
    ["2023-01-22 UTC", "2023-01-22 12:09:39 UTC"],
    ["2023-01-22 12 UTC", "2023-01-22 12:09 UTC"],
    ["2023-01-22T12:09Z", "2023-01-22T12:09:39Z"],
    ["2023-01-22 12:09:39+05 UTC"],
    ["9999-12-31 23:59:59.5 UTC", "0001-01-01 00:00:00 UTC"],  # past nanosecond range
])
def test_short_or_out_of_range_forms_are_not_taken_by_the_fast_path(texts):
    assert_same_as_per_row(texts, pa.array(texts, pa.string()))


def test_vectorised_parser_rejects_the_invalid_forms_too():
    # Valid rows after the invalid ones keep those away from the buffer's end, where the
    # row-by-row parser takes over.
    texts = INVALID_TIMESTAMPS + ["2023-01-22T12:00:00+05:30"] * 20
    assert_same_as_per_row(texts, pa.array(texts, pa.string()))
