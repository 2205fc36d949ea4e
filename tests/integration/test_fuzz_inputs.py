"""Malformed input through the real services: never a crash, always a dead letter or a clear 4xx.

- `POST /events` of a `storemon api` process on the real broker: bodies whose every
  row's fate is known (tests/fuzzing.py), and garbage bodies under any content type;
- `storemon load` of generated files full of bad rows;
- garbage records produced straight to the three input topics of a running
  `storemon worker`, a black box seen through its dead letters and StateProbe.

Each test checks, after its examples, that the topics gained exactly what the answers
said: the accepted polls on store-status, one dead letter per rejected row.
"""

from __future__ import annotations

import asyncio
import dataclasses
import http.client
import json
import re
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any, NamedTuple

import asyncpg
import pytest
from confluent_kafka import Message
from conftest import unique_prefix
from fuzzing import (
    HOURS,
    REJECTED_ANYHOW,
    STATUS,
    TIMEZONES,
    CsvFile,
    Draw,
    Expect,
    any_json,
    csv_files,
    future_timestamps,
    huge_texts,
    invalid_days,
    invalid_local_times,
    invalid_statuses,
    invalid_store_ids,
    invalid_timestamps,
    invalid_zones,
    non_objects,
    poll_records,
    unreadable_json,
    valid_store_ids,
    without_line_breaks,
)
from hypothesis import HealthCheck, Phase, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st

from storemon.config import Settings
from storemon.inputs.values import HoursRow, Poll
from storemon.kafka.clients import make_producer
from storemon.kafka.offsets import end_offsets, read_range
from storemon.kafka.topics import (
    TOPIC_HOURS,
    TOPIC_STATUS,
    TOPIC_STATUS_DLQ,
    TOPIC_TIMEZONES,
    ensure_topics,
)
from storemon.messages.dead_letters import DLQ_RAW_CHARS
from storemon.messages.polls import MAX_BATCH_POLLS, decode_status, encode_poll
from storemon.messages.schedules import decode_schedule, encode_schedule
from storemon.messages.zones import decode_zone, encode_zone
from storemon.state.reader import StateView
from storemon.timebase import format_timestamp, now_us

from .conftest import drop_report_schema
from .services import (
    ServiceProcess,
    StateProbe,
    deployment_env,
    free_port,
    run_load,
    service_env,
    settings_for,
    wait_until,
)
from .test_api import check_against_openapi

HOUR_US = 3600 * 1_000_000
FUZZ = hypothesis_settings(
    deadline=None,
    suppress_health_check=[
        HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much
    ],
)


class Gains:
    """The records a topic gains from now on."""

    def __init__(self, settings: Settings, topic: str) -> None:
        self.settings = settings
        self.topic = settings.topic(topic)
        self.position = end_offsets(settings, self.topic)

    def new(self) -> list[Message]:
        """The records added since the last call (or since creation)."""
        end = end_offsets(self.settings, self.topic)
        records = list(read_range(self.settings, self.topic, self.position, end))
        self.position = end
        return records


def polls(records: list[Message]) -> Counter[tuple[str, int, str]]:
    """The polls a set of store-status records carry (single polls or batches)."""
    found: Counter[tuple[str, int, str]] = Counter()
    for record in records:
        batch = decode_status(record.key(), record.value())
        assert not batch.rejected, batch.rejected
        found.update(tuple(poll) for polls in batch.by_store.values() for poll in polls)
    return found


def dead_letters(records: list[Message]) -> list[dict[str, Any]]:
    letters = [json.loads(record.value()) for record in records]
    for letter in letters:
        assert letter["reason"], letter
    return letters


