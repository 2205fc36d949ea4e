"""Topic values: what the code accepts is what schemas/ describes, and encodings round-trip."""

import json

import pytest

from storemon import events
from storemon.inputs import HoursRow, Observation, RowError
from storemon.schemas import (
    STATUS_BATCH,
    STATUS_OBSERVATION,
    STORE_HOURS,
    STORE_TIMEZONE,
    schema_errors,
)

HOUR_US = 3600 * 1_000_000


def test_encoded_values_are_valid_by_their_schemas_and_decode_back():
    observation = Observation("8419537941919820732", 1_674_389_379_388_884, "inactive")
    value = events.encode_observation(observation)
    assert schema_errors(STATUS_OBSERVATION, json.loads(value)) == []
    decoded = events.decode_observations(b"8419537941919820732", value)
    assert (decoded.store_id, decoded.observations, decoded.rejected) == (
        observation.store_id,
        [observation],
        [],
    )

    value = events.encode_observation_batch(
        "s", [("2023-01-22T12:09:39.388884Z", True), ("2023-01-22T13:09:39Z", False)]
    )
    assert schema_errors(STATUS_BATCH, json.loads(value)) == []
    assert events.decode_observations(b"s", value).observations == [
        Observation("s", 1_674_389_379_388_884, "active"),
        Observation("s", 1_674_392_979_000_000, "inactive"),
    ]

    rows = [HoursRow("s", 0, 9 * HOUR_US, 17 * HOUR_US), HoursRow("s", 6, 18 * HOUR_US, 1)]
    value = events.encode_schedule("s", rows)
    assert schema_errors(STORE_HOURS, json.loads(value)) == []
    assert events.decode_schedule(b"s", value) == ("s", rows)

    value = events.encode_zone("s", "Asia/Kolkata")
    assert schema_errors(STORE_TIMEZONE, json.loads(value)) == []
    assert events.decode_zone(b"s", value) == ("s", "Asia/Kolkata")


OBSERVATIONS = [
    {"store_id": "1", "status": "ACTIVE", "timestamp_utc": "2023-01-22 12:09:39.388884 UTC"},
    {"store_id": "1", "status": "inactive", "timestamp_utc": "2023-01-22T12:09:39+05:30"},
    {"store_id": "1", "status": "active"},
    {"store_id": "1", "status": "up", "timestamp_utc": "2023-01-22T12:09:39Z"},
    {"store_id": "", "status": "active", "timestamp_utc": "2023-01-22T12:09:39Z"},
    {"store_id": "a b", "status": "active", "timestamp_utc": "2023-01-22T12:09:39Z"},
    {"store_id": 1, "status": "active", "timestamp_utc": "2023-01-22T12:09:39Z"},
    {"store_id": "1", "status": "active", "timestamp_utc": "2023-01-22"},
    {"store_id": "1", "status": "active", "timestamp_utc": "2023-01-22T12:09:39Z", "x": 1},
]


@pytest.mark.parametrize("record", OBSERVATIONS)
def test_observation_validation_agrees_with_the_schema(record):
    schema_says_valid = schema_errors(STATUS_OBSERVATION, record) == []
    try:
        events.observation_from_record(record, received_at_us=events.now_us())
        code_says_valid = True
    except RowError:
        code_says_valid = False
    assert code_says_valid == schema_says_valid


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        (b"1", b"\xff\xfe", "value"),
        (b"1", b"[1, 2]", "value"),
        (b"1", None, "value"),
        (b"2", b'{"store_id":"1","status":"active","timestamp_utc":"2023-01-22T12:09:39Z"}', "key"),
        (None, b'{"store_id":"1","status":"active","timestamp_utc":"2023-01-22T12:09:39Z"}', "key"),
        # Stricter than a schema can say: a day in the future would become every as_of.
        (
            b"1",
            b'{"store_id":"1","status":"active","timestamp_utc":"2999-01-22T12:09:39Z"}',
            "timestamp_utc",
        ),
    ],
)
def test_undecodable_status_records_name_the_field_to_blame(key, value, field):
    with pytest.raises(RowError) as error:
        events.decode_observations(key, value)
    assert error.value.field == field


