"""Formula store ids (CSV injection) over HTTP and through `storemon load`, on real servers."""

from __future__ import annotations

import json
from pathlib import Path

from storemon.config import Settings
from storemon.inputs.values import Poll
from storemon.kafka.clients import make_producer
from storemon.messages.polls import encode_poll

from .api_process import JSON_TYPE, ApiStarter, call
from .services import (
    ServiceProcess,
    StateProbe,
    expected_view,
    produce_polls,
    run_load,
    service_env,
    settings_for,
    wait_until,
)
from .test_load import read_topic

WHY = "a spreadsheet would run it as a formula (CSV injection)"


def test_post_events_rejects_formula_store_ids_and_dead_letters_them(
    api_process: ApiStarter, report_settings: Settings
):
    url = api_process()
    body = (
        b'[{"store_id":"=1+1","timestamp_utc":"2023-01-25T18:00:00Z","status":"active"},'
        b'{"store_id":"s1","timestamp_utc":"2023-01-25T18:00:00Z","status":"active"}]'
    )
    answer = call(url, "POST", "/events", body=body, headers=JSON_TYPE)
    assert answer.status == 200, answer.body
    result = answer.json()
    assert (result["accepted"], result["rejected"]) == (1, 1)
    assert result["errors"] == [
        {"index": 0, "line": None, "field": "store_id", "reason": f"begins with '=': {WHY}"}
    ]
    [dead] = read_topic(report_settings, "store-status-dlq", 1)
    letter = json.loads(dead.value())
    assert (letter["field"], letter["reason"]) == ("store_id", f"begins with '=': {WHY}")


def test_a_report_for_formula_store_ids_is_refused_with_400(api_process: ApiStarter):
    url = api_process()
    for prefix in "=+-@":
        answer = call(
            url,
            "POST",
            "/trigger_report",
            body=json.dumps({"store_ids": ["s1", f"{prefix}1"]}).encode(),
            headers=JSON_TYPE,
        )
        assert answer.status == 400, answer.body
        assert answer.json()["error"]["message"] == f"store_ids: begins with '{prefix}': {WHY}"
    query = call(url, "GET", "/trigger_report?store_ids=s1,%40SUM(A1)")
    assert query.status == 400, query.body


def test_load_dead_letters_formula_rows_by_file_and_line(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
):
    status = tmp_path / "status.csv"
    status.write_text(
        "store_id,status,timestamp_utc\n"
        "s1,active,2023-01-22T12:00:00Z\n"
        "-2+3,active,2023-01-22T12:00:00Z\n"
    )
    run = run_load(service_env(kafka_bootstrap, topic_prefix), {"status": status})
    assert run.returncode == 0, run.stderr
    assert "status.csv: 2 rows, 1 accepted into store-status, 1 rejected" in run.stderr
    [dead] = read_topic(settings_for(kafka_bootstrap, topic_prefix), "store-status-dlq", 1)
    letter = json.loads(dead.value())
    assert (letter["source"].rsplit("/", 1)[-1], letter["line"], letter["field"]) == (
        "status.csv",
        3,
        "store_id",
    )
    assert letter["reason"] == f"begins with '-': {WHY}"


def test_the_worker_dead_letters_topic_records_of_formula_stores(
    kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
):
    settings = settings_for(kafka_bootstrap, topic_prefix)
    good = Poll("ok-store", 1_674_000_000 * 1_000_000, "active")
    produce_polls(settings, [good])
    producer = make_producer(settings)
    bad = {
        "store-status": ("=1+1", encode_poll(Poll("=1+1", good[1], "active"))),
        "store-hours": ("+1", json.dumps({"store_id": "+1", "hours": []}).encode()),
        "store-timezones": (
            "@1",
            json.dumps({"store_id": "@1", "timezone_str": "America/Chicago"}).encode(),
        ),
    }
    for topic, (store_id, value) in bad.items():
        producer.produce(settings.topic(topic), value, store_id.encode())
    assert producer.flush(30) == 0
    worker = ServiceProcess(["worker"], service_env(kafka_bootstrap, topic_prefix), tmp_path, "w")
    probe = StateProbe(settings)
    try:
        wait_until(
            lambda: probe.view().polls == expected_view([good]),
            120,
            "the good poll in the worker's state",
            worker.log_tail,
        )
        letters = {
            message.key().decode(): json.loads(message.value())
            for message in read_topic(settings, "store-status-dlq", len(bad))
        }
    finally:
        worker.stop()
        probe.close()
    assert {store_id: letter["field"] for store_id, letter in letters.items()} == {
        "=1+1": "store_id",
        "+1": "store_id",
        "@1": "store_id",
    }
    for store_id, letter in letters.items():
        assert letter["reason"] == f"begins with {store_id[0]!r}: {WHY}"
