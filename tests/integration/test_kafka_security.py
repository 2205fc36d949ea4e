"""Kafka security for every client, against deploy/local's secured listeners.

The local broker also listens SASL_SSL (SCRAM-SHA-256, SCRAM-SHA-512 and PLAIN logins of
the user `storemon`) and SSL with a client certificate required, with a CA of its own
(deploy/local/kafka.sh). Every storemon process of a whole report (load, worker,
reporter, API) runs over SASL_SSL and the CSV is byte-identical to `storemon
report-csv`; a wrong password, an untrusted broker certificate or a missing client
certificate each end a command with one clear line within seconds, and no secret
shows in what it prints.
"""

from __future__ import annotations

import os
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import pytest

from storemon.config import state_dir_from_env

from .services import STOREMON
from .stack import Stack, api_ready, completed, report_csv, trigger, wait_until

pytestmark = pytest.mark.integration

#: A refused login or certificate ends a command within this long (it is seen in ~1 s).
REFUSED_WITHIN_S = 10


@dataclass(frozen=True)
class SecuredListeners:
    sasl_ssl: str
    ssl: str
    tls_dir: Path
    password_file: Path

    def sasl_env(self, mechanism: str = "SCRAM-SHA-512", **changes: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.sasl_ssl,
            "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
            "KAFKA_SASL_MECHANISM": mechanism,
            "KAFKA_SASL_USERNAME": "storemon",
            "KAFKA_SASL_PASSWORD_FILE": str(self.password_file),
            "KAFKA_SSL_CA_FILE": str(self.tls_dir / "ca.crt"),
            **changes,
        }

    def ssl_env(self, **changes: str) -> dict[str, str]:
        return {
            "KAFKA_BOOTSTRAP_SERVERS": self.ssl,
            "KAFKA_SECURITY_PROTOCOL": "SSL",
            "KAFKA_SSL_CA_FILE": str(self.tls_dir / "ca.crt"),
            "KAFKA_SSL_CERT_FILE": str(self.tls_dir / "client.crt"),
            "KAFKA_SSL_KEY_FILE": str(self.tls_dir / "client.key"),
            **changes,
        }


@pytest.fixture(scope="module")
def secured(kafka_bootstrap: str) -> SecuredListeners:
    """deploy/local's secured listeners of the broker the tests use."""
    kafka_dir = state_dir_from_env() / "kafka"
    listeners = SecuredListeners(
        sasl_ssl=f"127.0.0.1:{os.environ.get('STOREMON_KAFKA_SASL_SSL_PORT', '19094')}",
        ssl=f"127.0.0.1:{os.environ.get('STOREMON_KAFKA_SSL_PORT', '19095')}",
        tls_dir=kafka_dir / "tls",
        password_file=kafka_dir / "sasl-password",
    )
    if not (listeners.password_file.is_file() and (listeners.tls_dir / "ca.crt").is_file()):
        pytest.fail(
            f"no secured listeners: {kafka_dir} holds no CA or SASL password. These tests "
            "need deploy/local's broker (deploy/local/kafka.sh start), not "
            f"KAFKA_BOOTSTRAP_SERVERS={kafka_bootstrap} alone",
            pytrace=False,
        )
    return listeners


def storemon(env: dict[str, str], *command: str) -> tuple[subprocess.CompletedProcess[str], float]:
    started = time.monotonic()
    done = subprocess.run(
        [*STOREMON, *command], env={**os.environ, **env}, capture_output=True, text=True,
        timeout=120, check=False,
    )
    return done, time.monotonic() - started


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"])
def test_each_sasl_mechanism_logs_in(secured, topic_prefix, mechanism):
    done, _ = storemon(
        secured.sasl_env(mechanism, STOREMON_TOPIC_PREFIX=topic_prefix),
        "create-topics", "--dry-run",
    )
    assert done.returncode == 0, done.stderr
    assert f"{topic_prefix}store-status partitions=" in done.stdout


def test_ssl_with_a_client_certificate(secured, topic_prefix):
    done, _ = storemon(secured.ssl_env(STOREMON_TOPIC_PREFIX=topic_prefix), "create-topics",
                       "--dry-run")
    assert done.returncode == 0, done.stderr


def one_error_line(done: subprocess.CompletedProcess[str]) -> str:
    assert done.returncode == 1, (done.returncode, done.stderr)
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert lines[0].startswith("storemon: error: Kafka at 127.0.0.1:"), lines[0]
    return lines[0]


@pytest.mark.parametrize("command", [["create-topics"], ["worker"], ["lag"]])
def test_a_wrong_password_ends_the_command_with_one_line(secured, topic_prefix, tmp_path,
                                                         command):
    wrong = tmp_path / "password"
    wrong.write_text("not-the-password\n")
    env = secured.sasl_env(KAFKA_SASL_PASSWORD_FILE=str(wrong), STOREMON_TOPIC_PREFIX=topic_prefix)
    done, took = storemon(env, *command)
    line = one_error_line(done)
    assert "SASL authentication error" in line and "invalid credentials" in line, line
    assert took < REFUSED_WITHIN_S, took
    password = secured.password_file.read_text().strip()
    assert password not in done.stderr + done.stdout
    assert "not-the-password" not in done.stderr + done.stdout


def make_ca(directory: Path) -> Path:
    """A CA the broker's certificate was not signed by."""
    subprocess.run(
        ["openssl", "req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-days", "1",
         "-keyout", str(directory / "other.key"), "-out", str(directory / "other.crt"),
         "-subj", "/CN=another CA"],
        check=True, capture_output=True,
    )
    return directory / "other.crt"


def test_an_untrusted_broker_certificate_ends_the_command_with_one_line(
    secured, topic_prefix, tmp_path
):
    env = secured.sasl_env(KAFKA_SSL_CA_FILE=str(make_ca(tmp_path)),
                           STOREMON_TOPIC_PREFIX=topic_prefix)
    done, took = storemon(env, "create-topics")
    line = one_error_line(done)
    assert "certificate verify failed" in line, line
    assert took < REFUSED_WITHIN_S, took


def test_no_client_certificate_where_one_is_required_ends_with_one_line(secured, topic_prefix):
    env = secured.ssl_env(STOREMON_TOPIC_PREFIX=topic_prefix)
    for name in ("KAFKA_SSL_CERT_FILE", "KAFKA_SSL_KEY_FILE"):
        env.pop(name)
    done, took = storemon(env, "create-topics")
    line = one_error_line(done)
    assert "bad certificate" in line, line
    assert took < REFUSED_WITHIN_S, took


@pytest.fixture
def secured_stack(secured, kafka_bootstrap, postgres_dsn, tmp_path):
    """load, worker, reporter and API, every process over SASL_SSL (SCRAM-SHA-512); the
    test itself watches the group's lag over the broker's plain listener."""
    with Stack.running(
        kafka_bootstrap, postgres_dsn, tmp_path, stores=40, seed=5, **secured.sasl_env()
    ) as stack:
        yield stack


async def test_a_whole_report_over_sasl_ssl_is_the_offline_report(secured_stack):
    stack = secured_stack
    assert b"storemon-worker" in stack.storemon("lag", "--json")
    async with aiohttp.ClientSession(stack.api_url) as http:
        report_id = await trigger(http)
        await completed(http, report_id, stack)
        assert await report_csv(http, report_id) == stack.expected_csv
    wait_until(lambda: api_ready(stack.api_url), 10, "the API to stay ready", stack.logs)
    stack.assert_running()
