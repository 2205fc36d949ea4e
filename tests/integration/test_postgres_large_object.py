"""A report-sized CSV as a PostgreSQL large object, streamed in chunks.

asyncpg has no large-object API of its own, so this goes through the server
functions (lo_create, lo_open, lowrite, loread, lo_close, lo_unlink) the way
the reporter stores report CSVs: chunk by chunk inside one transaction,
never holding the whole object in one message.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import AsyncIterator

import asyncpg
import pytest

pytestmark = pytest.mark.integration

CHUNK = 1024 * 1024
# 50 MiB plus an odd tail, so the last chunk is a partial one.
SIZE = 50 * CHUNK + 12_345
INV_WRITE = 0x20000
INV_READ = 0x40000


@pytest.fixture
async def conn(postgres_dsn: str) -> AsyncIterator[asyncpg.Connection]:
    connection = await asyncpg.connect(postgres_dsn)
    try:
        yield connection
    finally:
        await connection.close()


async def write_large_object(conn: asyncpg.Connection, size: int) -> tuple[int, str]:
    """Writes `size` random bytes as a new large object; returns (oid, sha256)."""
    digest = hashlib.sha256()
    block = os.urandom(CHUNK)
    async with conn.transaction():
        oid = await conn.fetchval("SELECT lo_create(0)")
        fd = await conn.fetchval("SELECT lo_open($1, $2)", oid, INV_WRITE)
        written = 0
        while written < size:
            # Vary the content per chunk so a misplaced chunk changes the checksum.
            chunk = written.to_bytes(8, "big") + block[8 : min(CHUNK, size - written)]
            chunk = chunk[: size - written]
            n = await conn.fetchval("SELECT lowrite($1, $2)", fd, chunk)
            assert n == len(chunk)
            digest.update(chunk)
            written += n
        await conn.execute("SELECT lo_close($1)", fd)
    return oid, digest.hexdigest()


async def read_large_object(conn: asyncpg.Connection, oid: int) -> tuple[int, str]:
    """Reads a large object back chunk by chunk; returns (size, sha256)."""
    digest = hashlib.sha256()
    size = 0
    async with conn.transaction():
        fd = await conn.fetchval("SELECT lo_open($1, $2)", oid, INV_READ)
        while chunk := await conn.fetchval("SELECT loread($1, $2)", fd, CHUNK):
            digest.update(chunk)
            size += len(chunk)
        await conn.execute("SELECT lo_close($1)", fd)
    return size, digest.hexdigest()


async def lo_exists(conn: asyncpg.Connection, oid: int) -> bool:
    return await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM pg_largeobject_metadata WHERE oid = $1)", oid
    )


async def test_large_object_roundtrip(conn: asyncpg.Connection) -> None:
    oid, written_sha = await write_large_object(conn, SIZE)
    try:
        assert await lo_exists(conn, oid)
        size, read_sha = await read_large_object(conn, oid)
        assert size == SIZE
        assert read_sha == written_sha
    finally:
        await conn.execute("SELECT lo_unlink($1)", oid)
    assert not await lo_exists(conn, oid)
