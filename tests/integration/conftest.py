"""Fixtures of the integration tests: for report tests, a PostgreSQL schema of their own;
the API in-process on it."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from storemon.api.app import create_app
from storemon.config import Settings
from storemon.database import reports_db
from storemon.kafka.topics import ensure_topics

from .api_process import ApiStarter, call
from .services import ServiceProcess, deployment_env, free_port, settings_for, wait_until


@pytest.fixture
def db_schema() -> str:
    return f"t_{uuid.uuid4().hex[:12]}"


@pytest.fixture
def report_settings(kafka_bootstrap: str, postgres_dsn: str, topic_prefix: str, db_schema: str):
    """Settings of one test's deployment: its own topics and its own reports table."""
    return dataclasses.replace(
        settings_for(kafka_bootstrap, topic_prefix), database_url=postgres_dsn, db_schema=db_schema
    )


@pytest.fixture
def api(report_settings: Settings, pool: asyncpg.Pool):
    """`async with api(**settings) as client`: the API in-process (aiohttp's test
    server) on the test's topics and schema."""
    ensure_topics(report_settings)

    @asynccontextmanager
    async def start(**overrides):
        app = create_app(dataclasses.replace(report_settings, **overrides))
        async with TestClient(TestServer(app)) as client:
            yield client

    return start


@pytest.fixture
async def pool(report_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's schema (created by create_pool); dropped afterwards with its CSVs."""
    pool = await reports_db.create_pool(report_settings, "storemon-tests", max_size=4)
    try:
        yield pool
    finally:
        async with pool.acquire() as connection:
            await drop_report_schema(connection, report_settings.db_schema)
        await pool.close()


async def drop_report_schema(connection: asyncpg.Connection, schema: str) -> None:
    """Drop a test's schema, unlinking its reports' large objects first (they live outside)."""
    if await connection.fetchval(
        "SELECT to_regclass(format('%I.reports', $1::text)) IS NOT NULL", schema
    ):
        unlink = await connection.fetchval(
            "SELECT format('SELECT lo_unlink(lo_oid) FROM %I.reports WHERE lo_oid IS NOT NULL',"
            " $1::text)",
            schema,
        )
        await connection.execute(unlink)
    drop = await connection.fetchval(
        "SELECT format('DROP SCHEMA IF EXISTS %I CASCADE', $1::text)", schema
    )
    await connection.execute(drop)


API_TOKEN_VARIABLES = (
    "STOREMON_TOKENS",
    "STOREMON_TOKENS_FILE",
    "STOREMON_INGEST_TOKEN",
    "STOREMON_INGEST_TOKEN_FILE",
)


@pytest.fixture
def api_process(report_settings: Settings, pool, tmp_path: Path) -> Iterator[ApiStarter]:
    """`api_process(**env)`: a `storemon api` process with that environment; its base URL.

    (`pool` creates the test's schema and drops it afterwards.)"""
    ensure_topics(report_settings)
    processes: list[ServiceProcess] = []

    def start(**env: str) -> str:
        port = free_port()
        environment = deployment_env(report_settings, STOREMON_API_PORT=str(port), **env)
        # Only the tokens the test gives: none inherited from the environment.
        for name in API_TOKEN_VARIABLES:
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

        wait_until(healthy, 60, "the API to answer", process.log_tail)
        return url

    yield start
    for process in processes:
        process.stop()
