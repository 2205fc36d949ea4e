"""Fixtures of the integration tests: for report tests, a PostgreSQL schema of their own;
the API in-process on it."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import asyncpg
import pytest
from aiohttp.test_utils import TestClient, TestServer

from storemon import reports_db
from storemon.api.app import create_app
from storemon.config import Settings
from storemon.kafka import ensure_topics

from .services import settings_for


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
