"""Topic values, one codec per message: what the code accepts is what schemas/ describes, and
encodings round-trip. One round-trip test per schema."""

import json

import pytest

from storemon.inputs.values import HoursRow, Poll, RowError
from storemon.messages import schemas
from storemon.messages.dead_letters import DLQ_RAW_CHARS, dlq_record
from storemon.messages.polls import (
    decode_polls,
    decode_status,
    encode_partition_batch,
    encode_poll,
    encode_poll_batch,
    poll_from_record,
)
from storemon.messages.report_requests import InvalidRequest, ReportRequest, new_report_id
from storemon.messages.report_tasks import InvalidTask, ReportTask
from storemon.messages.schedules import decode_schedule, encode_schedule
from storemon.messages.schemas import (
    REPORT_REQUEST,
    REPORT_TASK,
    STATUS_BATCH,
    STATUS_OBSERVATION,
    STATUS_PARTITION_BATCH,
    STORE_HOURS,
    STORE_TIMEZONE,
    schema_errors,
)
from storemon.messages.zones import decode_zone, encode_zone
from storemon.timebase import now_us

HOUR_US = 3600 * 1_000_000


def test_a_poll_round_trips_through_its_schema():
    poll = Poll("8419537941919820732", 1_674_389_379_388_884, "inactive")
    value = encode_poll(poll)
    assert schema_errors(STATUS_OBSERVATION, json.loads(value)) == []
    decoded = decode_polls(b"8419537941919820732", value)
    assert (decoded.store_id, decoded.polls, decoded.rejected) == (
        poll.store_id,
        [poll],
        [],
    )


def test_a_poll_batch_round_trips_through_its_schema():
    value = encode_poll_batch(
        "s", [("2023-01-22T12:09:39.388884Z", True), ("2023-01-22T13:09:39Z", False)]
    )
    assert schema_errors(STATUS_BATCH, json.loads(value)) == []
    assert decode_polls(b"s", value).polls == [
        Poll("s", 1_674_389_379_388_884, "active"),
        Poll("s", 1_674_392_979_000_000, "inactive"),
    ]


def test_a_schedule_round_trips_through_its_schema():
    rows = [HoursRow("s", 0, 9 * HOUR_US, 17 * HOUR_US), HoursRow("s", 6, 18 * HOUR_US, 1)]
    value = encode_schedule("s", rows)
    assert schema_errors(STORE_HOURS, json.loads(value)) == []
    assert decode_schedule(b"s", value) == ("s", rows)


def test_a_zone_round_trips_through_its_schema():
    value = encode_zone("s", "Asia/Kolkata")
    assert schema_errors(STORE_TIMEZONE, json.loads(value)) == []
    assert decode_zone(b"s", value) == ("s", "Asia/Kolkata")


POLL_RECORDS = [
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


@pytest.mark.parametrize("record", POLL_RECORDS)
def test_poll_validation_agrees_with_the_schema(record):
    schema_says_valid = schema_errors(STATUS_OBSERVATION, record) == []
    try:
        poll_from_record(record, received_at_us=now_us())
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
        decode_polls(key, value)
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
    batch = decode_polls(b"s", value)
    # Both polls at 12:00 are kept in record order: the worker applies the later one last.
    assert [o.status for o in batch.polls] == ["active", "inactive"]
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
        decode_polls(b"s", value)
    assert error.value.field == field


def test_zones_are_checked_against_the_zone_database_not_just_the_pattern():
    value = encode_zone("s", "Mars/Olympus_Mons")
    assert schema_errors(STORE_TIMEZONE, json.loads(value)) == []
    with pytest.raises(RowError) as error:
        decode_zone(b"s", value)
    assert error.value.field == "timezone_str"


def test_schedule_errors_name_the_row_and_field():
    value = (
        b'{"store_id":"s","hours":[{"day":1,"start_time_local":"09:00",'
        b'"end_time_local":"17:00"},{"day":8,"start_time_local":"09:00",'
        b'"end_time_local":"17:00"}]}'
    )
    with pytest.raises(RowError) as error:
        decode_schedule(b"s", value)
    assert error.value.field == "hours.1.day"


def test_tombstones_delete_and_need_a_key():
    assert decode_schedule(b"s", None) == ("s", None)
    assert decode_zone(b"s", None) == ("s", None)
    with pytest.raises(RowError):
        decode_zone(None, None)


def test_a_report_request_round_trips_through_its_schema():
    request = ReportRequest(new_report_id(), now_us(), 1_674_389_379_388_884, ("a", "b"))
    value = request.encode()
    assert schema_errors(REPORT_REQUEST, json.loads(value)) == []
    assert ReportRequest.decode(value) == request
    every_store = ReportRequest(new_report_id(), now_us())
    assert json.loads(every_store.encode()).keys() == {"report_id", "requested_at"}
    assert ReportRequest.decode(every_store.encode()) == every_store


def test_a_report_task_round_trips_through_its_schema():
    task = ReportTask(new_report_id(), 3, 1_674_389_379_388_884, ("a", "b"))
    value = task.encode()
    assert schema_errors(REPORT_TASK, json.loads(value)) == []
    assert ReportTask.decode(value) == task
    every_store = ReportTask(new_report_id(), 0, -5)
    assert json.loads(every_store.encode()).keys() == {"report_id", "partition", "as_of_us"}
    assert ReportTask.decode(every_store.encode()) == every_store


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"[", "not JSON"),
        (b'{"report_id": "%s", "partition": -1, "as_of_us": 0}' % (b"a" * 32), "partition"),
        (b'{"report_id": "%s", "partition": 0}' % (b"a" * 32), "as_of_us: is required"),
        (b'{"report_id": "x", "partition": 0, "as_of_us": 0}', "report_id"),
    ],
)
def test_an_invalid_report_task_says_why(value, reason):
    with pytest.raises(InvalidTask, match=reason):
        ReportTask.decode(value)