# ---------------------------------------------------------------------------------------
# POST /events
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass
class Api:
    settings: Settings
    port: int
    process: ServiceProcess

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, bytes]:
        headers = {} if content_type is None else {"Content-Type": content_type}
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=120)
        try:
            connection.request(method, path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def ready(self) -> bool:
        try:
            return self.request("GET", "/readyz")[0] == 200
        except OSError:
            return False

    def post_events(self, body: bytes, content_type: str | None) -> tuple[int, dict[str, Any]]:
        """POST /events; the answer, checked to be a JSON answer of its kind, never a 5xx."""
        status, data = self.request("POST", "/events", body, content_type)
        text = data.decode("utf-8", "replace")
        assert status < 500, text
        assert "Traceback" not in text and 'File "' not in text, text
        answer = json.loads(data)
        if status >= 400:
            check_against_openapi("Error", answer)
            return status, answer
        assert status == 200
        check_against_openapi("EventsResult", answer)
        errors = answer["errors"]
        assert len(errors) == min(answer["rejected"], 1000)
        indexes = [error["index"] for error in errors]
        assert indexes == sorted(set(indexes))
        assert all(error["reason"] for error in errors)
        return status, answer

    def assert_no_server_errors(self) -> None:
        _, metrics = self.request("GET", "/metrics")
        server_errors = re.findall(rb'^storemon_http_requests_total\{.*status="5\d\d"\}.*$',
                                   metrics, re.MULTILINE)
        assert not server_errors
        assert "Traceback" not in self.process.log_path.read_text(errors="replace")


async def _drop_schema(settings: Settings) -> None:
    connection = await asyncpg.connect(settings.database_url)
    try:
        await drop_report_schema(connection, settings.db_schema)
    finally:
        await connection.close()


@pytest.fixture(scope="module")
def api(kafka_bootstrap, postgres_dsn, tmp_path_factory) -> Iterator[Api]:
    """`storemon api` on fresh topics and a fresh reports schema."""
    prefix, port = unique_prefix(), free_port()
    settings = dataclasses.replace(
        settings_for(kafka_bootstrap, prefix),
        database_url=postgres_dsn,
        db_schema=f"t_{uuid.uuid4().hex[:12]}",
    )
    ensure_topics(settings)
    env = deployment_env(settings, STOREMON_API_PORT=str(port))
    process = ServiceProcess(["api"], env, tmp_path_factory.mktemp("fuzz-api"), "api")
    service = Api(settings, port, process)
    try:
        wait_until(service.ready, 60, "the API to be ready", process.log_tail)
        yield service
    finally:
        process.stop()
        asyncio.run(_drop_schema(settings))


@dataclasses.dataclass(frozen=True)
class BodyRow:
    line: int | None
    expect: Expect
    #: What its dead letter must hold as `raw` (the line, or the array item as compact JSON).
    raw: str


@dataclasses.dataclass(frozen=True)
class Body:
    content_type: str
    data: bytes
    rows: list[BodyRow]
    #: A body that cannot be read at all (JSON Python's json module refuses): 400.
    unreadable: bool = False

    def __repr__(self) -> str:
        data = self.data if len(self.data) < 2000 else self.data[:1000] + b"..."
        rows = repr(self.rows)[:2000]
        return f"Body({self.content_type!r}, {data!r} ({len(self.data)} bytes), rows={rows})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # what Hypothesis prints of a failing example


JSON_TYPES = ["application/json", "application/json; charset=utf-8", "Application/JSON"]
NDJSON_TYPES = ["application/x-ndjson", "application/ndjson", "application/jsonl",
                "application/x-ndjson; charset=UTF-8"]
CSV_TYPES = ["text/csv", "text/csv; charset=utf-8", "TEXT/CSV"]
NOT_OURS = ["text/plain", "application/xml", "multipart/form-data; boundary=x",
            "application/x-www-form-urlencoded", "application/octet-stream", "json", "",
            "application/json/x", "text/csv ;", ";", "application/vnd.api+json"]


def _compact(text: str) -> str:
    return json.dumps(json.loads(text), separators=(",", ":"))


@st.composite
def json_items(draw: Draw, lines: bool) -> tuple[str, Expect, bool]:
    """One array item or NDJSON line: (text, expectation, whether Python can read it)."""
    shape = draw(st.sampled_from(["record"] * 6 + ["non-object", "unreadable"]
                                 + (["garbage", "garbage"] if lines else [])))
    if shape == "record":
        record, expect = draw(poll_records())
        return json.dumps(record, ensure_ascii=draw(st.booleans())), expect, True
    if shape == "non-object":
        return draw(non_objects), Expect(fields=frozenset({"(record)"})), True
    if shape == "unreadable":
        return draw(unreadable_json), Expect(fields=frozenset({"(record)"})), False
    text = draw(without_line_breaks(st.text(min_size=1, max_size=60)).filter(
        lambda t: t.strip(" \t")))
    return text, REJECTED_ANYHOW, True


@st.composite
def structured_bodies(draw: Draw) -> Body:
    """A body of one of the three formats whose every row's fate is known."""
    form = draw(st.sampled_from(["json", "ndjson", "csv"]))
    if form == "csv":
        case: CsvFile = draw(csv_files(STATUS, http=True))
        rows = [BodyRow(row.line, row.expect, row.text or "") for row in case.rows]
        return Body(draw(st.sampled_from(CSV_TYPES)), case.data, rows)
    items = draw(st.lists(json_items(lines=form == "ndjson"), max_size=25))
    bom = draw(st.sampled_from(["", "\ufeff"]))
    if form == "json":
        separator = draw(st.sampled_from([",", ", ", ",\n", " ,\r\n\t"]))
        text = bom + "[" + separator.join(item for item, _, _ in items) + "]"
        rows = [BodyRow(None, expect, _compact(item) if readable else "")
                for item, expect, readable in items]
        unreadable = not all(readable for _, _, readable in items)
        return Body(draw(st.sampled_from(JSON_TYPES)), text.encode(), rows, unreadable)
    newline = draw(st.sampled_from(["\n", "\r\n", "\r"]))
    lines, rows = [], []
    for item, expect, _ in items:
        for _ in range(draw(st.integers(0, 1))):
            lines.append(draw(st.sampled_from(["", " ", "\t", " \t "])))  # blank lines
        lines.append(item)
        rows.append(BodyRow(len(lines), expect, item))
    text = bom + newline.join(lines) + draw(st.sampled_from(["", newline]))
    return Body(draw(st.sampled_from(NDJSON_TYPES)), text.encode(), rows)


def test_events_answer_every_row_of_malformed_bodies(api):
    """Each row accepted or rejected as it must be, named by index, line and field; the
    accepted polls are on store-status and each rejected row has its dead letter."""
    status_gains = Gains(api.settings, TOPIC_STATUS)
    dlq_gains = Gains(api.settings, TOPIC_STATUS_DLQ)
    accepted: Counter[tuple[str, int, str]] = Counter()
    dead: Counter[tuple[int, str, str, str]] = Counter()

    @hypothesis_settings(FUZZ, max_examples=100)
    @given(structured_bodies())
    def post(body: Body) -> None:
        status, answer = api.post_events(body.data, body.content_type)
        if body.unreadable:
            assert status == 400 and "not JSON" in answer["error"]["message"]
            return
        assert status == 200, answer
        rejected = [index for index, row in enumerate(body.rows) if not row.expect.accepted]
        assert answer["rejected"] == len(rejected)
        assert answer["accepted"] == len(body.rows) - len(rejected)
        assert [error["index"] for error in answer["errors"]] == rejected
        for error in answer["errors"]:
            row = body.rows[error["index"]]
            assert error["line"] == row.line, (error, row)
            assert row.expect.fields is None or error["field"] in row.expect.fields, (error, row)
            dead[(error["index"], error["field"], error["reason"], row.raw[:200])] += 1
        accepted.update(row.expect.value for row in body.rows if row.expect.value is not None)

    post()
    assert polls(status_gains.new()) == accepted
    letters = dead_letters(dlq_gains.new())
    assert {letter["source"] for letter in letters} <= {"http"}
    got = Counter(
        (letter["line"], letter["field"], letter["reason"], letter["raw"][:200])
        for letter in letters
    )
    assert got == dead
    api.assert_no_server_errors()


def rows_in(body: bytes, content_type: str) -> int | None:
    """How many rows a readable body holds, by its type; None when that is not clear."""
    media = content_type.split(";")[0].strip().lower()
    try:
        text = body.decode("utf-8-sig")
    except UnicodeDecodeError:
        return None
    lines = [line for line in re.split(r"\r\n|\r|\n", text) if line.strip(" \t")]
    if media in {"application/x-ndjson", "application/ndjson", "application/jsonl"}:
        return len(lines)
    if media == "text/csv":
        return len(lines) - 1
    if media == "application/json":
        try:
            value = json.loads(text)
        except (ValueError, RecursionError):
            return None
        return len(value) if isinstance(value, list) else None
    return None


garbage_bodies = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=400).map(str.encode),
    any_json.map(lambda value: json.dumps(value).encode()),
    st.lists(any_json, max_size=8).map(
        lambda values: "\n".join(json.dumps(value) for value in values).encode()
    ),
    st.lists(st.text(max_size=30), max_size=6).map(
        lambda lines: "\n".join(["store_id,timestamp_utc,status", *lines]).encode()
    ),
)
content_types = st.one_of(
    st.none(),
    st.sampled_from(JSON_TYPES + NDJSON_TYPES + CSV_TYPES + NOT_OURS),
    st.text(st.characters(min_codepoint=32, max_codepoint=126), max_size=40),
)


