"""Running storemon's own services as real processes in tests, and waiting on them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import replace
from pathlib import Path
from typing import TypeVar

from ports import free_port as free_port  # the integration tests import it from here

from storemon.config import Settings
from storemon.inputs.values import Poll
from storemon.kafka.clients import make_producer
from storemon.kafka.lag import consumer_lag
from storemon.kafka.offsets import end_offsets, read_range
from storemon.kafka.partitioning import partition_of
from storemon.kafka.topics import changelog_topic, ensure_topics
from storemon.messages.polls import encode_poll
from storemon.state.layout import POLL_BYTES, POLLS_TABLE, decode_day, poll_day_key
from storemon.state.reader import StateReader, StateView
from storemon.timebase import US_PER_DAY, format_timestamp

T = TypeVar("T")
STOREMON = [sys.executable, "-m", "storemon.cli"]


def service_env(kafka_bootstrap: str, prefix: str, **extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env.update(
        KAFKA_BOOTSTRAP_SERVERS=kafka_bootstrap,
        STOREMON_TOPIC_PREFIX=prefix,
        STOREMON_TOPIC_PARTITIONS="4",
        # Tests run several workers on one host: /metrics only where a test asks.
        STOREMON_WORKER_METRICS_PORT="0",
        STOREMON_REPORTER_METRICS_PORT="0",
    )
    env.update(extra)
    return env


def deployment_env(settings: Settings, **extra: str) -> dict[str, str]:
    """The environment of a service of the test deployment `settings` describes: its
    broker and topic prefix, database and schema, listening on loopback only."""
    return service_env(
        settings.kafka_bootstrap_servers,
        settings.topic_prefix,
        DATABASE_URL=settings.database_url,
        STOREMON_DB_SCHEMA=settings.db_schema,
        STOREMON_API_HOST="127.0.0.1",
        **extra,
    )


def settings_for(kafka_bootstrap: str, prefix: str) -> Settings:
    return replace(
        Settings.from_env(),
        kafka_bootstrap_servers=kafka_bootstrap,
        topic_prefix=prefix,
        topic_partitions=4,
    )


class ServiceProcess:
    """One `storemon <command>` process, its output in a log file under `log_dir`."""

    def __init__(self, command: list[str], env: dict[str, str], log_dir: Path, name: str) -> None:
        self.log_path = log_dir / f"{name}.log"
        self._log = self.log_path.open("ab")
        self.process = subprocess.Popen(
            [*STOREMON, *command], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )

    def log_tail(self, lines: int = 40) -> str:
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    def kill(self) -> None:
        """SIGKILL: no shutdown hooks, no final commits."""
        self.process.kill()
        self.process.wait(30)

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(60)
            except subprocess.TimeoutExpired:
                self.kill()
        self._log.close()


def wait_until(
    probe: Callable[[], T | None],
    timeout: float,
    what: str,
    on_timeout: str | Callable[[], str] = "",
) -> T:
    """Poll `probe` until it returns something truthy; fail naming `what` after `timeout` s.

    `on_timeout` adds detail to the failure; a callable is asked only then, so that
    logs it reads are the ones written while waiting, not those from before.
    """
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result:
            return result
        if time.monotonic() > deadline:
            detail = on_timeout() if callable(on_timeout) else on_timeout
            raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}\n{detail}")
        time.sleep(0.2)


def produce_polls(settings: Settings, polls: Iterable[Poll]) -> int:
    """Produce in the given order, keyed by store, confirmed by the broker."""
    ensure_topics(settings)
    producer = make_producer(settings)
    topic = settings.topic("store-status")
    count = 0
    for poll in polls:
        producer.produce(
            topic, encode_poll(poll), poll.store_id.encode()
        )
        count += 1
        if count % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0, "not every record was delivered"
    return count


def expected_view(polls: Iterable[Poll]) -> dict[str, dict[int, bool]]:
    """The state the worker must hold: the last accepted status per store and timestamp."""
    state: dict[str, dict[int, bool]] = {}
    for poll in polls:
        state.setdefault(poll.store_id, {})[poll.timestamp_us] = (
            poll.status == "active"
        )
    return state


class StateProbe:
    """Reads the workers' state (their table changelogs) as often as a test asks."""

    def __init__(self, settings: Settings) -> None:
        self.reader = StateReader(settings)

    def view(self) -> StateView:
        self.reader.catch_up(timeout=30)
        return self.reader.view

    def close(self) -> None:
        self.reader.close()


def worker_lag(settings: Settings) -> int:
    return sum(row.lag for row in consumer_lag(settings) if row.group.endswith("storemon-worker"))


def record_count(settings: Settings, topics: Iterable[str]) -> int:
    """How many records the topics (full names) hold together: their end offsets summed
    (topics written without transactions hold one record per offset)."""
    return sum(sum(end_offsets(settings, topic).values()) for topic in topics)


def run_load(env: dict[str, str], files: dict[str, Path]) -> subprocess.CompletedProcess[str]:
    """`storemon load` of `files` ({"status": path, ...}) to its end; never a traceback."""
    arguments = [argument for name, path in files.items() for argument in (f"--{name}", str(path))]
    run = subprocess.run(
        [*STOREMON, "load", "--no-progress", *arguments],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert "Traceback" not in run.stderr, run.stderr
    return run


def changelog_history(settings: Settings, store_id: str, stamp_us: int) -> str:
    """Every value the poll's store-day had in its changelog, oldest first: whether each
    held the poll (for a test's failure message)."""
    topic = changelog_topic(settings, POLLS_TABLE)
    key = poll_day_key(store_id, stamp_us // US_PER_DAY)
    partition = partition_of(store_id.encode(), settings.topic_partitions)
    end = {partition: end_offsets(settings, topic)[partition]}
    lines = [f"{store_id} lost its poll at {format_timestamp(stamp_us)}; {topic}[{partition}]:"]
    for message in read_range(settings, topic, {}, end):
        if message.key() == key:
            value = message.value() or b""
            lines.append(
                f"  @{message.offset()} ts={message.timestamp()[1]}"
                f" polls={len(value) // POLL_BYTES} holds it: {stamp_us in decode_day(value)}"
            )
    return "\n".join(lines) + "\n"
