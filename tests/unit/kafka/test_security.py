"""Kafka security settings (storemon/config.py KafkaSecurity) and the client
configurations built from them (storemon/kafka/clients.py), no broker."""

from __future__ import annotations

import ssl
from pathlib import Path

import faust
import pytest

from storemon.config import KafkaSecurity, Settings, SettingsError
from storemon.kafka.clients import LIBRDKAFKA_LOGGER, connection_config, faust_credentials

pytestmark = pytest.mark.usefixtures("default_settings_environment")


def settings_with(monkeypatch: pytest.MonkeyPatch, **env: str) -> Settings:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    return Settings.from_env()


def test_plaintext_by_default_and_nothing_but_the_servers(monkeypatch):
    settings = settings_with(monkeypatch)
    assert settings.kafka_security == KafkaSecurity()
    assert connection_config(settings) == {
        "bootstrap.servers": "127.0.0.1:19092",
        "security.protocol": "plaintext",
        "logger": LIBRDKAFKA_LOGGER,
    }
    assert faust_credentials(settings.kafka_security) is None


def test_sasl_ssl_with_a_password_file(monkeypatch, tmp_path: Path):
    password = tmp_path / "password"
    password.write_text("s3cret\n")  # as a Secret's file often ends
    ca = tmp_path / "ca.crt"
    ca.write_text("not read here")
    settings = settings_with(
        monkeypatch,
        KAFKA_SECURITY_PROTOCOL="sasl_ssl",
        KAFKA_SASL_MECHANISM="scram-sha-512",
        KAFKA_SASL_USERNAME="storemon-worker",
        KAFKA_SASL_PASSWORD_FILE=str(password),
        KAFKA_SSL_CA_FILE=str(ca),
    )
    assert connection_config(settings) == {
        "bootstrap.servers": "127.0.0.1:19092",
        "security.protocol": "sasl_ssl",
        "sasl.mechanism": "SCRAM-SHA-512",
        "sasl.username": "storemon-worker",
        "sasl.password": "s3cret",
        "ssl.endpoint.identification.algorithm": "https",
        "ssl.ca.location": str(ca),
        "logger": LIBRDKAFKA_LOGGER,
    }
    assert "s3cret" not in repr(settings)


def test_the_worker_gets_the_same_sasl_and_tls(monkeypatch):
    security = KafkaSecurity(
        protocol="SASL_SSL", sasl_mechanism="SCRAM-SHA-256", sasl_username="u",
        sasl_password="p",
    )
    credentials = faust_credentials(security)
    assert isinstance(credentials, faust.SASLCredentials)
    assert (credentials.username, credentials.password) == ("u", "p")
    assert credentials.mechanism.value == "SCRAM-SHA-256"
    assert credentials.protocol.value == "SASL_SSL"
    assert credentials.ssl_context.verify_mode == ssl.CERT_REQUIRED
    assert credentials.ssl_context.check_hostname
    plain_sasl = faust_credentials(
        KafkaSecurity(protocol="SASL_PLAINTEXT", sasl_mechanism="PLAIN", sasl_username="u",
                      sasl_password="p")
    )
    assert plain_sasl.protocol.value == "SASL_PLAINTEXT" and plain_sasl.ssl_context is None
    tls_only = faust_credentials(KafkaSecurity(protocol="SSL"))
    assert isinstance(tls_only, faust.SSLCredentials)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"KAFKA_SECURITY_PROTOCOL": "TLS"}, "KAFKA_SECURITY_PROTOCOL='TLS' is invalid"),
        ({"KAFKA_SECURITY_PROTOCOL": "SASL_SSL"}, "KAFKA_SASL_MECHANISM is not set"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SASL_PLAINTEXT", "KAFKA_SASL_MECHANISM": "GSSAPI",
             "KAFKA_SASL_USERNAME": "u", "KAFKA_SASL_PASSWORD": "p"},
            "KAFKA_SASL_MECHANISM='GSSAPI' is invalid",
        ),
        ({"KAFKA_SASL_USERNAME": "u"}, "KAFKA_SASL_USERNAME is set, but"),
        ({"KAFKA_SSL_CA_FILE": "/etc/hosts"}, "KAFKA_SSL_CA_FILE is set, but"),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CA_FILE": "/no/such/ca.crt"},
            "KAFKA_SSL_CA_FILE='/no/such/ca.crt' is invalid: must be a file",
        ),
        (
            {"KAFKA_SECURITY_PROTOCOL": "SSL", "KAFKA_SSL_CERT_FILE": "/etc/hosts"},
            "KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together",
        ),
        (
            {"KAFKA_SASL_PASSWORD": "p", "KAFKA_SASL_PASSWORD_FILE": "/etc/hosts"},
            "KAFKA_SASL_PASSWORD and KAFKA_SASL_PASSWORD_FILE are both set",
        ),
    ],
)
def test_bad_security_settings_are_named_at_start(monkeypatch, env, message):
    with pytest.raises(SettingsError) as raised:
        settings_with(monkeypatch, **env)
    assert message in str(raised.value)


def test_an_error_never_shows_the_password(monkeypatch):
    with pytest.raises(SettingsError) as raised:
        settings_with(monkeypatch, KAFKA_SECURITY_PROTOCOL="SASL_SSL",
                      KAFKA_SASL_PASSWORD="hunter2-secret")
    assert "hunter2-secret" not in str(raised.value)