def test_events_answer_garbage_bodies_with_a_count_or_a_4xx(api):
    """Any bytes under any content type: 2xx with rows accounted for, or a JSON 4xx."""
    status_gains = Gains(api.settings, TOPIC_STATUS)
    dlq_gains = Gains(api.settings, TOPIC_STATUS_DLQ)
    totals: Counter[str] = Counter()

    @hypothesis_settings(FUZZ, max_examples=150)
    @given(garbage_bodies, content_types)
    def post(body: bytes, content_type: str | None) -> None:
        status, answer = api.post_events(body, content_type)
        if status != 200:
            return
        rows = rows_in(body, content_type or "")
        assert rows is not None, (body, content_type)
        assert answer["accepted"] + answer["rejected"] == rows
        totals.update(accepted=answer["accepted"], rejected=answer["rejected"])

    post()
    assert sum(polls(status_gains.new()).values()) == totals["accepted"]
    assert len(dead_letters(dlq_gains.new())) == totals["rejected"]
    api.assert_no_server_errors()


def test_events_keep_huge_rows_out_of_the_way(api):
    """Rows of megabytes, or with a megabyte-long field name, are rejected with a dead
    letter that fits in a Kafka record."""
    dlq_gains = Gains(api.settings, TOPIC_STATUS_DLQ)
    huge = "\U0001f600" * 700_000  # 2.8 MB of UTF-8, 8.4 MB once JSON-escaped
    good = '{"store_id":"s","timestamp_utc":"2023-01-22T12:00:00Z","status":"active"}'
    bodies = [
        ("application/x-ndjson", f"{good}\n{huge}\n{good}"),
        ("application/json", json.dumps([json.loads(good), huge])),
        ("application/x-ndjson", json.dumps({"store_id": "s", huge: 1})),
        ("text/csv", f"store_id,timestamp_utc,status\n{huge},2023-01-22T12:00:00Z,active"),
    ]
    for content_type, text in bodies:
        status, answer = api.post_events(text.encode(), content_type)
        assert status == 200 and answer["rejected"] == 1, answer
    letters = dead_letters(dlq_gains.new())
    assert len(letters) == len(bodies)
    for letter in letters:
        assert 0 < len(letter["raw"]) < 20_000 and len(letter["field"]) < 1000
    api.assert_no_server_errors()


