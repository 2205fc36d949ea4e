"""Fixtures of the unit tests."""

from __future__ import annotations

import pytest

#: Every variable storemon.config.Settings reads.
SETTINGS_VARIABLES = (
    "KAFKA_BOOTSTRAP_SERVERS",
    "DATABASE_URL",
    "STOREMON_API_PORT",
    "STOREMON_API_HOST",
    "STOREMON_TOPIC_PREFIX",
    "STOREMON_TOPIC_PARTITIONS",
    "STOREMON_TOPIC_REPLICATION",
    "STOREMON_CREATE_TOPICS",
    "STOREMON_DB_SCHEMA",
    "STOREMON_MAX_BODY_BYTES",
    "STOREMON_REPORT_TIMEOUT_S",
    "STOREMON_REPORT_RETENTION_DAYS",
    "STOREMON_WORKER_METRICS_PORT",
    "STOREMON_REPORTER_METRICS_PORT",
    "STOREMON_PUBLIC_URL",
    "STOREMON_LOG_LEVEL",
    "STOREMON_STATE_DIR",
    "STOREMON_WORKER_DATA_DIR",
    "STOREMON_TOKENS",
    "STOREMON_TOKENS_FILE",
    "STOREMON_INGEST_TOKEN",
    "STOREMON_INGEST_TOKEN_FILE",
    "STOREMON_WORKER_URL",
    "STOREMON_WORKER_URLS",
    "STOREMON_API_URL",
    "STOREMON_API_TOKEN",
    "STOREMON_API_TOKEN_FILE",
    "KAFKA_SECURITY_PROTOCOL",
    "KAFKA_SASL_MECHANISM",
    "KAFKA_SASL_USERNAME",
    "KAFKA_SASL_PASSWORD",
    "KAFKA_SASL_PASSWORD_FILE",
    "KAFKA_SSL_CA_FILE",
    "KAFKA_SSL_CERT_FILE",
    "KAFKA_SSL_KEY_FILE",
    "KAFKA_SSL_KEY_PASSWORD",
    "KAFKA_SSL_KEY_PASSWORD_FILE",
)


@pytest.fixture
def default_settings_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """None of the settings' variables set: each test starts from the defaults."""
    for name in SETTINGS_VARIABLES:
        monkeypatch.delenv(name, raising=False)
