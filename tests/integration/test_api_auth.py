"""Bearer tokens on a real `storemon api` process, against the real Kafka and PostgreSQL."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from storemon.config import Settings
from storemon.kafka import ensure_topics

from .services import ServiceProcess, free_port, service_env, wait_until

INGEST_TOKEN = "ingest-s3cret"
ONE_POLL = b'[{"store_id":"s1","timestamp_utc":"2023-01-25T18:00:00Z","status":"active"}]'
JSON_TYPE = {"Content-Type": "application/json"}

ApiStarter = Callable[..., str]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    url: str,
    method: str,
    path: str,
    *,
    token: bytes | str | None = None,
    body: bytes | None = None,
    headers: dict[str, str | bytes] | None = None,
) -> Answer:
    """One request with http.client, which sends header bytes as given (non-ASCII included)."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    all_headers: dict[str, str | bytes] = dict(headers or {})
    if token is not None:
        token_bytes = token.encode() if isinstance(token, str) else token
        all_headers["Authorization"] = b"Bearer " + token_bytes
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()


@pytest.fixture
def api_process(report_settings: Settings, pool, tmp_path: Path) -> Iterator[ApiStarter]:
    """`api_process(**env)`: a `storemon api` process with that environment; its base URL.

    (`pool` creates the test's schema and drops it afterwards.)"""
    ensure_topics(report_settings)
    processes: list[ServiceProcess] = []

    def start(**env: str) -> str:
        port = free_port()
        environment = service_env(
            report_settings.kafka_bootstrap_servers,
            report_settings.topic_prefix,
            DATABASE_URL=report_settings.database_url,
            STOREMON_DB_SCHEMA=report_settings.db_schema,
            STOREMON_API_HOST="127.0.0.1",
            STOREMON_API_PORT=str(port),
            **env,
        )
        for name in ("STOREMON_INGEST_TOKEN", "STOREMON_INGEST_TOKEN_FILE"):
            if name not in env:
                environment.pop(name, None)
        process = ServiceProcess(["api"], environment, tmp_path, f"api-{len(processes)}")
        processes.append(process)
        url = f"http://127.0.0.1:{port}"

        def healthy() -> bool:
            assert process.process.poll() is None, process.log_tail()
            try:
                return call(url, "GET", "/healthz").status == 200
            except OSError:
                return False

        wait_until(healthy, 60, "the API to answer", process.log_tail())
        return url

    yield start
    for process in processes:
        process.stop()


def post_poll(url: str, token: bytes | str | None) -> Answer:
    return call(url, "POST", "/events", token=token, body=ONE_POLL, headers=JSON_TYPE)


def test_a_non_ascii_bearer_token_is_refused_not_a_server_error(api_process: ApiStarter):
    url = api_process(STOREMON_INGEST_TOKEN=INGEST_TOKEN)
    for token in ("jéton".encode(), "\N{SNOWMAN}".encode(), b"\xff\xfe"):
        answer = post_poll(url, token)
        assert answer.status == 401, (token, answer.body)
    assert post_poll(url, INGEST_TOKEN).json()["accepted"] == 1


def test_a_non_ascii_configured_token_is_compared_as_utf8(api_process: ApiStarter):
    url = api_process(STOREMON_INGEST_TOKEN="clé-secrète")
    answer = post_poll(url, "clé-secrète")
    assert answer.status == 200, answer.body