# ---------------------------------------------------------------------------------------
# storemon load
# ---------------------------------------------------------------------------------------

COUNTS_LINE = re.compile(
    r"(?P<file>\S+): (?P<rows>\d+) rows, (?P<accepted>\d+) accepted into \S+, "
    r"(?P<rejected>\d+) rejected"
)


def test_load_dead_letters_every_bad_row_and_produces_the_good_ones(
    kafka_bootstrap, topic_prefix, tmp_path
):
    settings = settings_for(kafka_bootstrap, topic_prefix)
    env = service_env(kafka_bootstrap, topic_prefix)
    ensure_topics(settings)
    gains = {topic: Gains(settings, topic) for topic in
             (TOPIC_STATUS, TOPIC_HOURS, TOPIC_TIMEZONES,
              TOPIC_STATUS_DLQ)}
    files = {kind.name: tmp_path / f"{kind.name}.csv" for kind in (STATUS, HOURS, TIMEZONES)}

    # Each example runs `storemon load`: shrinking a failure would take many minutes.
    @hypothesis_settings(FUZZ, max_examples=4, phases=[Phase.explicit, Phase.generate])
    @given(*(csv_files(kind, max_rows=40) for kind in (STATUS, HOURS, TIMEZONES)))
    def load(status: CsvFile, hours: CsvFile, timezones: CsvFile) -> None:
        cases = {"status": status, "hours": hours, "timezones": timezones}
        for name, case in cases.items():
            files[name].write_bytes(case.data)
        run = run_load(env, files)
        assert run.returncode == 0, run.stderr
        counts = {Path(m["file"]).stem: m for m in COUNTS_LINE.finditer(run.stderr)}
        for name, case in cases.items():
            assert int(counts[name]["rows"]) == len(case.rows), run.stderr
            assert int(counts[name]["accepted"]) == len(case.good), run.stderr
            assert int(counts[name]["rejected"]) == len(case.bad_lines), run.stderr
        assert polls(gains[TOPIC_STATUS].new()) == Counter(status.good)
        schedules = {}
        for record in gains[TOPIC_HOURS].new():
            store, rows = decode_schedule(record.key(), record.value())
            schedules[store] = [tuple(row) for row in rows or []]
        expected_schedules: dict[str, list[tuple[Any, ...]]] = {}
        for row in hours.good:
            expected_schedules.setdefault(row[0], []).append(row)
        assert schedules == expected_schedules
        zones = Counter(decode_zone(record.key(), record.value())
                        for record in gains[TOPIC_TIMEZONES].new())
        assert zones == Counter(timezones.good)
        letters = dead_letters(gains[TOPIC_STATUS_DLQ].new())
        named = {(letter["source"], letter["line"]): letter["field"] for letter in letters}
        assert len(named) == len(letters)
        expected = {
            (str(files[name]), row.line): row.expect.fields
            for name, case in cases.items()
            for row in case.rows
            if not row.expect.accepted
        }
        assert named.keys() == expected.keys()
        for where, fields in expected.items():
            assert fields is None or named[where] in fields, (where, named[where], fields)

    load()


