"""storemon.logs: every service's log records as one JSON object per line on stderr."""

import json
import logging
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from storemon.cli import build_parser, main
from storemon.config import Settings
from storemon.observability.logs import configure_logging

REPORT_ID = "0123456789abcdef0123456789abcdef"


@pytest.fixture(autouse=True)
def root_logger():
    """configure_logging replaces the root logger's handlers and level: put them back."""
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    yield root
    root.handlers[:] = handlers
    root.setLevel(level)


def logged_objects(stderr: str) -> list[dict]:
    lines = stderr.splitlines()
    assert stderr.endswith("\n") and all(line.startswith("{") for line in lines), stderr
    return [json.loads(line) for line in lines]


def test_a_record_with_context_is_one_json_line_with_its_fields(capsys):
    configure_logging("info")
    before = datetime.now(UTC)
    logging.getLogger("storemon.reporter").info(
        "report %s complete: %d stores",
        REPORT_ID,
        3,
        extra={"report_id": REPORT_ID, "store_id": "s1", "state_dir": Path("/tmp/x")},
    )
    (entry,) = logged_objects(capsys.readouterr().err)
    assert entry == {
        "ts": entry["ts"],
        "level": "INFO",
        "logger": "storemon.reporter",
        "message": f"report {REPORT_ID} complete: 3 stores",
        "report_id": REPORT_ID,
        "store_id": "s1",
        "state_dir": "/tmp/x",  # not a JSON type: as text
    }
    assert entry["ts"].endswith("Z")
    logged_at = datetime.fromisoformat(entry["ts"])
    assert logged_at.utcoffset() == timedelta(0)
    assert before - timedelta(milliseconds=1) <= logged_at <= datetime.now(UTC)


def test_context_cannot_hide_the_fixed_fields(capsys):
    configure_logging("info")
    logging.getLogger("storemon.api").warning("disk full", extra={"level": "fine", "ts": 0})
    (entry,) = logged_objects(capsys.readouterr().err)
    assert entry["level"] == "WARNING"
    assert entry["ts"] != 0


@pytest.mark.parametrize(("environment", "expected"), [("warning", "warning"), (None, "info")])
@pytest.mark.parametrize("service", ["api", "reporter", "worker"])
def test_the_services_log_level_comes_from_the_environment(
    monkeypatch, capsys, service, environment, expected
):
    if environment is None:
        monkeypatch.delenv("STOREMON_LOG_LEVEL", raising=False)
    else:
        monkeypatch.setenv("STOREMON_LOG_LEVEL", environment)
    assert build_parser().parse_args([service]).loglevel is None  # no --loglevel: the setting
    level = Settings.from_env().log_level
    assert level == expected
    configure_logging(level)
    log = logging.getLogger("storemon.test")
    log.debug("never shown")
    log.info("shown at info")
    log.warning("always shown")
    messages = [entry["message"] for entry in logged_objects(capsys.readouterr().err)]
    shown = ["always shown"] if expected == "warning" else ["shown at info", "always shown"]
    assert messages == shown


def test_the_level_flag_overrides_the_environment(monkeypatch):
    monkeypatch.setenv("STOREMON_LOG_LEVEL", "warning")
    assert build_parser().parse_args(["api", "--loglevel", "debug"]).loglevel == "debug"


def test_level_names_are_case_insensitive_and_unknown_ones_refused(monkeypatch, capsys):
    configure_logging("WARNING")
    assert logging.getLogger().level == logging.WARNING
    configure_logging("debug")
    assert logging.getLogger().level == logging.DEBUG
    with pytest.raises(ValueError, match="unknown log level 'loud'"):
        configure_logging("loud")
    with pytest.raises(SystemExit) as exit_:
        build_parser().parse_args(["reporter", "--loglevel", "loud"])
    assert exit_.value.code == 2
    assert "--loglevel: invalid log_level value: 'loud'" in capsys.readouterr().err
    monkeypatch.setenv("STOREMON_LOG_LEVEL", "loud")
    assert main(["reporter"]) == 2
    assert capsys.readouterr().err == (
        "storemon: error: STOREMON_LOG_LEVEL='loud' is invalid: "
        "must be one of debug, info, warning, error\n"
    )


def fail_to_make_the_report() -> None:
    raise ValueError("no state for store s1\nsecond line of the message")


def test_an_exception_logs_its_traceback_inside_the_one_json_line(capsys):
    configure_logging("info")
    try:
        fail_to_make_the_report()
    except ValueError:
        logging.getLogger("storemon.reporter").exception(
            "report %s failed", REPORT_ID, extra={"report_id": REPORT_ID}
        )
    stderr = capsys.readouterr().err
    assert stderr.count("\n") == 1
    (entry,) = logged_objects(stderr)
    assert entry["message"] == f"report {REPORT_ID} failed"
    assert (entry["level"], entry["report_id"]) == ("ERROR", REPORT_ID)
    traceback = entry["exc_info"]
    assert traceback.startswith("Traceback (most recent call last):")
    assert "in fail_to_make_the_report" in traceback
    assert traceback.endswith("ValueError: no state for store s1\nsecond line of the message")


def test_asyncpg_pool_errors_are_one_field_without_the_traceback(capsys):
    configure_logging("info")
    for logger in ("asyncpg.pool", "storemon.reporter"):
        try:
            raise ConnectionRefusedError(111, "Connect call failed ('127.0.0.1', 5432)")
        except ConnectionRefusedError:
            logging.getLogger(logger).warning("failed to reconnect; retrying", exc_info=True)
    pool, reporter = logged_objects(capsys.readouterr().err)
    assert pool == {
        "ts": pool["ts"],
        "level": "WARNING",
        "logger": "asyncpg.pool",
        "message": "failed to reconnect; retrying",
        "error": "ConnectionRefusedError: [Errno 111] Connect call failed ('127.0.0.1', 5432)",
    }
    # Only asyncpg's pool: every other logger keeps its tracebacks.
    assert "error" not in reporter
    assert reporter["exc_info"].startswith("Traceback (most recent call last):")


def test_the_kafka_client_library_logs_json_lines_too(monkeypatch, capsys):
    from storemon.kafka.clients import make_producer

    configure_logging("info")
    # Nothing listens on port 1: librdkafka logs each refused connection.
    monkeypatch.setenv("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:1")
    producer = make_producer(Settings.from_env())
    deadline = time.monotonic() + 20
    logged = ""
    while "storemon.kafka.librdkafka" not in (logged := logged + capsys.readouterr().err):
        assert time.monotonic() < deadline, f"no librdkafka log line in 20 s: {logged!r}"
        producer.poll(0.2)  # serves the client's log lines
    records = [r for r in logged_objects(logged) if r["logger"] == "storemon.kafka.librdkafka"]
    assert any("127.0.0.1:1" in r["message"] for r in records), records
    assert all(r["level"] in {"ERROR", "WARNING", "INFO"} for r in records), records
