"""Private servers for the fault tests: theirs to stop and restart, nobody else's.

Each is a Kafka broker or a PostgreSQL cluster of deploy/local, started on free
ports in a temporary state folder (the Kafka jars come from the shared Maven
cache, so no download), and stopped and deleted afterwards whatever happened.
Without Java and Maven, or PostgreSQL, the tests that need them are skipped,
except under CI (the variable CI set), where the scripts run anyway and fail.
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from storemon.config import LOCAL_PASSFILE, REPO_ROOT, Settings

from ..services import free_port

LOCAL = REPO_ROOT / "deploy" / "local"


@dataclass
class PrivateServer:
    """One deploy/local server of our own; `address` is a bootstrap or a DSN."""

    script: Path
    address: str
    env: dict[str, str]

    def _run(self, command: str) -> None:
        done = subprocess.run(
            ["bash", str(self.script), command],
            env=self.env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if done.returncode != 0:
            pytest.fail(
                f"{self.script.name} {command} failed (exit {done.returncode}):\n{done.stderr}",
                pytrace=False,
            )

    def start(self) -> None:
        """Returns once the server answers."""
        self._run("start")

    def stop(self) -> None:
        """Returns once the server is gone."""
        self._run("stop")


def _require(present: bool, what: str) -> None:
    if not present and not os.environ.get("CI"):
        pytest.skip(f"{what} not found: the fault tests run private servers with it")


@pytest.fixture
def state_dir() -> Iterator[Path]:
    # Short and under /tmp: PostgreSQL's socket path is limited, and as root the
    # server runs as `postgres`, which must be able to reach the folder.
    path = Path(tempfile.mkdtemp(prefix="storemon-fault-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


def _private(script: str, state_dir: Path, address: str, **ports: int) -> Iterator[PrivateServer]:
    env = dict(os.environ)
    env.update(
        STOREMON_STATE_DIR=str(state_dir),
        # Jars already fetched for the shared broker are copied, not downloaded.
        STOREMON_MAVEN_REPO=os.environ.get(
            "STOREMON_MAVEN_REPO", str(Settings.from_env().state_dir / "maven")
        ),
        STOREMON_KAFKA_HEAP_OPTS="-Xms128m -Xmx512m",
        **{name: str(port) for name, port in ports.items()},
    )
    server = PrivateServer(LOCAL / script, address, env)
    try:
        server.start()
        yield server
    finally:
        server.stop()


@pytest.fixture
def private_kafka(state_dir: Path) -> Iterator[PrivateServer]:
    """A single-node broker of our own; `address` is its bootstrap servers."""
    _require(bool(shutil.which("java") and shutil.which("mvn")), "Java or Maven")
    port = free_port()
    yield from _private(
        "kafka.sh",
        state_dir,
        f"127.0.0.1:{port}",
        STOREMON_KAFKA_PORT=port,
        STOREMON_KAFKA_CONTROLLER_PORT=free_port(),
        STOREMON_KAFKA_SASL_SSL_PORT=free_port(),
        STOREMON_KAFKA_SSL_PORT=free_port(),
    )


def _postgres_installed() -> bool:
    return bool(
        os.environ.get("STOREMON_PG_BIN")
        or glob.glob("/usr/lib/postgresql/*/bin/pg_ctl")
        or shutil.which("pg_ctl")
    )


@pytest.fixture
def private_postgres(state_dir: Path) -> Iterator[PrivateServer]:
    """A PostgreSQL cluster of our own; `address` is its postgresql:// URL."""
    _require(_postgres_installed(), "PostgreSQL (initdb, pg_ctl)")
    port = free_port()
    # The application role's password is in the cluster's own pgpass file.
    passfile = state_dir / LOCAL_PASSFILE
    yield from _private(
        "postgres.sh",
        state_dir,
        f"postgresql://storemon@127.0.0.1:{port}/storemon?passfile={passfile}",
        STOREMON_PG_PORT=port,
    )