def test_load_refuses_unusable_files_in_one_line(kafka_bootstrap, topic_prefix, tmp_path):
    env = service_env(kafka_bootstrap, topic_prefix)
    path = tmp_path / "status.csv"
    for data, message in [
        (b"", "empty file"),
        (b"store_id,status\n1,active\n", "missing column 'timestamp_utc'"),
        (b"\xff\xfestore_id,status,timestamp_utc\n", "missing column"),
        (b"x" * 200_000 + b"\n", "header line is not CSV"),
    ]:
        path.write_bytes(data)
        run = run_load(env, {"status": path})
        assert run.returncode == 1, run.stderr
        said = [line for line in run.stderr.splitlines() if line.startswith("storemon: ")]
        assert len(said) == 1 and message in said[0], run.stderr


def test_load_takes_a_status_file_without_good_rows(kafka_bootstrap, topic_prefix, tmp_path):
    env = service_env(kafka_bootstrap, topic_prefix)
    path = tmp_path / "status.csv"
    for data, counts in [
        (b"store_id,status,timestamp_utc\r\n", "0 rows, 0 accepted"),
        (b"store_id,status,timestamp_utc\ns1,up,2023-01-22T12:00:00Z\n", "1 rows, 0 accepted"),
    ]:
        path.write_bytes(data)
        run = run_load(env, {"status": path})
        assert run.returncode == 0 and counts in run.stderr, run.stderr


def test_load_dead_letters_huge_rows(kafka_bootstrap, topic_prefix, tmp_path):
    settings = settings_for(kafka_bootstrap, topic_prefix)
    ensure_topics(settings)
    dlq = Gains(settings, TOPIC_STATUS_DLQ)
    path = tmp_path / "status.csv"
    huge = "\U0001f600" * 131_073
    path.write_text(f"store_id,status,timestamp_utc\n{huge},active,2023-01-22T12:00:00Z\n")
    run = run_load(service_env(kafka_bootstrap, topic_prefix), {"status": path})
    assert run.returncode == 0
    assert [letter["line"] for letter in dead_letters(dlq.new())] == [2]


def test_load_names_far_future_rows_by_line(kafka_bootstrap, topic_prefix, tmp_path):
    settings = settings_for(kafka_bootstrap, topic_prefix)
    ensure_topics(settings)
    dlq = Gains(settings, TOPIC_STATUS_DLQ)
    path = tmp_path / "status.csv"
    path.write_text("store_id,status,timestamp_utc\ns1,active,2023-01-22T12:00:00Z\n"
                    "s2,active,2999-01-01T00:00:00Z\n")
    run = run_load(service_env(kafka_bootstrap, topic_prefix), {"status": path})
    assert run.returncode == 0
    assert [letter["line"] for letter in dead_letters(dlq.new())] == [3]


# ---------------------------------------------------------------------------------------
# Garbage on the input topics, under a running worker
# ---------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Garbage:
    topic: str
    key: bytes | None
    value: bytes | None
    #: Dead letters it must give: one, or one per bad entry of a batch.
    dead_letters: int = 1
    #: A batch's good entries, which must reach the state: (store_id, {µs: active}).
    kept: tuple[str, dict[int, bool]] | None = None
    #: Whether the dead letters are of entries of a batch (else of the whole record).
    entries: bool = False

    def __repr__(self) -> str:
        value = self.value if self.value is None or len(self.value) < 300 else (
            self.value[:300] + b"...")
        return f"Garbage({self.topic}, {self.key!r:.100}, {value!r}, {self.dead_letters})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:
        printer.text(repr(self))  # what Hypothesis prints of a failing example


