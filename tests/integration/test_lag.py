"""`storemon lag` against a real broker."""

import json
import signal
import socket
import subprocess

from storemon.inputs.values import Poll
from storemon.kafka.lag import PartitionLag, consumer_lag
from storemon.kafka.topics import TOPIC_STATUS

from .services import (
    STOREMON,
    ServiceProcess,
    produce_polls,
    service_env,
    settings_for,
    wait_until,
)


def test_lag_counts_the_whole_backlog_of_a_group_that_committed_nothing(
    kafka_bootstrap, topic_prefix
):
    settings = settings_for(kafka_bootstrap, topic_prefix)
    produce_polls(
        settings, [Poll(f"s{i}", 1_674_000_000_000_000 + i, "active") for i in range(10)]
    )
    env = service_env(kafka_bootstrap, topic_prefix)
    run = subprocess.run(
        [*STOREMON, "lag", "--json"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    lag = json.loads(run.stdout)
    assert lag["total_lag"] == 10
    status_rows = [row for row in lag["groups"] if row["topic"] == f"{topic_prefix}store-status"]
    assert {row["group"] for row in status_rows} == {f"{topic_prefix}storemon-worker"}
    assert sum(row["end"] for row in status_rows) == 10
    assert all(row["committed"] is None and row["lag"] == row["end"] for row in status_rows)
    # Nobody consumes them, and the oldest has waited since it was produced.
    assert all(row["owner"] is None and row["group_state"] in ("Empty", "Dead")
               for row in status_rows)
    waiting = [row["lag_seconds"] for row in status_rows if row["lag"]]
    assert waiting and all(0 <= seconds < 120 for seconds in waiting), waiting
    groups = {row["group"] for row in lag["groups"]}
    assert f"{topic_prefix}storemon-reporter" in groups

    table = subprocess.run(
        [*STOREMON, "lag"], env=env, capture_output=True, text=True, timeout=60, check=True
    ).stdout
    assert table.splitlines()[-1] == "total lag: 10"

    over = subprocess.run(
        [*STOREMON, "lag", "--max-lag", "9"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert over.returncode == 3
    assert "exceeds --max-lag 9" in over.stderr
    within = subprocess.run(
        [*STOREMON, "lag", "--max-lag", "10"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert within.returncode == 0


def test_lag_names_the_worker_that_owns_a_stuck_partition_and_how_long_it_waits(
    kafka_bootstrap, topic_prefix, tmp_path
):
    """A worker frozen (SIGSTOP) keeps its partitions until the group notices: `lag`
    names it as their owner while the polls sent meanwhile wait longer and longer."""
    settings = settings_for(kafka_bootstrap, topic_prefix)
    env = service_env(kafka_bootstrap, topic_prefix)
    worker = ServiceProcess(["worker"], env, tmp_path, "worker")
    try:
        def owned() -> list[PartitionLag] | None:
            rows = [row for row in consumer_lag(settings, details=True)
                    if row.topic == settings.topic(TOPIC_STATUS)]
            return rows if rows and all(row.owner for row in rows) else None

        rows = wait_until(owned, 90, "the worker to own every partition", worker.log_tail)
        assert {row.owner for row in rows} == {
            f"storemon-worker@{socket.gethostname()}:{worker.process.pid} (127.0.0.1)"
        }
        assert {row.group_state for row in rows} == {"Stable"}
        worker.process.send_signal(signal.SIGSTOP)
        produce_polls(settings, [Poll(f"s{i}", 1_674_000_000_000_000 + i, "active")
                                 for i in range(20)])

        def stuck() -> list[PartitionLag] | None:
            rows = [row for row in consumer_lag(settings, details=True)
                    if row.topic == settings.topic(TOPIC_STATUS) and row.lag]
            return rows if rows and all((row.lag_seconds or 0) >= 2 for row in rows) else None

        rows = wait_until(stuck, 30, "the polls to wait 2 s", worker.log_tail)
        assert all(row.owner and str(worker.process.pid) in row.owner for row in rows)
    finally:
        worker.process.send_signal(signal.SIGCONT)
        worker.stop()