def test_a_batch_keeps_its_good_entries_and_names_each_bad_one():
    value = json.dumps(
        {
            "store_id": "s",
            "observations": [
                {"timestamp_utc": "2023-01-22T12:00:00Z", "status": "active"},
                {"timestamp_utc": "2023-01-22T13:00:00Z", "status": "up"},
                "not an object",
                {"store_id": "t", "timestamp_utc": "2023-01-22T14:00:00Z", "status": "active"},
                {"timestamp_utc": "2023-01-22T12:00:00Z", "status": "inactive"},
            ],
        }
    ).encode()
    batch = events.decode_observations(b"s", value)
    # Both polls at 12:00 are kept in record order: the worker applies the later one last.
    assert [o.status for o in batch.observations] == ["active", "inactive"]
    assert [(error.field, raw) for error, raw in batch.rejected] == [
        ("observations.1.status", '{"timestamp_utc": "2023-01-22T13:00:00Z", "status": "up"}'),
        ("observations.2", '"not an object"'),
        (
            "observations.3.store_id",
            '{"store_id": "t", "timestamp_utc": "2023-01-22T14:00:00Z", "status": "active"}',
        ),
    ]


@pytest.mark.parametrize(
    ("value", "field"),
    [
        (b'{"store_id":"s","observations":[]}', "observations"),
        (b'{"store_id":"s","observations":{}}', "observations"),
        (b'{"store_id":"s","observations":[{}],"extra":1}', "extra"),
        (b'{"store_id":"x","observations":[{}]}', "key"),
        (
            b'{"store_id":"s","observations":['
            + b",".join([b'{"timestamp_utc":"2023-01-22T12:00:00Z","status":"active"}'] * 1001)
            + b"]}",
            "observations",
        ),
    ],
)
def test_a_batch_wrong_as_a_whole_is_rejected_whole(value, field):
    with pytest.raises(RowError) as error:
        events.decode_observations(b"s", value)
    assert error.value.field == field


def test_zones_are_checked_against_the_zone_database_not_just_the_pattern():
    value = events.encode_zone("s", "Mars/Olympus_Mons")
    assert schema_errors(STORE_TIMEZONE, json.loads(value)) == []
    with pytest.raises(RowError) as error:
        events.decode_zone(b"s", value)
    assert error.value.field == "timezone_str"


def test_schedule_errors_name_the_row_and_field():
    value = (
        b'{"store_id":"s","hours":[{"day":1,"start_time_local":"09:00",'
        b'"end_time_local":"17:00"},{"day":8,"start_time_local":"09:00",'
        b'"end_time_local":"17:00"}]}'
    )
    with pytest.raises(RowError) as error:
        events.decode_schedule(b"s", value)
    assert error.value.field == "hours.1.day"


def test_tombstones_delete_and_need_a_key():
    assert events.decode_schedule(b"s", None) == ("s", None)
    assert events.decode_zone(b"s", None) == ("s", None)
    with pytest.raises(RowError):
        events.decode_zone(None, None)


def test_dlq_records_are_valid_by_their_schema():
    record = json.loads(events.dlq_record("f.csv", 3, "status", "bad", b"\xff,raw"))
    assert schema_errors("dlq-record", record) == []
    assert record["raw"] == "\ufffd,raw"


def test_a_dead_letter_of_a_huge_record_keeps_its_start_and_fits_in_a_kafka_record():
    huge = "\U0001f600" * 200_000  # 12 bytes each once JSON-escaped
    letter = events.dlq_record("http", 0, "status", "bad", huge)
    assert len(letter) < 1_000_000
    raw = json.loads(letter)["raw"]
    assert raw.startswith(huge[: events.DLQ_RAW_CHARS])
    assert raw.endswith("[cut: 200,000 characters in all]")