def _recent(draw: Draw) -> int:
    """A poll inside every report window: within the last five days."""
    return now_us() - draw(st.integers(HOUR_US, 5 * 24 * HOUR_US))


def _json(value: Any) -> bytes:
    return json.dumps(value).encode()


other_keys = st.one_of(st.none(), st.just(b""), st.binary(max_size=20),
                       valid_store_ids.map(str.encode))
#: A compacted topic takes no record without a key (the broker refuses it).
compacted_keys = other_keys.filter(lambda key: key is not None)
#: Not a JSON object at all; on a compacted topic, a null value is a deletion instead.
not_objects = st.one_of(st.none(), st.binary(max_size=200), non_objects.map(str.encode),
                        unreadable_json.map(str.encode))
present_not_objects = not_objects.filter(lambda value: value is not None)


@st.composite
def status_garbage(draw: Draw) -> Garbage:
    topic = TOPIC_STATUS
    shape = draw(st.sampled_from(["not an object", "record", "record", "key", "batch",
                                  "batch entries", "batch entries"]))
    if shape == "not an object":
        return Garbage(topic, draw(other_keys), draw(not_objects))
    if shape == "record":
        record, _ = draw(poll_records().filter(lambda pair: not pair[1].accepted))
        store_id = record.get("store_id")
        key = store_id.encode() if isinstance(store_id, str) else draw(other_keys)
        return Garbage(topic, key, _json(record))
    store_id = draw(valid_store_ids)
    if shape == "key":
        record = {"store_id": store_id, "timestamp_utc": format_timestamp(_recent(draw)),
                  "status": "active"}
        key = draw(other_keys.filter(lambda key: key != store_id.encode()))
        return Garbage(topic, key, _json(record))
    entry = {"timestamp_utc": format_timestamp(_recent(draw)), "status": "inactive"}
    if shape == "batch":
        batch: dict[str, Any] = {"store_id": store_id, "observations": [entry]}
        broken = draw(st.sampled_from(["list", "empty", "too many", "unknown", "store", "key"]))
        key = store_id.encode()
        if broken == "list":
            batch["observations"] = draw(st.sampled_from(["x", 5, None, {}, entry]))
        elif broken == "empty":
            batch["observations"] = []
        elif broken == "too many":
            batch["observations"] = [entry] * (MAX_BATCH_POLLS + 1)
        elif broken == "unknown":
            batch[draw(st.sampled_from(["status", "timestamp_utc", "x"]))] = 1
        elif broken == "store":
            batch["store_id"] = draw(invalid_store_ids)
        else:
            key = draw(other_keys.filter(lambda key: key != store_id.encode()))
        return Garbage(topic, key, _json(batch))
    # A batch of a fresh store, its bad entries dead-lettered one by one, the others kept.
    store_id = f"fuzz-{uuid.uuid4().hex[:12]}"
    entries, kept, bad = [], {}, 0
    for _ in range(draw(st.integers(1, 8))):
        moment = _recent(draw)
        good = {"timestamp_utc": format_timestamp(moment),
                "status": draw(st.sampled_from(["active", "inactive"]))}
        broken = draw(st.sampled_from(["none", "none", "not an object", "store", "status",
                                       "timestamp", "future", "missing", "unknown"]))
        if broken == "none":
            entries.append(good)
            kept[moment] = good["status"] == "active"
            continue
        bad += 1
        if broken == "not an object":
            entries.append(draw(st.sampled_from([7, "x", [], None])))
        elif broken == "store":
            entries.append({**good, "store_id": store_id})
        elif broken == "status":
            entries.append({**good, "status": draw(invalid_statuses)})
        elif broken == "timestamp":
            entries.append({**good, "timestamp_utc": draw(invalid_timestamps)})
        elif broken == "future":
            entries.append({**good, "timestamp_utc": draw(future_timestamps)})
        elif broken == "missing":
            entries.append({"status": "active"})
        else:
            entries.append({**good, "colour": "red"})
    if not bad:
        entries.append({"status": "active"})
        bad = 1
    value = _json({"store_id": store_id, "observations": entries})
    return Garbage(topic, store_id.encode(), value, bad, (store_id, kept) if kept else None, True)


