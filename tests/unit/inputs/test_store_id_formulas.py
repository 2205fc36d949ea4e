"""Store ids a spreadsheet would run as a formula (CSV injection) are refused on every
way in: the validator, the vectorised CSV readers, topic records and the JSON Schemas."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from jsonschema import Draft202012Validator

from storemon.inputs.csv_files import read_hours_csv, read_status_csv, read_timezones_csv
from storemon.inputs.values import FORMULA_PREFIXES, RowError, parse_store_id
from storemon.messages.polls import decode_polls, encode_poll_batch
from storemon.messages.schedules import decode_schedule
from storemon.messages.schemas import (
    REPORT_REQUEST,
    STATUS_BATCH,
    STATUS_OBSERVATION,
    STORE_HOURS,
    STORE_TIMEZONE,
    openapi_document,
    schema_errors,
)
from storemon.messages.zones import decode_zone
from storemon.tools import generator

FORMULA_IDS = ["=1+1", "+1", "-1", "@SUM(A1:A9)", '=HYPERLINK("http://x")', "-"]
#: Formula characters anywhere but first are harmless.
SAFE_IDS = ["1", "a=b", "0-1", "x+y@z", "8419537941919820732"]
WHY = "a spreadsheet would run it as a formula (CSV injection)"


@pytest.mark.parametrize("store_id", FORMULA_IDS)
def test_the_validator_refuses_a_formula_store_id_saying_why(store_id: str):
    with pytest.raises(RowError) as error:
        parse_store_id(store_id)
    assert error.value.field == "store_id"
    assert error.value.reason == f"begins with {store_id[0]!r}: {WHY}"


@pytest.mark.parametrize("store_id", SAFE_IDS)
def test_formula_characters_after_the_first_are_accepted(store_id: str):
    assert parse_store_id(store_id) == store_id


def test_every_formula_prefix_is_covered():
    assert {store_id[0] for store_id in FORMULA_IDS} == set(FORMULA_PREFIXES)


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


def test_the_csv_readers_name_formula_rows_by_file_line_and_field(tmp_path: Path):
    status = _write(
        tmp_path / "status.csv",
        "store_id,status,timestamp_utc\n"
        "s1,active,2023-01-22T12:00:00Z\n"
        "=1+1,active,2023-01-22T12:00:00Z\n"
        "@cmd,inactive,2023-01-22T13:00:00Z\n",
    )
    hours = _write(
        tmp_path / "hours.csv",
        "store_id,day,start_time_local,end_time_local\ns1,0,09:00,17:00\n+1,0,09:00,17:00\n",
    )
    zones = _write(
        tmp_path / "zones.csv",
        "store_id,timezone_str\ns1,America/Chicago\n-1,America/Chicago\n",
    )
    expected = {
        status: [(3, "="), (4, "@")],
        hours: [(3, "+")],
        zones: [(3, "-")],
    }
    readers = {status: read_status_csv, hours: read_hours_csv, zones: read_timezones_csv}
    for path, read in readers.items():
        result = read(path)
        assert result.rows_read == len(expected[path]) + 1
        assert [(bad.file, bad.line, bad.field, bad.reason) for bad in result.bad_rows] == [
            (str(path), line, "store_id", f"begins with {first!r}: {WHY}")
            for line, first in expected[path]
        ]


def _reason(decode, key: bytes | None, value: bytes | None) -> tuple[str, str]:
    with pytest.raises(RowError) as error:
        decode(key, value)
    return error.value.field, error.value.reason


def test_topic_records_with_a_formula_store_id_are_refused_with_the_reason():
    """What the worker dead-letters (events.decode_*), for each kind of record."""
    poll = {"store_id": "=1+1", "timestamp_utc": "2023-01-22T12:00:00Z", "status": "active"}
    batch = encode_poll_batch("=1+1", [("2023-01-22T12:00:00Z", True)])
    schedule = {"store_id": "=1+1", "hours": []}
    zone = {"store_id": "=1+1", "timezone_str": "America/Chicago"}
    expected = ("store_id", f"begins with '=': {WHY}")
    key = b"=1+1"
    assert _reason(decode_polls, key, json.dumps(poll).encode()) == expected
    assert _reason(decode_polls, key, batch) == expected
    assert _reason(decode_schedule, key, json.dumps(schedule).encode()) == expected
    assert _reason(decode_zone, key, json.dumps(zone).encode()) == expected
    # A deletion names its store by key alone.
    assert _reason(decode_schedule, key, None) == expected
    assert _reason(decode_zone, key, None) == expected


def _schema_samples(store_id: str) -> list[tuple[str, dict]]:
    return [
        (
            STATUS_OBSERVATION,
            {"store_id": store_id, "timestamp_utc": "2023-01-22T12:00:00Z", "status": "active"},
        ),
        (
            STATUS_BATCH,
            {
                "store_id": store_id,
                "observations": [{"timestamp_utc": "2023-01-22T12:00:00Z", "status": "active"}],
            },
        ),
        (STORE_HOURS, {"store_id": store_id, "hours": []}),
        (STORE_TIMEZONE, {"store_id": store_id, "timezone_str": "America/Chicago"}),
        (
            REPORT_REQUEST,
            {
                "report_id": "0" * 32,
                "requested_at": "2026-11-23T09:00:00Z",
                "store_ids": [store_id],
            },
        ),
    ]


def _openapi_trigger_errors(store_id: str) -> list[str]:
    openapi = openapi_document()
    validator = Draft202012Validator(
        {"$ref": "#/components/schemas/TriggerRequest", "components": openapi["components"]}
    )
    return [error.message for error in validator.iter_errors({"store_ids": [store_id]})]


@pytest.mark.parametrize("store_id", FORMULA_IDS + SAFE_IDS + ["a b", "a,b", ""])
def test_the_schemas_agree_with_the_validator(store_id: str):
    try:
        parse_store_id(store_id)
        valid = True
    except RowError:
        valid = False
    for schema, sample in _schema_samples(store_id):
        assert (not schema_errors(schema, sample)) == valid, (schema, store_id)
    assert (not _openapi_trigger_errors(store_id)) == valid, store_id


@pytest.mark.parametrize("synthetic", [True, False], ids=["synthetic", "loop-stores"])
def test_generated_store_ids_never_begin_with_a_formula_character(tmp_path: Path, synthetic):
    if not synthetic and generator.loop_data_dir() is None:
        pytest.skip("the Loop data set is not on this machine")
    dataset = generator.generate_dataset(tmp_path, stores=300, seed=5, synthetic=synthetic)
    for path in (dataset.status_path, dataset.hours_path, dataset.timezones_path):
        store_ids = {line.split(",", 1)[0] for line in path.read_text().splitlines()[1:]}
        assert store_ids
        assert not [s for s in store_ids if s.startswith(FORMULA_PREFIXES)], path
