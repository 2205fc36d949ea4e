"""Settings from the environment are validated at start: one line naming what is wrong."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from storemon.config import (
    DEFAULT_DATABASE_URL,
    Settings,
    SettingsError,
    with_local_passfile,
)

pytestmark = pytest.mark.usefixtures("default_settings_environment")


INVALID = [
    ("STOREMON_API_PORT", "-5", "must be an integer from 1 to 65535"),
    ("STOREMON_API_PORT", "0", "must be an integer from 1 to 65535"),
    ("STOREMON_API_PORT", "65536", "must be an integer from 1 to 65535"),
    ("STOREMON_API_PORT", "http", "must be an integer from 1 to 65535"),
    ("STOREMON_WORKER_METRICS_PORT", "-1", "must be an integer from 0 to 65535"),
    ("STOREMON_WORKER_METRICS_PORT", "70000", "must be an integer from 0 to 65535"),
    ("STOREMON_REPORTER_METRICS_PORT", "-1", "must be an integer from 0 to 65535"),
    ("STOREMON_PUBLIC_URL", "evil.example:666", "must be an http:// or https:// URL"),
    ("STOREMON_PUBLIC_URL", "https://a.example/?x=1", "without query or fragment"),
    ("STOREMON_TOPIC_PARTITIONS", "0", "must be an integer of at least 1"),
    ("STOREMON_TOPIC_REPLICATION", "0", "must be an integer of at least 1"),
    ("STOREMON_REPORT_TIMEOUT_S", "0", "must be an integer of at least 1"),
    ("STOREMON_REPORT_RETENTION_DAYS", "0", "must be an integer of at least 1"),
    ("STOREMON_REPORT_RETENTION_DAYS", "-30", "must be an integer of at least 1"),
    ("STOREMON_MAX_BODY_BYTES", "100", "must be an integer of at least 1024"),
    ("KAFKA_BOOTSTRAP_SERVERS", " ", "must be host:port[,host:port...]"),
    ("KAFKA_BOOTSTRAP_SERVERS", "a:1,,b:2", "must be host:port[,host:port...]"),
    ("STOREMON_TOPIC_PREFIX", "my prefix/", "the characters Kafka allows in topic names"),
    ("STOREMON_TOPIC_PREFIX", "x" * 201, "must be at most 200 of the characters"),
    ("STOREMON_LOG_LEVEL", "loud", "must be one of debug, info, warning, error"),
    ("STOREMON_API_HOST", " ", "must name an address"),
    ("STOREMON_DB_SCHEMA", "s" * 64, "must be a PostgreSQL schema name of 1 to 63 bytes"),
    ("STOREMON_CREATE_TOPICS", "maybe", "must be true or false (or 1/0, yes/no, on/off)"),
    ("STOREMON_CREATE_TOPICS", "2", "must be true or false"),
]


@pytest.mark.parametrize(("variable", "value", "allowed"), INVALID)
def test_an_invalid_setting_is_named_with_its_value_and_what_is_allowed(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, allowed: str
):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        Settings.from_env()
    message = str(error.value)
    assert message.startswith(f"{variable}={value!r} is invalid: ")
    assert allowed in message
    assert "\n" not in message


VALID = [
    ("STOREMON_API_PORT", "1"),
    ("STOREMON_API_PORT", "65535"),
    ("STOREMON_WORKER_METRICS_PORT", "0"),
    ("STOREMON_REPORTER_METRICS_PORT", "0"),
    ("STOREMON_PUBLIC_URL", "https://storemon.example.com/base/"),
    ("STOREMON_TOPIC_PARTITIONS", "1"),
    ("STOREMON_REPORT_RETENTION_DAYS", "1"),
    ("STOREMON_MAX_BODY_BYTES", "1024"),
    ("KAFKA_BOOTSTRAP_SERVERS", "kafka-1:9092,kafka-2:9092"),
    ("DATABASE_URL", "postgres://u:p@db:5432/storemon"),
    ("STOREMON_TOPIC_PREFIX", "team-a.prod_1-"),
    ("STOREMON_LOG_LEVEL", "WARNING"),
]


@pytest.mark.parametrize(("variable", "value"), VALID)
def test_values_at_the_edges_of_their_range_are_accepted(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str
):
    monkeypatch.setenv(variable, value)
    Settings.from_env()


def test_the_defaults_are_valid():
    assert Settings.from_env().problems() == []


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, True),
        ("", True),
        ("true", True),
        ("TRUE", True),
        ("1", True),
        ("yes", True),
        ("on", True),
        ("false", False),
        ("False", False),
        (" 0 ", False),
        ("no", False),
        ("off", False),
    ],
)
def test_create_topics_is_true_unless_turned_off(
    monkeypatch: pytest.MonkeyPatch, value: str | None, expected: bool
):
    if value is not None:
        monkeypatch.setenv("STOREMON_CREATE_TOPICS", value)
    assert Settings.from_env().create_topics is expected


def test_a_bad_database_url_is_shown_without_what_may_be_its_password(
    monkeypatch: pytest.MonkeyPatch,
):
    monkeypatch.setenv("DATABASE_URL", "mysql://app:hunter2@db/app")
    with pytest.raises(SettingsError) as error:
        Settings.from_env()
    assert str(error.value) == (
        "DATABASE_URL='mysql://...' is invalid: must begin with postgresql:// or postgres://"
    )


def test_every_invalid_setting_is_named_on_one_line(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("STOREMON_TOPIC_PARTITIONS", "0")
    monkeypatch.setenv("STOREMON_REPORT_RETENTION_DAYS", "-1")
    with pytest.raises(SettingsError) as error:
        Settings.from_env()
    assert str(error.value) == (
        "STOREMON_TOPIC_PARTITIONS='0' is invalid: must be an integer of at least 1; "
        "STOREMON_REPORT_RETENTION_DAYS='-1' is invalid: must be an integer of at least 1"
    )


def _storemon_with(variable: str, value: str, *command: str) -> subprocess.CompletedProcess[str]:
    """`storemon COMMAND` with one setting changed (the others cleared by the fixture)."""
    environment = {**os.environ, variable: value}
    return subprocess.run(
        [sys.executable, "-m", "storemon.cli", *command],
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


@pytest.mark.parametrize("command", ["api", "worker", "reporter", "create-topics", "lag"])
def test_a_command_with_a_bad_setting_exits_2_with_one_line(command: str):
    run = _storemon_with("STOREMON_API_PORT", "-5", command)
    assert run.returncode == 2, run.stderr
    assert run.stderr == (
        "storemon: error: STOREMON_API_PORT='-5' is invalid: must be an integer from 1 to 65535\n"
    )


@pytest.mark.parametrize("command", [["worker"], ["load", "--status", "polls.csv"]])
def test_a_bad_create_topics_value_stops_the_command_with_one_line(command: list[str]):
    run = _storemon_with("STOREMON_CREATE_TOPICS", "maybe", *command)
    assert run.returncode == 2, run.stderr
    assert run.stderr == (
        "storemon: error: STOREMON_CREATE_TOPICS='maybe' is invalid: "
        "must be true or false (or 1/0, yes/no, on/off)\n"
    )


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (
            "postgresql://storemon@127.0.0.1:55432/storemon",
            "postgresql://storemon@127.0.0.1:55432/storemon?passfile=/state/postgres/pgpass",
        ),
        (
            "postgres://storemon@localhost:55499/storemon?sslmode=disable",
            "postgres://storemon@localhost:55499/storemon?sslmode=disable"
            "&passfile=/state/postgres/pgpass",
        ),
        # A password, a passfile of its own, another server: left as they are.
        ("postgresql://storemon:pw@127.0.0.1:55432/storemon", None),
        ("postgresql://storemon@127.0.0.1:55432/storemon?passfile=/mine", None),
        ("postgresql://storemon@db.example:5432/storemon", None),
    ],
)
def test_a_local_url_without_a_password_takes_deploy_locals_passfile(
    monkeypatch: pytest.MonkeyPatch, url: str, expected: str | None
):
    monkeypatch.delenv("PGPASSFILE", raising=False)
    assert with_local_passfile(url, Path("/state")) == (expected or url)


def test_pgpassfile_in_the_environment_wins(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.setenv("PGPASSFILE", "/home/me/.pgpass")
    url = "postgresql://storemon@127.0.0.1:55432/storemon"
    assert with_local_passfile(url, Path("/state")) == url


def test_the_settings_find_the_local_passfile_in_the_state_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    monkeypatch.delenv("PGPASSFILE", raising=False)
    monkeypatch.setenv("STOREMON_STATE_DIR", str(tmp_path))
    assert Settings.from_env().database_url == (
        f"{DEFAULT_DATABASE_URL}?passfile={tmp_path}/postgres/pgpass"
    )


def test_the_worker_keeps_faust_data_in_its_setting_else_under_the_state_folder(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
):
    from storemon.kafka.topics import worker_data_dir

    monkeypatch.setenv("STOREMON_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("STOREMON_TOPIC_PREFIX", "a-")
    assert worker_data_dir(Settings.from_env()) == tmp_path / "faust" / "a-storemon-worker-data"
    monkeypatch.setenv("STOREMON_WORKER_DATA_DIR", str(tmp_path / "w2"))
    assert worker_data_dir(Settings.from_env()) == tmp_path / "w2"