@st.composite
def hours_garbage(draw: Draw) -> Garbage:
    topic = TOPIC_HOURS
    shape = draw(st.sampled_from(["not an object", "deletion", "hours", "row", "row", "key",
                                  "store"]))
    if shape == "not an object":
        return Garbage(topic, draw(compacted_keys), draw(present_not_objects))
    if shape == "deletion":  # a null value deletes, but needs a valid store_id as its key
        key = draw(st.one_of(st.just(b""), invalid_store_ids.map(str.encode)))
        return Garbage(topic, key, None)
    store_id = draw(valid_store_ids)
    row: dict[str, Any] = {"day": 1, "start_time_local": "09:00", "end_time_local": "17:00"}
    schedule: dict[str, Any] = {"store_id": store_id, "hours": [row]}
    key = store_id.encode()
    if shape == "hours":
        schedule["hours"] = draw(st.sampled_from(["x", 5, None, {}, row]))
    elif shape == "row":
        field = draw(st.sampled_from(["day", "start_time_local", "end_time_local", "row"]))
        if field == "row":
            schedule["hours"] = [row, draw(st.sampled_from([7, "x", [], None]))]
        elif field == "day":
            row["day"] = draw(st.one_of(invalid_days, st.sampled_from([7, -1, True, 1.5, None])))
        else:
            row[field] = draw(st.one_of(invalid_local_times, st.sampled_from([9, None, []])))
    elif shape == "key":
        key = draw(compacted_keys.filter(lambda other: other != store_id.encode()))
    else:
        schedule["store_id"] = draw(st.one_of(invalid_store_ids, st.sampled_from([None, 5])))
    return Garbage(topic, key, _json(schedule))


@st.composite
def zone_garbage(draw: Draw) -> Garbage:
    topic = TOPIC_TIMEZONES
    shape = draw(st.sampled_from(["not an object", "zone", "zone", "key", "store", "huge"]))
    if shape == "not an object":
        return Garbage(topic, draw(compacted_keys), draw(present_not_objects))
    store_id = draw(valid_store_ids)
    record: dict[str, Any] = {"store_id": store_id, "timezone_str": "UTC"}
    key = store_id.encode()
    if shape == "zone":
        record["timezone_str"] = draw(st.one_of(invalid_zones, st.sampled_from([5, None, []])))
    elif shape == "key":
        key = draw(compacted_keys.filter(lambda other: other != store_id.encode()))
    elif shape == "store":
        record["store_id"] = draw(invalid_store_ids)
    else:
        record["timezone_str"] = draw(huge_texts)
    return Garbage(topic, key, _json(record))


def producible(garbage: Garbage) -> bool:
    """Under Kafka's record size limit (1 MB), so that it can be on a topic at all."""
    return garbage.value is None or len(garbage.value) < 900_000


garbage_batches = st.lists(
    st.one_of(status_garbage(), hours_garbage(), zone_garbage()).filter(producible),
    min_size=1,
    max_size=6,
)


class Probe(NamedTuple):
    store: str
    micros: int


class Worker:
    """A `storemon worker` on fresh topics, the dead letters it wrote, and its state."""

    def __init__(self, settings: Settings, env: dict[str, str], log_dir: Path) -> None:
        self.settings = settings
        ensure_topics(settings)
        self.producer = make_producer(settings)
        self.dlq = Gains(settings, TOPIC_STATUS_DLQ)
        self.probe = StateProbe(settings)
        self.process = ServiceProcess(["worker"], env, log_dir, "worker")
        #: (topic, partition, offset) -> [(key, dead letter)]
        self.letters: dict[tuple[str, int, int], list[tuple[bytes | None, dict]]] = {}

    def produce(self, topic: str, key: bytes | None, value: bytes | None) -> tuple[str, int, int]:
        """Produce one record, confirmed; where it landed."""
        where: list[tuple[str, int, int]] = []

        def delivered(error: Any, message: Message) -> None:
            assert error is None, error
            where.append((message.topic(), message.partition(), message.offset()))

        self.producer.produce(self.settings.topic(topic), value, key, on_delivery=delivered)
        assert self.producer.flush(30) == 0
        return where[0]

    def read_letters(self) -> None:
        for record in self.dlq.new():
            letter = json.loads(record.value())
            source = re.fullmatch(r"(.+)\[(\d+)\]", letter["source"])
            assert source, letter
            where = (source[1], int(source[2]), letter["line"])
            self.letters.setdefault(where, []).append((record.key(), letter))

    def send_probes(self, store: str | None = None) -> Probe:
        """A valid poll, schedule and zone of a store, after whatever came before."""
        probe = Probe(store or f"probe-{uuid.uuid4().hex[:12]}", now_us())
        poll = encode_poll(Poll(probe.store, probe.micros, "active"))
        key = probe.store.encode()
        self.produce(TOPIC_STATUS, key, poll)
        schedule = [HoursRow(probe.store, 0, 9 * HOUR_US, 17 * HOUR_US)]
        self.produce(TOPIC_HOURS, key, encode_schedule(probe.store, schedule))
        self.produce(TOPIC_TIMEZONES, key, encode_zone(probe.store, "UTC"))
        return probe

    def holds(self, probe: Probe, view: StateView | None = None) -> bool:
        """Whether the probe's poll, schedule and zone are all in the workers' state."""
        view = view or self.probe.view()
        return (
            view.polls.get(probe.store) == {probe.micros: True}
            and probe.store in view.schedules
            and view.zones.get(probe.store) == "UTC"
        )

    def alive(self) -> None:
        assert self.process.process.poll() is None, self.process.log_tail()

    def close(self) -> None:
        self.process.stop()
        self.probe.close()


