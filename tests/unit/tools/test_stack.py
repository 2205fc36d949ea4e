"""`storemon up --workers N --reporters M`: its arguments, and the processes it plans, each
worker and reporter on a metrics port of its own and each worker with its own Faust folder."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from storemon.cli import build_parser, main
from storemon.config import Settings
from storemon.tools.stack import StackError, describe, metrics_ports, plan_services

pytestmark = pytest.mark.usefixtures("default_settings_environment")


@pytest.fixture
def settings(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Settings:
    monkeypatch.setenv("STOREMON_STATE_DIR", str(tmp_path))
    return Settings.from_env()


def test_up_starts_one_worker_and_one_reporter_by_default():
    args = build_parser().parse_args(["up"])
    assert (args.workers, args.reporters) == (1, 1)
    args = build_parser().parse_args(["up", "--workers", "3", "--reporters", "2", "--sample"])
    assert (args.workers, args.reporters, args.sample) == (3, 2, True)


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--workers", "0"], "argument --workers: must be at least 1, got 0"),
        (["--reporters", "-2"], "argument --reporters: must be at least 1, got -2"),
        (["--workers", "two"], "argument --workers: 'two' is not an integer"),
    ],
)
def test_fewer_than_one_worker_or_reporter_is_a_usage_error(arguments, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["up", *arguments])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err


def test_each_worker_and_reporter_gets_the_next_port_no_other_process_has(settings):
    # Defaults: API 8080, workers from 9101, reporters from 9102.
    specs = plan_services(settings, workers=3, reporters=2)
    assert [(spec.name, spec.command, spec.metrics_port) for spec in specs] == [
        ("worker", "worker", 9101),
        ("worker-2", "worker", 9103),  # 9102 is the first reporter's
        ("worker-3", "worker", 9104),
        ("reporter", "reporter", 9102),
        ("reporter-2", "reporter", 9105),
        ("api", "api", None),
    ]
    for spec in specs[:3]:
        assert spec.env["STOREMON_WORKER_METRICS_PORT"] == str(spec.metrics_port)
    # The API asks the workers who owns which partition (live store queries).
    assert specs[-1].env["STOREMON_WORKER_URLS"] == (
        "http://127.0.0.1:9101,http://127.0.0.1:9103,http://127.0.0.1:9104"
    )
    for spec in specs[3:5]:
        assert spec.env["STOREMON_REPORTER_METRICS_PORT"] == str(spec.metrics_port)


def test_each_worker_past_the_first_has_a_faust_folder_of_its_own(settings, tmp_path):
    workers = [spec for spec in plan_services(settings, 3, 1) if spec.command == "worker"]
    default = tmp_path / "faust" / "storemon-worker-data"
    assert "STOREMON_WORKER_DATA_DIR" not in workers[0].env  # a plain worker's folder
    assert [spec.env["STOREMON_WORKER_DATA_DIR"] for spec in workers[1:]] == [
        f"{default}-2",
        f"{default}-3",
    ]


def test_one_of_each_keeps_the_configured_ports_and_port_0_means_no_metrics(settings):
    specs = plan_services(settings, 1, 1)
    assert [(spec.name, spec.metrics_port) for spec in specs] == [
        ("worker", 9101),
        ("reporter", 9102),
        ("api", None),
    ]
    silent = dataclasses.replace(settings, worker_metrics_port=0, reporter_metrics_port=0)
    ports = [spec.metrics_port for spec in plan_services(silent, 2, 2)]
    assert ports == [0, 0, 0, 0, None]
    assert "worker-2:" in describe(plan_services(silent, 2, 2), "127.0.0.1")
    assert "no metrics" in describe(plan_services(silent, 2, 2), "127.0.0.1")


def test_the_api_port_is_never_given_as_a_metrics_port(settings):
    crowded = dataclasses.replace(settings, api_port=9102, reporter_metrics_port=9200)
    ports = [spec.metrics_port for spec in plan_services(crowded, 2, 1)]
    assert ports == [9101, 9103, 9200, None]


def test_printed_ports_name_each_process():
    specs = plan_services(
        dataclasses.replace(Settings.from_env(), worker_metrics_port=9300), 2, 1
    )
    text = describe(specs, "127.0.0.1")
    assert "worker:      http://127.0.0.1:9300/metrics" in text
    assert "worker-2:    http://127.0.0.1:9301/metrics" in text
    assert "reporter:    http://127.0.0.1:9102/metrics" in text


def test_ports_beyond_65535_are_an_error():
    with pytest.raises(StackError, match="no metrics port left"):
        metrics_ports(65535, 2, set())
    with pytest.raises(StackError, match="at least 1"):
        plan_services(Settings.from_env(), 0, 1)
