"""Topics owned by operations (STOREMON_CREATE_TOPICS=false) and `create-topics --dry-run`,
on the real broker: a check that refuses what storemon cannot work with, naming the
topic, and creates nothing."""

from __future__ import annotations

import dataclasses
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from confluent_kafka.admin import AdminClient, NewTopic

from storemon.config import Settings
from storemon.kafka.clients import admin_client
from storemon.kafka.topics import (
    TOPIC_HOURS,
    TOPIC_REPORT_TASKS,
    TOPIC_SPECS,
    TOPIC_TIMEZONES,
    TopicError,
    TopicSpec,
    check_topics,
    ensure_topics,
)

from .services import STOREMON, service_env, settings_for, wait_until


@pytest.fixture
def settings(kafka_bootstrap: str, topic_prefix: str) -> Iterator[Settings]:
    """A deployment whose topics belong to operations; its topics deleted afterwards."""
    settings = dataclasses.replace(settings_for(kafka_bootstrap, topic_prefix), create_topics=False)
    yield settings
    admin = admin_client(settings)
    ours = [name for name in admin.list_topics(timeout=30).topics if name.startswith(topic_prefix)]
    for future in (admin.delete_topics(ours) if ours else {}).values():
        future.result(30)


def prefixed_topics(admin: AdminClient, prefix: str) -> list[str]:
    return sorted(name for name in admin.list_topics(timeout=30).topics if name.startswith(prefix))


def storemon(settings: Settings, *command: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    environment = service_env(
        settings.kafka_bootstrap_servers, settings.topic_prefix, STOREMON_CREATE_TOPICS="false"
    )
    return subprocess.run(
        [*STOREMON, *command],
        env=environment,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_check_names_the_missing_topic(settings: Settings):
    ensure_topics(settings, [spec for spec in TOPIC_SPECS if spec.name != TOPIC_TIMEZONES])
    with pytest.raises(TopicError) as error:
        check_topics(settings)
    assert str(error.value).startswith(f"topic {settings.topic(TOPIC_TIMEZONES)} does not exist")


def test_check_refuses_a_topic_that_must_be_compacted_but_is_not(settings: Settings):
    # Operations' store-hours deletes old records instead of compacting them.
    ensure_topics(
        settings,
        [
            TopicSpec(TOPIC_HOURS, {"cleanup.policy": "delete"})
            if spec.name == TOPIC_HOURS
            else spec
            for spec in TOPIC_SPECS
        ],
    )
    with pytest.raises(TopicError) as error:
        check_topics(settings)
    assert str(error.value) == (
        f"topic {settings.topic(TOPIC_HOURS)} has cleanup.policy=delete, storemon needs compact"
    )


def test_check_refuses_input_topics_of_different_partition_counts(settings: Settings):
    ensure_topics(settings, [spec for spec in TOPIC_SPECS if spec.name != TOPIC_HOURS])
    # As operations might have made it, by other means than storemon's.
    hours = settings.topic(TOPIC_HOURS)
    admin = admin_client(settings)
    created = admin.create_topics(
        [
            NewTopic(
                hours, num_partitions=2, replication_factor=1, config={"cleanup.policy": "compact"}
            )
        ]
    )
    created[hours].result(30)
    # Created is not yet listed by every broker's metadata: until it is, it is "absent".
    wait_until(lambda: hours in admin.list_topics(timeout=30).topics, 30, f"{hours} listed")
    with pytest.raises(TopicError) as error:
        check_topics(settings)
    assert f"{hours} has 2" in str(error.value)


def test_a_copartitioned_topic_created_late_takes_the_others_count(settings: Settings):
    ensure_topics(settings, [spec for spec in TOPIC_SPECS if spec.name != TOPIC_REPORT_TASKS])
    ensure_topics(dataclasses.replace(settings, topic_partitions=7))
    tasks = settings.topic(TOPIC_REPORT_TASKS)
    metadata = admin_client(settings).list_topics(tasks, timeout=30).topics[tasks]
    assert len(metadata.partitions) == settings.topic_partitions
    check_topics(settings)


def test_check_passes_when_the_topics_are_as_storemon_needs(settings: Settings):
    ensure_topics(settings)
    check_topics(settings)


def test_load_refuses_missing_topics_with_one_line_and_creates_none(
    settings: Settings, tmp_path: Path
):
    (tmp_path / "polls.csv").write_text("store_id,status,timestamp_utc\n")
    run = storemon(settings, "load", "--status", "polls.csv", "--no-progress", cwd=tmp_path)
    assert run.returncode == 1, run.stderr
    assert run.stderr.startswith("storemon: error: topics ")
    assert settings.topic("store-status") in run.stderr
    assert len(run.stderr.splitlines()) == 1, run.stderr  # no traceback
    assert prefixed_topics(admin_client(settings), settings.topic_prefix) == []


def test_load_runs_on_topics_operations_created(settings: Settings, tmp_path: Path):
    ensure_topics(settings)
    (tmp_path / "polls.csv").write_text(
        "store_id,status,timestamp_utc\ns1,active,2023-01-25 10:00:00.000000 UTC\n"
    )
    run = storemon(settings, "load", "--status", "polls.csv", "--no-progress", cwd=tmp_path)
    assert run.returncode == 0, run.stderr


def test_create_topics_dry_run_prints_each_topic_and_creates_none(
    settings: Settings, tmp_path: Path
):
    run = storemon(settings, "create-topics", "--dry-run", cwd=tmp_path)
    assert run.returncode == 0, run.stderr
    lines = run.stdout.splitlines()
    assert [line.split()[0] for line in lines] == [settings.topic(s.name) for s in TOPIC_SPECS]
    hours = lines[[spec.name for spec in TOPIC_SPECS].index(TOPIC_HOURS)]
    assert hours == (
        f"{settings.topic(TOPIC_HOURS)} partitions=4 replication=1 cleanup.policy=compact"
    )
    assert prefixed_topics(admin_client(settings), settings.topic_prefix) == []
