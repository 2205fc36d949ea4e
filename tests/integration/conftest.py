"""Fixtures of the integration tests: for report tests, a PostgreSQL schema of their own."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import AsyncIterator

import asyncpg
import pytest

from storemon import reports_db
from storemon.config import Settings

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
async def pool(report_settings: Settings) -> AsyncIterator[asyncpg.Pool]:
    """A pool on the test's schema (created by create_pool); dropped afterwards with its CSVs."""
    pool = await reports_db.create_pool(report_settings, "storemon-tests", max_size=4)
    try:
        yield pool
    finally:
        async with pool.acquire() as connection:
            await connection.execute(
                "SELECT lo_unlink(lo_oid) FROM reports WHERE lo_oid IS NOT NULL"
            )
            drop = await connection.fetchval(
                "SELECT format('DROP SCHEMA %I CASCADE', $1::text)", report_settings.db_schema
            )
            await connection.execute(drop)
        await pool.close()
