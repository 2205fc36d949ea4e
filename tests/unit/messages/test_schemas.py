"""Valid and invalid samples against every schema in schemas/."""
import json
from datetime import UTC, datetime

import pytest

from storemon.api import reports
from storemon.messages.report_requests import ReportRequest, new_report_id
from storemon.messages.schemas import (
    ALL_SCHEMAS,
    DLQ_RECORD,
    REPORT_REQUEST,
    STATUS_BATCH,
    STATUS_OBSERVATION,
    STORE_HOURS,
    STORE_TIMEZONE,
    openapi_document,
    schema_errors,
    validator,
)
from storemon.timebase import us_from_datetime

VALID = [
    (STATUS_OBSERVATION, {"store_id": "8419537941919820732", "status": "active",
                          "timestamp_utc": "2023-01-22 12:09:39.388884 UTC"}),
    (STATUS_OBSERVATION, {"store_id": "0b1c-uuid-like", "status": "INACTIVE",
                          "timestamp_utc": "2023-01-22T12:09:39.388884Z"}),
    (STATUS_OBSERVATION, {"store_id": "42", "status": "Active",
                          "timestamp_utc": "2023-01-22T12:09:39+00:00"}),
    (STATUS_BATCH, {"store_id": "42", "observations": [
        {"status": "active", "timestamp_utc": "2023-01-22T12:09:39.388884Z"},
        {"status": "Inactive", "timestamp_utc": "2023-01-22 13:09:39.388884 UTC"}]}),
    (STORE_HOURS, {"store_id": "42", "hours": []}),
    (STORE_HOURS, {"store_id": "42", "hours": [
        {"day": 0, "start_time_local": "09:00", "end_time_local": "12:00:00"},
        {"day": 6, "start_time_local": "18:00:00", "end_time_local": "23:59:59.999999"}]}),
    (STORE_TIMEZONE, {"store_id": "42", "timezone_str": "America/Argentina/Buenos_Aires"}),
    (STORE_TIMEZONE, {"store_id": "42", "timezone_str": "Etc/GMT+5"}),
    (REPORT_REQUEST, {"report_id": "0123456789abcdef0123456789abcdef",
                      "requested_at": "2026-11-23T09:00:00Z"}),
    (REPORT_REQUEST, {"report_id": "0123456789abcdef0123456789abcdef",
                      "requested_at": "2026-11-23T09:00:00Z",
                      "as_of": "2023-01-25T18:13:22Z", "store_ids": ["1", "2"]}),
    (DLQ_RECORD, {"source": "status.csv", "line": 7, "field": "status",
                  "reason": "expected active or inactive", "raw": "1,up,2023-01-22",
                  "rejected_at": "2026-11-23T09:00:00Z"}),
]

INVALID = [
    (STATUS_OBSERVATION, {"store_id": "1", "status": "active"}, "timestamp_utc"),
    (STATUS_OBSERVATION, {"store_id": "1", "status": "online",
                          "timestamp_utc": "2023-01-22T12:09:39Z"}, "status"),
    (STATUS_OBSERVATION, {"store_id": "1", "status": "active",
                          "timestamp_utc": "22/01/2023 12:09"}, "timestamp_utc"),
    (STATUS_OBSERVATION, {"store_id": "", "status": "active",
                          "timestamp_utc": "2023-01-22T12:09:39Z"}, "store_id"),
    (STATUS_OBSERVATION, {"store_id": "1", "status": "active",
                          "timestamp_utc": "2023-01-22T12:09:39Z", "extra": 1}, "(record)"),
    (STATUS_BATCH, {"store_id": "1", "observations": []}, "observations"),
    (STATUS_BATCH, {"store_id": "1", "observations": [
        {"status": "up", "timestamp_utc": "2023-01-22T12:09:39Z"}]}, "observations.0.status"),
    (STATUS_BATCH, {"store_id": "1", "observations": [
        {"store_id": "1", "status": "active", "timestamp_utc": "2023-01-22T12:09:39Z"}]},
     "observations.0"),
    (STORE_HOURS, {"store_id": "1", "hours": [
        {"day": 7, "start_time_local": "09:00", "end_time_local": "10:00"}]}, "hours.0.day"),
    (STORE_HOURS, {"store_id": "1", "hours": [
        {"day": 1, "start_time_local": "25:00", "end_time_local": "10:00"}]},
     "hours.0.start_time_local"),
    (STORE_HOURS, {"store_id": "1"}, "hours"),
    (STORE_TIMEZONE, {"store_id": "1", "timezone_str": "not a zone"}, "timezone_str"),
    (REPORT_REQUEST, {"report_id": "short", "requested_at": "2026-11-23T09:00:00Z"},
     "report_id"),
    (REPORT_REQUEST, {"report_id": "0123456789abcdef0123456789abcdef",
                      "requested_at": "2026-11-23T09:00:00Z", "store_ids": "1"}, "store_ids"),
    (DLQ_RECORD, {"source": "http", "raw": "{}", "rejected_at": "2026-11-23T09:00:00Z"},
     "reason"),
]


@pytest.mark.parametrize("name", ALL_SCHEMAS)
def test_every_schema_is_a_valid_draft_2020_12_schema(name):
    assert validator(name) is not None


@pytest.mark.parametrize(("name", "value"), VALID)
def test_valid_samples_pass(name, value):
    assert schema_errors(name, value) == []


@pytest.mark.parametrize(("name", "value", "field"), INVALID)
def test_invalid_samples_fail_naming_the_field(name, value, field):
    errors = schema_errors(name, value)
    assert errors, f"{value} should break {name}"
    assert any(error.startswith(f"{field}:") for error in errors), errors


def test_the_largest_report_request_allowed_fits_a_kafka_message_and_the_schemas():
    """MAX_STORE_IDS ids of the longest kind, with every other field at its longest."""
    request = ReportRequest(
        new_report_id(),
        us_from_datetime(datetime.max.replace(tzinfo=UTC)),
        us_from_datetime(datetime(2000, 1, 1, tzinfo=UTC)),
        tuple(f"{i:0128d}" for i in range(reports.MAX_STORE_IDS)),
    )
    encoded = request.encode()
    assert len(encoded) <= reports.MAX_REQUEST_BYTES < 1_000_000  # librdkafka's default
    assert schema_errors(REPORT_REQUEST, json.loads(encoded)) == []
    too_many = {"store_ids": [*request.store_ids, "one more"]}
    assert schema_errors(REPORT_REQUEST, {**json.loads(encoded), **too_many}) != []
    openapi = openapi_document()
    trigger_request = openapi["components"]["schemas"]["TriggerRequest"]
    assert trigger_request["properties"]["store_ids"]["maxItems"] == reports.MAX_STORE_IDS
