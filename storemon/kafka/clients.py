"""The one builder of every Kafka client's configuration: producers, consumers, admin,
and the Faust worker's (aiokafka) credentials.

Whatever a client needs to reach the cluster (bootstrap servers, TLS, SASL) is set
here once, so every producer, consumer and admin client of every service connects
the same way; `verify_connection` turns a refused login or an untrusted certificate
into one clear error within seconds, where the clients themselves would retry
forever.
"""

from __future__ import annotations

import logging
import ssl
import time
from typing import TYPE_CHECKING

from confluent_kafka import Consumer, KafkaError, KafkaException, Producer
from confluent_kafka.admin import AdminClient

from storemon.config import KafkaSecurity, Settings

if TYPE_CHECKING:
    from faust.types.auth import CredentialsT

log = logging.getLogger(__name__)

#: How long a command waits for the cluster to answer before it gives up, unless a
#: refused login or certificate says at once that waiting is in vain.
CONNECT_TIMEOUT_S = 15.0

#: librdkafka's own log lines (connections lost, brokers down) go to this logger, so that
#: they come out as JSON lines like the rest (storemon/observability/logs.py), served by
#: the client's poll() and flush().
LIBRDKAFKA_LOGGER = logging.getLogger("storemon.kafka.librdkafka")


class KafkaUnreachable(Exception):
    """The cluster cannot be used with these settings: one line saying why."""


def connection_config(settings: Settings) -> dict[str, object]:
    """What every client needs to reach the cluster."""
    security = settings.kafka_security
    conf: dict[str, object] = {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "security.protocol": security.protocol.lower(),
        "logger": LIBRDKAFKA_LOGGER,
    }
    if security.uses_sasl:
        conf.update({
            "sasl.mechanism": security.sasl_mechanism,
            "sasl.username": security.sasl_username,
            "sasl.password": security.sasl_password,
        })
    if security.uses_tls:
        # The broker's certificate and host name are checked (librdkafka's default, set
        # here so no other setting can turn it off).
        conf["ssl.endpoint.identification.algorithm"] = "https"
        optional = {
            "ssl.ca.location": security.ssl_ca_file,
            "ssl.certificate.location": security.ssl_cert_file,
            "ssl.key.location": security.ssl_key_file,
            "ssl.key.password": security.ssl_key_password,
        }
        conf.update({key: value for key, value in optional.items() if value is not None})
    return conf


def faust_credentials(security: KafkaSecurity) -> CredentialsT | None:
    """The same security for the Faust worker's aiokafka clients (None: PLAINTEXT)."""
    import faust  # only the worker pays for importing Faust

    context = None
    if security.uses_tls:
        context = ssl.create_default_context(cafile=security.ssl_ca_file)
        if security.ssl_cert_file is not None:
            context.load_cert_chain(
                security.ssl_cert_file, security.ssl_key_file, security.ssl_key_password
            )
    if security.uses_sasl:
        return faust.SASLCredentials(
            username=security.sasl_username,
            password=security.sasl_password,
            ssl_context=context,
            mechanism=security.sasl_mechanism,
        )
    return None if context is None else faust.SSLCredentials(context)


#: Errors that no retry mends: the login or the TLS handshake was refused.
_REFUSALS = (KafkaError._AUTHENTICATION, KafkaError._SSL)


def verify_connection(settings: Settings, timeout_s: float = CONNECT_TIMEOUT_S) -> None:
    """Return once the cluster answers a metadata request with these settings; else
    KafkaUnreachable with the first refusal (login, certificate) or, after `timeout_s`,
    the last error seen."""
    errors: list[KafkaError] = []
    admin = AdminClient({
        **connection_config(settings),
        "error_cb": errors.append,
        # Its own log lines would repeat the refusal every retry: the error says it once.
        "log_level": 0,
    })
    deadline = time.monotonic() + timeout_s
    where = f"Kafka at {settings.kafka_bootstrap_servers} ({settings.kafka_security.protocol})"
    while True:
        try:
            admin.list_topics(timeout=1.0)
            return
        except KafkaException as exc:
            errors.append(exc.args[0])
        admin.poll(0)  # serves error_cb
        refused = [
            error for error in errors
            if error.code() in _REFUSALS or "SSL" in error.str()
        ]
        if refused:
            raise KafkaUnreachable(f"{where}: {_reason(refused[0])}")
        if time.monotonic() > deadline:
            raise KafkaUnreachable(
                f"{where} did not answer within {timeout_s:.0f} s: {_reason(errors[-1])}"
            )


def _reason(error: KafkaError) -> str:
    # librdkafka's text begins with the broker's address; the message names it already.
    text = error.str()
    return text.split("bootstrap: ", 1)[-1]


def admin_client(settings: Settings) -> AdminClient:
    return AdminClient(connection_config(settings))


def producer_config(settings: Settings, **overrides: str | int | bool) -> dict[str, object]:
    """Producer settings every storemon producer uses: durable, ordered, batched."""
    conf: dict[str, object] = {
        **connection_config(settings),
        # Same partitioner as the Java client and aiokafka (Faust), so keys land
        # where Faust expects them whoever produced them.
        "partitioner": "murmur2_random",
        "enable.idempotence": True,
        "acks": "all",
        "compression.type": "lz4",
        "linger.ms": 20,
        "batch.size": 1_000_000,
        "queue.buffering.max.messages": 500_000,
        "queue.buffering.max.kbytes": 512 * 1024,
    }
    conf.update(overrides)
    return conf


def make_producer(settings: Settings, **overrides: str | int | bool) -> Producer:
    return Producer(producer_config(settings, **overrides))


def consumer_config(settings: Settings, group_id: str, **overrides: object) -> dict[str, object]:
    """Consumer settings: the cluster, the group, then the caller's own settings."""
    conf: dict[str, object] = {**connection_config(settings), "group.id": group_id}
    conf.update(overrides)
    return conf


def make_consumer(settings: Settings, group_id: str, **overrides: object) -> Consumer:
    return Consumer(consumer_config(settings, group_id, **overrides))