@pytest.mark.parametrize(
    ("value", "report_id", "reason"),
    [
        (b"{", None, "not JSON"),
        (b'{"report_id": "nope", "requested_at": "2023-01-22T12:00:00Z"}', None, "report_id"),
        (b'{"report_id": "%s"}' % (b"a" * 32), "a" * 32, "requested_at: is required"),
        (
            b'{"report_id": "%s", "requested_at": "2023-01-22T12:00:00Z", "as_of": "noon"}'
            % (b"b" * 32),
            "b" * 32,
            "as_of",
        ),
        (
            b'{"report_id": "%s", "requested_at": "2023-01-22T12:00:00Z", "x": 1}' % (b"c" * 32),
            "c" * 32,
            "x",
        ),
    ],
)
def test_an_invalid_report_request_names_its_report_and_the_reason(value, report_id, reason):
    with pytest.raises(InvalidRequest) as raised:
        ReportRequest.decode(value)
    assert raised.value.report_id == report_id
    assert reason in raised.value.reason


def test_dlq_records_are_valid_by_their_schema():
    record = json.loads(dlq_record("f.csv", 3, "status", "bad", b"\xff,raw"))
    assert schema_errors("dlq-record", record) == []
    assert record["raw"] == "\ufffd,raw"


def test_a_dead_letter_of_a_huge_record_keeps_its_start_and_fits_in_a_kafka_record():
    huge = "\U0001f600" * 200_000  # 12 bytes each once JSON-escaped
    letter = dlq_record("http", 0, "status", "bad", huge)
    assert len(letter) < 1_000_000
    raw = json.loads(letter)["raw"]
    assert raw.startswith(huge[: DLQ_RAW_CHARS])
    assert raw.endswith("[cut: 200,000 characters in all]")


def test_each_missing_field_is_named_once():
    assert schemas.schema_errors(schemas.REPORT_TASK, {}) == [
        "as_of_us: is required", "partition: is required", "report_id: is required"
    ]


def test_a_partition_batch_round_trips_through_its_schema():
    value = encode_partition_batch(3, [
        ("a", "2023-01-22T12:09:39.388884Z", True),
        ("b", "2023-01-22T13:09:39Z", False),
        ("a", "2023-01-22T14:09:39Z", False),
    ])
    assert schema_errors(STATUS_PARTITION_BATCH, json.loads(value)) == []
    decoded = decode_status(None, value)
    assert decoded.by_store == {
        "a": [Poll("a", 1_674_389_379_388_884, "active"), Poll("a", 1_674_396_579_000_000,
                                                                 "inactive")],
        "b": [Poll("b", 1_674_392_979_000_000, "inactive")],
    }
    assert decoded.rejected == [] and decoded.count() == 3


@pytest.mark.parametrize(
    ("key", "value", "field"),
    [
        (b"a", b'{"partition": 0, "polls": [{"store_id": "a", "timestamp_utc":'
               b' "2023-01-22T12:00:00Z", "status": "active"}]}', "key"),
        (None, b'{"partition": -1, "polls": []}', "partition"),
        (None, b'{"partition": true, "polls": []}', "partition"),
        (None, b'{"partition": 0, "polls": []}', "polls"),
        (None, b'{"partition": 0, "polls": [], "extra": 1}', "extra"),
    ],
)
def test_a_partition_batch_wrong_as_a_whole_is_rejected_whole(key, value, field):
    with pytest.raises(RowError) as raised:
        decode_status(key, value)
    assert raised.value.field == field


def test_a_partition_batch_keeps_its_good_entries_and_names_each_bad_one():
    value = json.dumps({"partition": 0, "polls": [
        {"store_id": "a", "timestamp_utc": "2023-01-22T12:00:00Z", "status": "active"},
        {"store_id": "b", "timestamp_utc": "yesterday", "status": "active"},
        "not an object",
        {"store_id": "c", "timestamp_utc": "2023-01-22T12:00:00Z", "status": "up"},
    ]}).encode()
    decoded = decode_status(None, value)
    assert list(decoded.by_store) == ["a"]
    assert [error.field for error, _ in decoded.rejected] == [
        "polls.1.timestamp_utc", "polls.2", "polls.3.status"
    ]
