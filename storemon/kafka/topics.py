"""Topic and consumer-group names, each topic's configuration, and creating the topics,
or, where operations own them (STOREMON_CREATE_TOPICS=false), checking them.

Names here are logical; `Settings.topic()` adds the deployment's prefix
(STOREMON_TOPIC_PREFIX) to every topic and group, so two prefixes on one
broker are two independent deployments.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient, ConfigResource, NewTopic, TopicMetadata

from storemon.config import Settings
from storemon.kafka.clients import admin_client
from storemon.state.layout import NEWEST_POLL_TABLE, TABLES
from storemon.timebase import US_PER_DAY

# Logical topic names (system.md).
TOPIC_STATUS = "store-status"
TOPIC_HOURS = "store-hours"
TOPIC_TIMEZONES = "store-timezones"
TOPIC_REPORT_REQUESTS = "report-requests"
TOPIC_REPORT_TASKS = "report-tasks"
TOPIC_REPORT_EVENTS = "report-events"
TOPIC_STATUS_DLQ = "store-status-dlq"
INPUT_TOPICS = (TOPIC_STATUS, TOPIC_HOURS, TOPIC_TIMEZONES)
#: Topics whose partition p goes to the worker owning state partition p: they must
#: share one partition count (Faust assigns same-numbered partitions of topics with
#: one count, consumed by one app, to the same worker).
#: The Faust worker app: its id names its consumer group and its tables' changelogs.
WORKER_APP = "storemon-worker"
#: The changelogs of the worker's tables: storemon creates them like every other topic
#: (the worker declares none), so operations can own them too and a worker needs no
#: right to create topics.
CHANGELOG_TOPICS = tuple(
    f"{WORKER_APP}-{table}-changelog" for table in (*TABLES, NEWEST_POLL_TABLE)
)
COPARTITIONED_TOPICS = (*INPUT_TOPICS, TOPIC_REPORT_TASKS, *CHANGELOG_TOPICS)

DAY_MS = US_PER_DAY // 1000


class TopicError(Exception):
    """The deployment's topics are not as storemon needs them: one line naming the topic
    and what is wrong."""


@dataclass(frozen=True)
class TopicSpec:
    name: str
    configs: dict[str, str] = field(default_factory=dict)


# The three input topics share one partition count and are keyed by store_id with
# the same (Java-compatible murmur2) partitioner, so a store's polls, hours and zone
# land in the same partition number: the Faust worker owning that partition holds
# all of the store's state without a repartition step.
TOPIC_SPECS: tuple[TopicSpec, ...] = (
    # Late polls up to 8 days old still count, so keep a margin above that.
    TopicSpec(TOPIC_STATUS, {"cleanup.policy": "delete", "retention.ms": str(10 * DAY_MS)}),
    TopicSpec(TOPIC_HOURS, {"cleanup.policy": "compact"}),
    TopicSpec(TOPIC_TIMEZONES, {"cleanup.policy": "compact"}),
    TopicSpec(
        TOPIC_REPORT_REQUESTS, {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
    ),
    # A part asked of a state partition's owner; useless once its report timed out.
    TopicSpec(TOPIC_REPORT_TASKS, {"cleanup.policy": "delete", "retention.ms": str(DAY_MS)}),
    # Reports that ended, for consumers that react to them (a week to catch up).
    TopicSpec(
        TOPIC_REPORT_EVENTS, {"cleanup.policy": "delete", "retention.ms": str(7 * DAY_MS)}
    ),
    TopicSpec(
        TOPIC_STATUS_DLQ, {"cleanup.policy": "delete", "retention.ms": str(30 * DAY_MS)}
    ),
    # The worker's state: the latest value of every key, kept for good.
    *(TopicSpec(changelog, {"cleanup.policy": "compact"}) for changelog in CHANGELOG_TOPICS),
)


def worker_app_id(settings: Settings) -> str:
    """The Faust app id, and so the worker's consumer group and changelog prefix."""
    return settings.topic(WORKER_APP)


def worker_data_dir(settings: Settings) -> Path:
    """Where the worker keeps Faust's data: STOREMON_WORKER_DATA_DIR, else
    `<STOREMON_STATE_DIR>/faust/<app id>-data`. Two workers on one host need one each."""
    if settings.worker_data_dir is not None:
        return settings.worker_data_dir
    return settings.state_dir / "faust" / f"{worker_app_id(settings)}-data"


def changelog_topic(settings: Settings, table: str) -> str:
    """The compacted topic behind one of the worker's tables (one of CHANGELOG_TOPICS)."""
    return f"{worker_app_id(settings)}-{table}-changelog"


def reporter_group(settings: Settings) -> str:
    """The reporters' consumer group on `report-requests`."""
    return settings.topic("storemon-reporter")


def state_reader_group(settings: Settings) -> str:
    """The group id of changelog readers (they assign partitions, never join or commit)."""
    return settings.topic("storemon-state-reader")


def reader_group(settings: Settings) -> str:
    """The group id of range readers (assigned partitions, no commits)."""
    return settings.topic("storemon-reader")


def topic_exists(client: Producer | Consumer | AdminClient, topic: str, timeout: float) -> bool:
    """Whether the broker answers within `timeout` and knows `topic` (readiness);
    KafkaException when it does not answer."""
    found = client.list_topics(topic, timeout).topics.get(topic)
    return found is not None and found.error is None