@pytest.fixture(scope="module")
def worker(kafka_bootstrap, tmp_path_factory) -> Iterator[Worker]:
    prefix = unique_prefix()
    running = Worker(settings_for(kafka_bootstrap, prefix), service_env(kafka_bootstrap, prefix),
                     tmp_path_factory.mktemp("fuzz-worker"))
    try:
        probe = running.send_probes()
        wait_until(lambda: running.holds(probe), 120, "the worker to start",
                   running.process.log_tail)
        yield running
    finally:
        running.close()


def test_worker_dead_letters_garbage_on_every_input_topic(worker):
    """Every garbage record gets its dead letters, naming topic, partition and offset; the
    worker lives on, and valid records produced after the garbage reach its state."""
    expected_total = 0

    @hypothesis_settings(FUZZ, max_examples=30)
    @given(garbage_batches)
    def send(batch: list[Garbage]) -> None:
        nonlocal expected_total
        sent = [(garbage, worker.produce(garbage.topic, garbage.key, garbage.value))
                for garbage in batch]
        expected_total += sum(garbage.dead_letters for garbage in batch)
        probe = worker.send_probes()

        def settled() -> bool:
            worker.read_letters()
            view = worker.probe.view()
            return (
                all(
                    len(worker.letters.get(where, ())) >= garbage.dead_letters
                    for garbage, where in sent
                )
                and worker.holds(probe, view)
                and all(
                    view.polls.get(garbage.kept[0]) == garbage.kept[1]
                    for garbage, _ in sent
                    if garbage.kept
                )
            )

        wait_until(settled, 60, f"dead letters for {sent} and the probes",
                   worker.process.log_tail)
        worker.alive()
        for garbage, where in sent:
            letters = worker.letters[where]
            assert len(letters) == garbage.dead_letters, (garbage, letters)
            for key, letter in letters:
                assert key == garbage.key
                if not garbage.entries:
                    raw = (garbage.value or b"").decode("utf-8", "replace")
                    if len(raw) > DLQ_RAW_CHARS:  # cut, saying so, to fit in a record
                        cut = f"... [cut: {len(raw):,} characters in all]"
                        raw = raw[: DLQ_RAW_CHARS] + cut
                    assert letter["raw"] == raw

    send()
    worker.read_letters()
    assert sum(map(len, worker.letters.values())) == expected_total


def _dead_letters_of(worker: Worker, values: list[bytes]) -> None:
    """Produce each value to each input topic, keyed as the probes that follow it (so on
    their partitions): once the probes are in state, each value must get its dead letter."""
    store = f"probe-{uuid.uuid4().hex[:12]}"
    sent = [worker.produce(topic, store.encode(), value)
            for value in values
            for topic in (TOPIC_STATUS, TOPIC_HOURS, TOPIC_TIMEZONES)]
    probe = worker.send_probes(store)
    wait_until(lambda: worker.holds(probe), 60, "the probes", worker.process.log_tail)
    worker.alive()

    def every_value_dead_lettered() -> bool:
        worker.read_letters()
        return all(where in worker.letters for where in sent)

    wait_until(every_value_dead_lettered, 10, f"dead letters of {sent}")


def test_worker_dead_letters_json_it_cannot_read(worker):
    _dead_letters_of(worker, [b"[" * 100_000, b'{"store_id": ' + b"1" * 5000 + b"}"])


def test_worker_dead_letters_huge_values(worker):
    _dead_letters_of(worker, [b"\xff" * 200_000])


def test_worker_dead_letters_a_huge_unknown_field(worker):
    value = json.dumps({"\U0001f600" * 100_000: 1, "store_id": "x"}, ensure_ascii=False)
    _dead_letters_of(worker, [value.encode()])
