"""Configuration from the environment: one place every service reads it."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

#: Where `deploy/local` keeps servers' data, logs and downloads (gitignored).
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_STATE_DIR = REPO_ROOT / ".state"

# Local servers listen on non-standard loopback ports so they never collide
# with a broker or cluster a developer already runs on the standard ones.
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_DATABASE_URL = "postgresql://storemon@127.0.0.1:55432/storemon"
DEFAULT_API_PORT = 8080
DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_WORKER_METRICS_PORT = 9101
DEFAULT_DB_SCHEMA = "public"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_REPORT_TIMEOUT_S = 300
DEFAULT_REPORT_RETENTION_DAYS = 30

# Logical topic names (system.md); the deployment prefix is added by Settings.topic().
TOPIC_STATUS = "store-status"
TOPIC_HOURS = "store-hours"
TOPIC_TIMEZONES = "store-timezones"
TOPIC_REPORT_REQUESTS = "report-requests"
TOPIC_STATUS_DLQ = "store-status-dlq"


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError:
        raise ValueError(f"environment variable {name} must be an integer, got {raw!r}") from None


@dataclass(frozen=True)
class Settings:
    kafka_bootstrap_servers: str
    database_url: str
    api_port: int
    topic_prefix: str
    topic_partitions: int
    topic_replication_factor: int
    state_dir: Path
    ingest_token: str | None
    # Settings of the reporter and the API; defaults so code that builds a
    # Settings by hand for other services need not name them.
    api_host: str = DEFAULT_API_HOST
    #: PostgreSQL schema of the reports table (one per deployment or test).
    db_schema: str = DEFAULT_DB_SCHEMA
    #: Largest request body the API reads (413 beyond).
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    #: A report still Running this long after its request is marked Failed.
    report_timeout_s: int = DEFAULT_REPORT_TIMEOUT_S
    #: Reports requested longer ago than this are deleted with their CSV.
    report_retention_days: int = DEFAULT_REPORT_RETENTION_DAYS
    #: Where a worker serves /metrics (on api_host); 0: it serves none.
    worker_metrics_port: int = DEFAULT_WORKER_METRICS_PORT
    #: Public base URL of the API (e.g. https://storemon.example.com) for the links it
    #: answers with; None: relative links, never one built from a client's Host header.
    public_url: str | None = None

    @classmethod
    def from_env(cls) -> Settings:
        return cls(
            kafka_bootstrap_servers=os.environ.get(
                "KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA_BOOTSTRAP
            ),
            database_url=os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            api_port=_env_int("STOREMON_API_PORT", DEFAULT_API_PORT),
            topic_prefix=os.environ.get("STOREMON_TOPIC_PREFIX", ""),
            topic_partitions=_env_int("STOREMON_TOPIC_PARTITIONS", 4),
            topic_replication_factor=_env_int("STOREMON_TOPIC_REPLICATION", 1),
            state_dir=Path(os.environ.get("STOREMON_STATE_DIR", str(DEFAULT_STATE_DIR))),
            ingest_token=os.environ.get("STOREMON_INGEST_TOKEN") or None,
            api_host=os.environ.get("STOREMON_API_HOST", DEFAULT_API_HOST),
            db_schema=os.environ.get("STOREMON_DB_SCHEMA", DEFAULT_DB_SCHEMA),
            max_body_bytes=_env_int("STOREMON_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES),
            report_timeout_s=_env_int("STOREMON_REPORT_TIMEOUT_S", DEFAULT_REPORT_TIMEOUT_S),
            report_retention_days=_env_int(
                "STOREMON_REPORT_RETENTION_DAYS", DEFAULT_REPORT_RETENTION_DAYS
            ),
            worker_metrics_port=_env_int(
                "STOREMON_WORKER_METRICS_PORT", DEFAULT_WORKER_METRICS_PORT
            ),
            public_url=os.environ.get("STOREMON_PUBLIC_URL") or None,
        )

    def topic(self, name: str) -> str:
        """The deployment's name for a logical topic or consumer group."""
        return f"{self.topic_prefix}{name}"