def _wanted(settings: Settings, specs: Iterable[TopicSpec]) -> dict[str, TopicSpec]:
    """The deployment's name of each topic, with its spec."""
    return {settings.topic(spec.name): spec for spec in specs}


def _new_topics(
    settings: Settings, wanted: dict[str, TopicSpec], existing: dict[str, TopicMetadata]
) -> list[NewTopic]:
    copartitioned = set(map(settings.topic, COPARTITIONED_TOPICS))
    # A co-partitioned topic created after the others takes their count.
    shared = next(iter(_input_partition_counts(settings, existing).values()), None)
    return [
        NewTopic(
            name,
            num_partitions=(
                shared if shared is not None and name in copartitioned
                else settings.topic_partitions
            ),
            replication_factor=settings.topic_replication_factor,
            config=spec.configs,
        )
        for name, spec in wanted.items()
        if name not in existing
    ]


def missing_topics(
    settings: Settings, specs: Iterable[TopicSpec] = TOPIC_SPECS, timeout: float = 30.0
) -> list[NewTopic]:
    """The deployment's topics the broker lacks, as `ensure_topics` would create them."""
    existing = admin_client(settings).list_topics(timeout=timeout).topics
    return _new_topics(settings, _wanted(settings, specs), existing)


def ensure_topics(
    settings: Settings, specs: Iterable[TopicSpec] = TOPIC_SPECS, timeout: float = 30.0
) -> list[str]:
    """Create the deployment's topics that are missing; return the names created.

    Idempotent: existing topics are left as they are, but a wrong cleanup policy
    on one is an error (TopicError), since compaction vs deletion changes what state
    survives.
    """
    admin = admin_client(settings)
    wanted = _wanted(settings, specs)
    missing = _new_topics(settings, wanted, admin.list_topics(timeout=timeout).topics)
    created = []
    for name, future in (admin.create_topics(missing) if missing else {}).items():
        try:
            future.result(timeout)
            created.append(name)
        except KafkaException as exc:
            # Another process may have created it between our listing and now.
            if exc.args[0].name() != "TOPIC_ALREADY_EXISTS":
                raise
    _check_cleanup_policies(admin, wanted, timeout)
    return created


def check_topics(
    settings: Settings, specs: Iterable[TopicSpec] = TOPIC_SPECS, timeout: float = 30.0
) -> None:
    """Where operations own the topics: TopicError unless every topic exists, the input
    topics share one partition count and every cleanup policy is the one storemon needs."""
    admin = admin_client(settings)
    existing = admin.list_topics(timeout=timeout).topics
    wanted = _wanted(settings, specs)
    absent = [name for name in wanted if name not in existing]
    if absent:
        what = (
            f"topic {absent[0]} does not exist"
            if len(absent) == 1
            else f"topics {', '.join(absent)} do not exist"
        )
        raise TopicError(
            f"{what} (STOREMON_CREATE_TOPICS=false: storemon creates none; "
            "`storemon create-topics` would)"
        )
    _check_copartitioned(_input_partition_counts(settings, existing))
    _check_cleanup_policies(admin, wanted, timeout)


def prepare_topics(settings: Settings, specs: Iterable[TopicSpec] = TOPIC_SPECS) -> None:
    """What a service does with its topics as it starts: create the missing ones, or,
    with STOREMON_CREATE_TOPICS=false, check them (TopicError says what is wrong)."""
    if settings.create_topics:
        ensure_topics(settings, specs)
    else:
        check_topics(settings, specs)


def _input_partition_counts(
    settings: Settings, existing: dict[str, TopicMetadata]
) -> dict[str, int]:
    """The partition count of each co-partitioned topic that exists."""
    return {
        name: len(existing[name].partitions)
        for name in map(settings.topic, COPARTITIONED_TOPICS)
        if name in existing
    }


def _check_copartitioned(counts: dict[str, int]) -> None:
    """A store's records are found by murmur2(store_id) modulo the partition count: input
    topics that disagree on it cannot keep a store's state in one place."""
    if len(set(counts.values())) > 1:
        raise TopicError(
            "the input topics, report-tasks and the worker's changelogs must have one"
            " partition count (co-partitioned by store_id): "
            + ", ".join(f"{name} has {count}" for name, count in sorted(counts.items()))
        )


def input_partitions(settings: Settings, timeout: float = 30.0) -> int:
    """The partition count the input topics share (the setting's, while none exists);
    TopicError when they differ."""
    existing = admin_client(settings).list_topics(timeout=timeout).topics
    counts = _input_partition_counts(settings, existing)
    _check_copartitioned(counts)
    return next(iter(counts.values()), settings.topic_partitions)


def _check_cleanup_policies(
    admin: AdminClient, wanted: dict[str, TopicSpec], timeout: float
) -> None:
    resources = [ConfigResource(ConfigResource.Type.TOPIC, name) for name in wanted]
    deadline = time.monotonic() + timeout
    while True:
        try:
            described = {
                resource.name: future.result(timeout)
                for resource, future in admin.describe_configs(resources).items()
            }
            break
        except KafkaException as exc:
            # A topic created a moment ago may not be known to the broker answering yet.
            if (
                exc.args[0].code() != KafkaError.UNKNOWN_TOPIC_OR_PART
                or time.monotonic() > deadline
            ):
                raise
            time.sleep(0.1)
    for name, configs in described.items():
        actual = configs["cleanup.policy"].value
        expected = wanted[name].configs["cleanup.policy"]
        if actual != expected:
            raise TopicError(
                f"topic {name} has cleanup.policy={actual}, storemon needs {expected}"
            )
