"""`storemon lag` against a real broker."""

import json
import subprocess

from storemon.inputs.values import Poll

from .services import STOREMON, produce_polls, service_env, settings_for


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
