"""Fuzzing the CSV readers with malformed files.

Never an exception but InputFileError; every bad row named by file, line and field;
every good row around the bad ones read, in order, with the right values.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from fuzzing import HOURS, KINDS, STATUS, CsvFile, InputKind, csv_files, valid_store_ids
from hypothesis import given, settings
from hypothesis import strategies as st

from storemon.inputs.csv_files import (
    InputFileError,
    ReadResult,
    read_hours_csv,
    read_status_csv,
    read_timezones_csv,
)

READERS = {"status": read_status_csv, "hours": read_hours_csv, "timezones": read_timezones_csv}


@pytest.fixture(scope="module")
def folder(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("fuzz-readers")


def values_read(kind: InputKind, result: ReadResult[Any]) -> list[tuple[Any, ...]]:
    data = result.data
    if kind is STATUS:
        return list(zip(
            data.store_ids[data.store_index].tolist(),
            data.timestamp_us.tolist(),
            ["active" if active else "inactive" for active in data.active.tolist()],
            strict=True,
        ))
    if kind is HOURS:
        return list(zip(data.store_id.tolist(), data.day.tolist(), data.start_us.tolist(),
                        data.end_us.tolist(), strict=True))
    return list(zip(data.store_id.tolist(), data.timezone_str.tolist(), strict=True))


def line_count(data: bytes) -> int:
    return len(re.findall(rb"\r\n|\r|\n", data)) + 1


def check_read(kind: InputKind, path: Path, case: CsvFile) -> None:
    result = READERS[kind.name](path)
    assert values_read(kind, result) == case.good
    assert result.rows_read == len(case.rows)
    assert [bad.line for bad in result.bad_rows] == case.bad_lines
    expected = [row for row in case.rows if not row.expect.accepted]
    for bad, row in zip(result.bad_rows, expected, strict=True):
        assert bad.file == str(path)
        assert row.expect.fields is None or bad.field in row.expect.fields, (bad, row)
        assert bad.reason
        assert str(bad).startswith(f"{path}, line {bad.line}, field {bad.field}: ")


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(KINDS).flatmap(lambda kind: st.tuples(st.just(kind), csv_files(kind))))
def test_bad_rows_are_named_and_good_rows_around_them_are_read(folder, kind_and_case):
    kind, case = kind_and_case
    path = folder / f"{kind.name}.csv"
    path.write_bytes(case.data)
    check_read(kind, path, case)
    if case.bad_lines:
        with pytest.raises(InputFileError, match=rf"^{re.escape(str(path))}, line "
                                                 rf"{case.bad_lines[0]}, field "):
            READERS[kind.name](path, strict=True)
    else:
        assert values_read(kind, READERS[kind.name](path, strict=True)) == case.good


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(KINDS), valid_store_ids, st.integers(0, 30))
def test_many_good_rows_stay_on_the_fast_path(folder, kind, store_id, repeat):
    # The same good rows many times with no bad ones: the vectorised path, same answer.
    rows = {
        "status": ("store_id,status,timestamp_utc", f"{store_id},active,2023-01-22T12:00:00Z"),
        "hours": ("store_id,day,start_time_local,end_time_local", f"{store_id},3,09:00,17:00"),
        "timezones": ("store_id,timezone_str", f"{store_id},UTC"),
    }[kind.name]
    path = folder / f"{kind.name}-fast.csv"
    path.write_text("\n".join([rows[0]] + [rows[1]] * repeat) + "\n", encoding="utf-8")
    result = READERS[kind.name](path)
    assert result.rows_read == repeat and not result.bad_rows
    assert len(values_read(kind, result)) == repeat


@settings(max_examples=200, deadline=None)
@given(
    st.sampled_from(KINDS),
    st.one_of(
        st.binary(max_size=300),
        st.text(max_size=300).map(str.encode),
        # A right header, then anything.
        st.sampled_from(KINDS).flatmap(
            lambda kind: st.binary(max_size=300).map(
                lambda tail: ",".join(field.name for field in kind.fields).encode() + b"\n" + tail
            )
        ),
    ),
)
def test_any_bytes_give_rows_or_an_input_file_error(folder, kind, data):
    path = folder / f"{kind.name}-bytes.csv"
    path.write_bytes(data)
    try:
        result = READERS[kind.name](path)
    except InputFileError as error:
        assert str(error).startswith(str(path))
        return
    assert len(values_read(kind, result)) + len(result.bad_rows) == result.rows_read
    lines = [bad.line for bad in result.bad_rows]
    assert lines == sorted(set(lines))
    assert all(2 <= line <= line_count(data) for line in lines)
    assert all(bad.field and bad.reason for bad in result.bad_rows)


@pytest.mark.parametrize("kind", KINDS, ids=lambda kind: kind.name)
def test_empty_header_only_and_wrong_header_files(folder, kind):
    path = folder / f"{kind.name}-edge.csv"
    header = ",".join(field.name for field in kind.fields)
    for data, error in [
        (b"", "empty file"),
        (b"\n\n", "empty file"),
        (b"\xff\xfe" + header.encode() + b"\n", "missing column"),
        (header.encode()[: -1] + b"\n", "missing column"),
        (b"x" * 200_000 + b"\n", "header line is not CSV"),
        (b'"' + header.encode() + b"\n", "missing column"),
    ]:
        path.write_bytes(data)
        with pytest.raises(InputFileError, match=error):
            READERS[kind.name](path)
    path.write_bytes(header.encode() + b"\r\n")
    result = READERS[kind.name](path)
    assert result.rows_read == 0 and not result.bad_rows and values_read(kind, result) == []
