"""TLS to PostgreSQL: deploy/local's server offers it with a certificate signed by its own
CA ($STOREMON_STATE_DIR/postgres/ca.crt); a DATABASE_URL with `sslmode=verify-full` and
`sslrootcert=` gets a verified, encrypted connection, and a certificate the client's CA
did not sign is refused at once."""

from __future__ import annotations

import dataclasses
import ssl
import subprocess
import time
from pathlib import Path

import asyncpg
import pytest

from storemon.config import Settings, state_dir_from_env
from storemon.database import reports_db

pytestmark = pytest.mark.integration

ENCRYPTED = "SELECT ssl FROM pg_stat_ssl WHERE pid = pg_backend_pid()"


@pytest.fixture
def local_ca(postgres_dsn: str) -> Path:
    ca = state_dir_from_env() / "postgres" / "ca.crt"
    if not ca.exists():
        pytest.skip(f"the PostgreSQL under test is not deploy/local's: no CA at {ca}")
    return ca


def with_tls(url: str, ca: Path) -> str:
    return f"{url}{'&' if '?' in url else '?'}sslmode=verify-full&sslrootcert={ca}"


async def test_a_verified_tls_connection_with_the_local_ca(
    postgres_dsn: str, local_ca: Path, report_settings: Settings
):
    settings = dataclasses.replace(report_settings, database_url=with_tls(postgres_dsn, local_ca))
    pool = await reports_db.create_pool(settings, "storemon-tests", max_size=1)
    try:
        async with pool.acquire() as connection:
            assert await connection.fetchval(ENCRYPTED) is True
            assert await connection.fetchval("SELECT count(*) FROM reports") == 0
            await connection.execute(f"DROP SCHEMA {settings.db_schema} CASCADE")
    finally:
        await pool.close()


async def test_a_server_certificate_of_another_ca_is_refused_at_once(
    postgres_dsn: str, local_ca: Path, tmp_path: Path
):
    other_ca = tmp_path / "other-ca.crt"
    subprocess.run(
        ["openssl", "req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-days", "1",
         "-keyout", str(tmp_path / "other-ca.key"), "-out", str(other_ca),
         "-subj", "/CN=not the server's CA"],
        check=True, capture_output=True,
    )
    started = time.monotonic()
    with pytest.raises(ssl.SSLCertVerificationError, match="certificate verify failed"):
        await asyncpg.connect(with_tls(postgres_dsn, other_ca), timeout=10)
    assert time.monotonic() - started < 5
