"""Shared fixtures: where the tests find a Kafka broker and a PostgreSQL server.

For each of the two, independently, the first that applies:

1. ``KAFKA_BOOTSTRAP_SERVERS`` / ``DATABASE_URL`` from the environment;
2. testcontainers, when a Docker engine answers (apache/kafka, postgres:15);
3. the local servers of ``deploy/local`` (no Docker): started here when needed
   and left running for the next session, which then starts in a second
   (``.ci/run`` stops them; so does ``deploy/local/stack.sh stop``).

Tests that use these fixtures are marked ``integration`` automatically. They
are never skipped: no server is a failure, not a skip.
"""

from __future__ import annotations

import functools
import os
import socket
import subprocess
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from storemon.config import (
    DEFAULT_DATABASE_URL,
    DEFAULT_KAFKA_BOOTSTRAP,
    REPO_ROOT,
    state_dir_from_env,
    with_local_passfile,
)

KAFKA_IMAGE = "apache/kafka:3.9.2"
POSTGRES_IMAGE = "postgres:15"
STACK_SCRIPT = REPO_ROOT / "deploy" / "local" / "stack.sh"
SERVICE_FIXTURES = frozenset({"kafka_bootstrap", "postgres_dsn"})


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


@functools.cache
def docker_available() -> bool:
    """A Docker engine answers a ping within a few seconds."""
    try:
        import docker

        client = docker.from_env(timeout=3)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:
        return False


@functools.cache
def start_local_stack() -> None:
    """deploy/local/stack.sh start: idempotent, quick when already running.

    The script itself leaves alone whichever server the environment configures.
    """
    proc = subprocess.run(
        ["bash", str(STACK_SCRIPT), "start"],
        capture_output=True,
        text=True,
        timeout=900,  # a first run downloads Kafka
        check=False,
    )
    if proc.returncode != 0:
        pytest.fail(
            f"{STACK_SCRIPT} start failed (exit {proc.returncode}):\n{proc.stdout}{proc.stderr}",
            pytrace=False,
        )


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_kafka_container() -> tuple[Any, str]:
    # testcontainers' KafkaContainer only knows Confluent's image; the official
    # apache/kafka image is configured by KAFKA_* variables instead. Its
    # advertised listener must be the address clients use, so the host port
    # is chosen up front rather than mapped at random.
    from testcontainers.core.container import DockerContainer
    from testcontainers.core.docker_client import DockerClient
    from testcontainers.core.wait_strategies import LogMessageWaitStrategy

    host = DockerClient().host()
    port = _free_port()
    env = {
        "KAFKA_NODE_ID": "1",
        "KAFKA_PROCESS_ROLES": "broker,controller",
        "KAFKA_LISTENERS": f"PLAINTEXT://:{port},CONTROLLER://:9093",
        "KAFKA_ADVERTISED_LISTENERS": f"PLAINTEXT://{host}:{port}",
        "KAFKA_CONTROLLER_LISTENER_NAMES": "CONTROLLER",
        "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP": "CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "KAFKA_CONTROLLER_QUORUM_VOTERS": "1@localhost:9093",
        "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR": "1",
        "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR": "1",
        "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS": "0",
    }
    container = DockerContainer(KAFKA_IMAGE).with_bind_ports(port, port)
    for key, value in env.items():
        container = container.with_env(key, value)
    container.waiting_for(LogMessageWaitStrategy("Kafka Server started").with_startup_timeout(120))
    container.start()
    return container, f"{host}:{port}"


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap servers of a Kafka broker the tests may create topics on."""
    configured = os.environ.get("KAFKA_BOOTSTRAP_SERVERS")
    if configured:
        yield configured
    elif docker_available():
        container, bootstrap = _start_kafka_container()
        try:
            yield bootstrap
        finally:
            container.stop()
    else:
        start_local_stack()
        yield DEFAULT_KAFKA_BOOTSTRAP


@pytest.fixture(scope="session")
def postgres_dsn() -> Iterator[str]:
    """A postgresql:// URL (asyncpg-ready) whose user may create tables."""
    configured = os.environ.get("DATABASE_URL")
    if configured:
        yield with_local_passfile(configured, state_dir_from_env())
    elif docker_available():
        try:
            from testcontainers.community.postgres import PostgresContainer
        except ImportError:  # testcontainers before the `community` namespace
            from testcontainers.postgres import PostgresContainer

        container = PostgresContainer(
            POSTGRES_IMAGE, username="storemon", password="storemon", dbname="storemon", driver=None
        )
        container.start()
        try:
            yield container.get_connection_url()
        finally:
            container.stop()
    else:
        start_local_stack()
        yield with_local_passfile(DEFAULT_DATABASE_URL, state_dir_from_env())


def unique_prefix() -> str:
    """A fresh topic/group prefix, e.g. ``t-1a2b3c4d-``."""
    return f"t-{uuid.uuid4().hex[:8]}-"


@pytest.fixture
def topic_prefix() -> str:
    """Per-test prefix for topic and group names, so tests never share data."""
    return unique_prefix()
