"""deploy/local's PostgreSQL: the application role can do its work and nothing more, and
a cluster made by the previous version of postgres.sh is brought to that at start.

On a private cluster (faults/conftest.py), since the checks change roles and pg_hba.conf.
"""

from __future__ import annotations

import dataclasses
import stat
import uuid
from pathlib import Path
from urllib.parse import urlsplit

import asyncpg
import pytest

from storemon.config import LOCAL_PASSFILE, Settings
from storemon.database import reports_db
from storemon.messages.report_requests import new_report_id

from .conftest import PrivateServer

#: What the previous postgres.sh left: trust for everyone, the application role a superuser.
OLD_PG_HBA = """local all all trust
host all all 127.0.0.1/32 trust
host all all ::1/128 trust
"""
#: Statements only a superuser (or a role granted server file or program access) may run.
FORBIDDEN = [
    "COPY (SELECT 1) TO PROGRAM 'true'",
    "COPY (SELECT 1) TO '/tmp/storemon-must-not-write'",
    "CREATE TEMP TABLE stolen (line text); COPY stolen FROM '/etc/passwd'",
    "SELECT pg_read_file('postgresql.conf')",
    "SELECT lo_import('/etc/passwd')",
    "CREATE ROLE intruder",
    "CREATE DATABASE elsewhere",
    "ALTER ROLE storemon SUPERUSER",
]


def _port(server: PrivateServer) -> int:
    port = urlsplit(server.address).port
    assert port is not None
    return port


async def _as_superuser(server: PrivateServer, state_dir: Path) -> asyncpg.Connection:
    """The `postgres` role over the cluster's unix socket, as postgres.sh does its set-up."""
    return await asyncpg.connect(
        host=str(state_dir / "postgres" / "run"),
        port=_port(server),
        user="postgres",
        database="postgres",
    )


def _without_password(server: PrivateServer) -> str:
    return server.address.split("?", 1)[0]


async def _make_it_like_the_previous_script(server: PrivateServer, state_dir: Path) -> None:
    admin = await _as_superuser(server, state_dir)
    try:
        await admin.execute("ALTER ROLE storemon SUPERUSER PASSWORD NULL")
        (state_dir / "postgres" / "data" / "pg_hba.conf").write_text(OLD_PG_HBA)
        await admin.execute("SELECT pg_reload_conf()")
    finally:
        await admin.close()
    (state_dir / LOCAL_PASSFILE).unlink()


async def _check_the_application_role(server: PrivateServer, state_dir: Path) -> None:
    passfile = state_dir / LOCAL_PASSFILE
    assert stat.S_IMODE(passfile.stat().st_mode) == 0o600
    # TCP needs the password: trust is gone.
    with pytest.raises(asyncpg.InvalidPasswordError):
        await asyncpg.connect(_without_password(server))
    connection = await asyncpg.connect(server.address)
    try:
        role = await connection.fetchrow(
            "SELECT rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls"
            " FROM pg_roles WHERE rolname = current_user"
        )
        assert not any(role.values()), dict(role)
        for statement in FORBIDDEN:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await connection.execute(statement)
    finally:
        await connection.close()


async def _report_round_trip(server: PrivateServer) -> None:
    """What storemon does: its own schema, a report, its CSV as a large object, deleted."""
    settings = dataclasses.replace(
        Settings.from_env(), database_url=server.address, db_schema=f"t_{uuid.uuid4().hex[:12]}"
    )
    pool = await reports_db.create_pool(settings, "storemon-tests", max_size=1)
    try:
        async with pool.acquire() as connection:
            report_id = new_report_id()
            await reports_db.insert_running(connection, report_id, {})
            stored = await reports_db.complete_report(
                connection, report_id, b"store_id\n1\n", row_count=1, as_of=None, state_offsets={}
            )
            assert await reports_db.large_object_exists(connection, stored.lo_oid)
            assert await reports_db.delete_report(connection, report_id)
            assert not await reports_db.large_object_exists(connection, stored.lo_oid)
    finally:
        await pool.close()


async def test_the_application_role_does_its_work_and_nothing_more(
    private_postgres: PrivateServer, state_dir: Path
):
    await _check_the_application_role(private_postgres, state_dir)
    await _report_round_trip(private_postgres)


async def test_start_upgrades_a_cluster_of_the_previous_script(
    private_postgres: PrivateServer, state_dir: Path
):
    await _make_it_like_the_previous_script(private_postgres, state_dir)
    old = await asyncpg.connect(_without_password(private_postgres))
    try:
        assert await old.fetchval("SELECT rolsuper FROM pg_roles WHERE rolname = current_user")
    finally:
        await old.close()
    # Running: start brings it up to date in place.
    private_postgres.start()
    await _check_the_application_role(private_postgres, state_dir)
    await _report_round_trip(private_postgres)
    # Stopped: the same, and again (idempotent).
    await _make_it_like_the_previous_script(private_postgres, state_dir)
    private_postgres.stop()
    for _ in range(2):
        private_postgres.start()
        await _check_the_application_role(private_postgres, state_dir)
    await _report_round_trip(private_postgres)
