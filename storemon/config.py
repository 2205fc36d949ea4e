"""Configuration from the environment: one place every service reads it."""

from __future__ import annotations

import hashlib
import os
import re
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar
from urllib.parse import parse_qs, quote, urlsplit

#: The checkout, when storemon runs from one (an editable install).
REPO_ROOT = Path(__file__).resolve().parent.parent


def _default_state_dir() -> Path:
    """Where `deploy/local` keeps servers' data, logs and downloads, and the worker its
    Faust data: the checkout's `.state` (gitignored); installed from a wheel, `.state` in
    the working folder, since site-packages is no place for data."""
    if (REPO_ROOT / "pyproject.toml").is_file():
        return REPO_ROOT / ".state"
    return Path(".state")


DEFAULT_STATE_DIR = _default_state_dir()

# Local servers listen on non-standard loopback ports so they never collide
# with a broker or cluster a developer already runs on the standard ones.
DEFAULT_KAFKA_BOOTSTRAP = "127.0.0.1:19092"
DEFAULT_DATABASE_URL = "postgresql://storemon@127.0.0.1:55432/storemon"
#: Where deploy/local/postgres.sh keeps the application role's password, as a pgpass
#: line (host:port:database:role:password), under the state folder.
LOCAL_PASSFILE = Path("postgres") / "pgpass"
_LOOPBACK_HOSTS = frozenset({"127.0.0.1", "localhost", "::1"})
DEFAULT_API_PORT = 8080
DEFAULT_API_HOST = "127.0.0.1"
DEFAULT_WORKER_METRICS_PORT = 9101
DEFAULT_REPORTER_METRICS_PORT = 9102
DEFAULT_DB_SCHEMA = "public"
DEFAULT_MAX_BODY_BYTES = 16 * 1024 * 1024
DEFAULT_REPORT_TIMEOUT_S = 300
DEFAULT_REPORT_RETENTION_DAYS = 30



#: Log levels of the services (STOREMON_LOG_LEVEL, --loglevel), any case.
LOG_LEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOG_LEVEL = "info"
#: Below this, not even one record of a few fields fits in a request body.
MIN_MAX_BODY_BYTES = 1024
#: Kafka topic names are at most 249 characters of [a-zA-Z0-9._-]; the prefix leaves room
#: for the longest name storemon derives from it (a Faust changelog topic).
MAX_TOPIC_PREFIX_CHARS = 200
_TOPIC_PREFIX_RE = re.compile(r"[a-zA-Z0-9._-]*")
#: PostgreSQL truncates identifiers beyond this many bytes.
MAX_DB_SCHEMA_BYTES = 63
DATABASE_URL_SCHEMES = ("postgres://", "postgresql://")


class SettingsError(ValueError):
    """A setting of the environment is invalid: one line naming the variable, the value
    and what is allowed."""


def _invalid(variable: str, value: object, allowed: str) -> str:
    return f"{variable}={value!r} is invalid: {allowed}"


@dataclass(frozen=True)
class IntSetting:
    """An integer setting: its variable, default and allowed range (`high` None: no limit)."""

    variable: str
    default: int
    low: int
    high: int | None = None

    @property
    def allowed(self) -> str:
        if self.high is None:
            return f"must be an integer of at least {self.low}"
        return f"must be an integer from {self.low} to {self.high}"

    def read(self) -> int:
        raw = os.environ.get(self.variable)
        if raw is None or raw == "":
            return self.default
        try:
            return int(raw)
        except ValueError:
            raise SettingsError(_invalid(self.variable, raw, self.allowed)) from None

    def problem(self, value: int) -> str | None:
        """Why `value` is out of range, or None."""
        if value < self.low or (self.high is not None and value > self.high):
            return _invalid(self.variable, str(value), self.allowed)
        return None


@dataclass(frozen=True)
class BoolSetting:
    """A yes/no setting: its variable and default; unset or empty means the default."""

    variable: str
    default: bool

    TRUE_WORDS: ClassVar[frozenset[str]] = frozenset({"true", "1", "yes", "on"})
    FALSE_WORDS: ClassVar[frozenset[str]] = frozenset({"false", "0", "no", "off"})
    allowed: ClassVar[str] = "must be true or false (or 1/0, yes/no, on/off)"

    def read(self) -> bool:
        raw = os.environ.get(self.variable)
        if raw is None or raw.strip() == "":
            return self.default
        word = raw.strip().lower()
        if word in self.TRUE_WORDS:
            return True
        if word in self.FALSE_WORDS:
            return False
        raise SettingsError(_invalid(self.variable, raw, self.allowed))


API_PORT = IntSetting("STOREMON_API_PORT", DEFAULT_API_PORT, 1, 65535)
TOPIC_PARTITIONS = IntSetting("STOREMON_TOPIC_PARTITIONS", 4, 1)
TOPIC_REPLICATION = IntSetting("STOREMON_TOPIC_REPLICATION", 1, 1)
MAX_BODY_BYTES = IntSetting("STOREMON_MAX_BODY_BYTES", DEFAULT_MAX_BODY_BYTES, MIN_MAX_BODY_BYTES)
REPORT_TIMEOUT_S = IntSetting("STOREMON_REPORT_TIMEOUT_S", DEFAULT_REPORT_TIMEOUT_S, 1)
REPORT_RETENTION_DAYS = IntSetting(
    "STOREMON_REPORT_RETENTION_DAYS", DEFAULT_REPORT_RETENTION_DAYS, 1
)
#: 0: the worker serves no /metrics.
WORKER_METRICS_PORT = IntSetting(
    "STOREMON_WORKER_METRICS_PORT", DEFAULT_WORKER_METRICS_PORT, 0, 65535
)
#: 0: the reporter serves no /metrics.
REPORTER_METRICS_PORT = IntSetting(
    "STOREMON_REPORTER_METRICS_PORT", DEFAULT_REPORTER_METRICS_PORT, 0, 65535
)

#: How long after a report ends its webhook is tried again at most.
WEBHOOK_RETRY_S = IntSetting("STOREMON_WEBHOOK_RETRY_S", 600, 1)

#: false: the topics belong to operations; services check them and create none.
CREATE_TOPICS = BoolSetting("STOREMON_CREATE_TOPICS", True)


# API tokens (services/api/auth.py). `admin` includes `read` and `ingest`; those two are
# independent of each other.
SCOPE_INGEST = "ingest"
SCOPE_READ = "read"
SCOPE_ADMIN = "admin"
SCOPES = (SCOPE_INGEST, SCOPE_READ, SCOPE_ADMIN)
#: What STOREMON_INGEST_TOKEN's token is called in logs.
INGEST_TOKEN_NAME = "STOREMON_INGEST_TOKEN"
_TOKEN_NAME_RE = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_TOKEN_FORM = f"must be name:scope[+scope...]:secret, scopes among {', '.join(SCOPES)}"


@dataclass(frozen=True)
class ApiToken:
    """A bearer token of the API: its name (for logs), its scopes and its secret's SHA-256.

    Only the digest is kept, and requests are compared with it: digests have one length,
    so the comparison takes the same time whatever the length of the token tried."""

    name: str
    scopes: frozenset[str]
    secret_sha256: bytes = field(repr=False)

    @classmethod
    def from_secret(cls, name: str, scopes: Iterable[str], secret: str) -> ApiToken:
        return cls(name, frozenset(scopes), hashlib.sha256(secret.encode()).digest())

    def allows(self, scope: str) -> bool:
        return scope in self.scopes or SCOPE_ADMIN in self.scopes


def _token(entry: str, where: str) -> ApiToken:
    """One `name:scope[+scope...]:secret`; errors never show the entry, which holds a secret."""
    name, _, rest = entry.strip().partition(":")
    scope_list, _, secret = rest.partition(":")
    scopes = scope_list.split("+")
    if not (_TOKEN_NAME_RE.fullmatch(name) and secret and set(scopes) <= set(SCOPES)):
        raise SettingsError(f"{where} is invalid: {_TOKEN_FORM} (not shown: it holds a secret)")
    return ApiToken.from_secret(name, scopes, secret)


def _read_secret_file(variable: str) -> str | None:
    path = os.environ.get(variable)
    if not path:
        return None
    try:
        return Path(path).read_text()
    except OSError as exc:
        raise SettingsError(_invalid(variable, path, f"cannot be read: {exc.strerror}")) from None


def _api_tokens() -> tuple[ApiToken, ...]:
    """STOREMON_TOKENS (entries separated by commas) and STOREMON_TOKENS_FILE (one per line;
    blank lines and lines beginning with # skipped)."""
    tokens = [
        _token(entry, f"STOREMON_TOKENS entry {number}")
        for number, entry in enumerate(os.environ.get("STOREMON_TOKENS", "").split(","), 1)
        if entry.strip()
    ]
    text = _read_secret_file("STOREMON_TOKENS_FILE") or ""
    tokens += [
        _token(line, f"STOREMON_TOKENS_FILE line {number}")
        for number, line in enumerate(text.splitlines(), 1)
        if line.strip() and not line.lstrip().startswith("#")
    ]
    return tuple(tokens)


def _secret(variable: str) -> str | None:
    """`variable`, or the content of `variable`_FILE (stripped); not both."""
    given = os.environ.get(variable) or None
    from_file = _read_secret_file(f"{variable}_FILE")
    if given is not None and from_file is not None:
        raise SettingsError(f"{variable} and {variable}_FILE are both set: set one")
    if from_file is not None:
        return from_file.strip() or None
    return given


def _is_base_url(url: str) -> bool:
    parts = urlsplit(url)
    return parts.scheme in ("http", "https") and bool(parts.netloc) and not (
        parts.query or parts.fragment
    )


def state_dir_from_env() -> Path:
    return Path(os.environ.get("STOREMON_STATE_DIR", str(DEFAULT_STATE_DIR)))


def with_local_passfile(url: str, state_dir: Path) -> str:
    """`url`, told to take its password from deploy/local's pgpass file (`passfile=`),
    when it names a loopback server and gives no password, no passfile and no PGPASSFILE.

    A pgpass line names its host, port, database and role, so the file gives a password
    to deploy/local's cluster only; for any other server nothing changes. A missing file
    (the cluster not set up yet) is ignored by asyncpg and libpq alike."""
    parts = urlsplit(url)
    if (
        parts.password is not None
        or parts.hostname not in _LOOPBACK_HOSTS
        or "passfile" in parse_qs(parts.query)
        or os.environ.get("PGPASSFILE")
    ):
        return url
    passfile = quote(str(state_dir / LOCAL_PASSFILE), safe="/")
    return f"{url}{'&' if parts.query else '?'}passfile={passfile}"


KAFKA_SECURITY_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
KAFKA_SASL_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


@dataclass(frozen=True)
class KafkaSecurity:
    """How every Kafka client of storemon authenticates and encrypts (KAFKA_* settings).

    TLS (SSL, SASL_SSL): the broker's certificate is checked against `ssl_ca_file` (else
    the system's CAs) and its host name; a client certificate is optional. SASL
    (SASL_PLAINTEXT, SASL_SSL): a user and password with one of KAFKA_SASL_MECHANISMS.
    Secrets never appear in a repr or a log line.
    """

    protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    sasl_username: str | None = None
    sasl_password: str | None = field(default=None, repr=False)
    ssl_ca_file: str | None = None
    ssl_cert_file: str | None = None
    ssl_key_file: str | None = None
    ssl_key_password: str | None = field(default=None, repr=False)

    @property
    def uses_tls(self) -> bool:
        return self.protocol in ("SSL", "SASL_SSL")

    @property
    def uses_sasl(self) -> bool:
        return self.protocol.startswith("SASL_")

    @classmethod
    def from_env(cls) -> KafkaSecurity:
        return cls(
            protocol=(os.environ.get("KAFKA_SECURITY_PROTOCOL") or "PLAINTEXT").upper(),
            sasl_mechanism=(os.environ.get("KAFKA_SASL_MECHANISM") or "").upper() or None,
            sasl_username=os.environ.get("KAFKA_SASL_USERNAME") or None,
            sasl_password=_secret("KAFKA_SASL_PASSWORD"),
            ssl_ca_file=os.environ.get("KAFKA_SSL_CA_FILE") or None,
            ssl_cert_file=os.environ.get("KAFKA_SSL_CERT_FILE") or None,
            ssl_key_file=os.environ.get("KAFKA_SSL_KEY_FILE") or None,
            ssl_key_password=_secret("KAFKA_SSL_KEY_PASSWORD"),
        )

    def problems(self) -> list[str]:
        found = []
        if self.protocol not in KAFKA_SECURITY_PROTOCOLS:
            found.append(_invalid("KAFKA_SECURITY_PROTOCOL", self.protocol,
                                  f"must be one of {', '.join(KAFKA_SECURITY_PROTOCOLS)}"))
            return found
        sasl = {
            "KAFKA_SASL_MECHANISM": self.sasl_mechanism,
            "KAFKA_SASL_USERNAME": self.sasl_username,
            "KAFKA_SASL_PASSWORD(_FILE)": self.sasl_password,
        }
        tls = {
            "KAFKA_SSL_CA_FILE": self.ssl_ca_file,
            "KAFKA_SSL_CERT_FILE": self.ssl_cert_file,
            "KAFKA_SSL_KEY_FILE": self.ssl_key_file,
            "KAFKA_SSL_KEY_PASSWORD(_FILE)": self.ssl_key_password,
        }
        if self.uses_sasl:
            found += [
                f"{name} is not set: KAFKA_SECURITY_PROTOCOL={self.protocol} needs it"
                for name, value in sasl.items() if value is None
            ]
            if self.sasl_mechanism is not None and self.sasl_mechanism not in KAFKA_SASL_MECHANISMS:
                found.append(_invalid("KAFKA_SASL_MECHANISM", self.sasl_mechanism,
                                      f"must be one of {', '.join(KAFKA_SASL_MECHANISMS)}"))
        else:
            found += [
                f"{name} is set, but KAFKA_SECURITY_PROTOCOL={self.protocol} uses no SASL"
                for name, value in sasl.items() if value is not None
            ]
        if self.uses_tls:
            if (self.ssl_cert_file is None) != (self.ssl_key_file is None):
                found.append("KAFKA_SSL_CERT_FILE and KAFKA_SSL_KEY_FILE go together: set both "
                             "(a client certificate) or neither")
            for name in ("KAFKA_SSL_CA_FILE", "KAFKA_SSL_CERT_FILE", "KAFKA_SSL_KEY_FILE"):
                path = tls[name]
                if path is not None and not os.access(path, os.R_OK):
                    found.append(_invalid(name, path, "must be a file this process can read"))
        else:
            found += [
                f"{name} is set, but KAFKA_SECURITY_PROTOCOL={self.protocol} uses no TLS"
                for name, value in tls.items() if value is not None
            ]
        return found


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
    #: Log level of the services (one of LOG_LEVELS, lower case).
    log_level: str = DEFAULT_LOG_LEVEL
    #: Tokens of STOREMON_TOKENS(_FILE); ingest_token is one more (see tokens()).
    api_tokens: tuple[ApiToken, ...] = ()
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
    #: Where a reporter serves /metrics (on api_host); 0: it serves none.
    reporter_metrics_port: int = DEFAULT_REPORTER_METRICS_PORT
    #: Public base URL of the API (e.g. https://storemon.example.com) for the links it
    #: answers with; None: relative links, never one built from a client's Host header.
    public_url: str | None = None
    #: Whether services and `storemon load` create the topics they miss (STOREMON_CREATE_TOPICS);
    #: false: they only check that the topics exist as storemon needs them.
    create_topics: bool = True
    #: The worker's Faust data folder (STOREMON_WORKER_DATA_DIR); None: the default under
    #: state_dir (storemon.kafka.topics.worker_data_dir). Two workers on one host need one each.
    worker_data_dir: Path | None = None
    #: The URL other processes reach this worker's web server at (STOREMON_WORKER_URL),
    #: which the group tells every member; None: http://api_host:worker_metrics_port.
    worker_url: str | None = None
    #: Workers the API asks which worker owns which partition (STOREMON_WORKER_URLS,
    #: comma-separated; any one answering will do, e.g. a Kubernetes Service).
    worker_urls: tuple[str, ...] = (f"http://127.0.0.1:{DEFAULT_WORKER_METRICS_PORT}",)
    #: Where command-line clients (`storemon store`) reach the API (STOREMON_API_URL);
    #: None: public_url, else http://127.0.0.1:api_port.
    api_url: str | None = None
    #: The bearer token command-line clients send (STOREMON_API_TOKEN(_FILE)).
    api_token: str | None = field(default=None, repr=False)
    #: TLS and SASL of every Kafka client (KAFKA_SECURITY_PROTOCOL and the others).
    kafka_security: KafkaSecurity = field(default_factory=KafkaSecurity)
    #: The key webhooks are signed with (STOREMON_WEBHOOK_SECRET(_FILE)); None: the API
    #: accepts no callback_url.
    webhook_secret: str | None = field(default=None, repr=False)
    #: Hosts a callback_url may name (STOREMON_WEBHOOK_ALLOWED_HOSTS, comma-separated;
    #: `*.example.com` for its subdomains).
    webhook_allowed_hosts: tuple[str, ...] = ()
    #: A webhook not delivered this long after its report ended is given up.
    webhook_retry_s: int = 600

    @classmethod
    def from_env(cls) -> Settings:
        """The settings of the environment, validated (SettingsError names a bad one)."""
        settings = cls(
            kafka_bootstrap_servers=os.environ.get(
                "KAFKA_BOOTSTRAP_SERVERS", DEFAULT_KAFKA_BOOTSTRAP
            ),
            database_url=with_local_passfile(
                os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL), state_dir_from_env()
            ),
            api_port=API_PORT.read(),
            topic_prefix=os.environ.get("STOREMON_TOPIC_PREFIX", ""),
            topic_partitions=TOPIC_PARTITIONS.read(),
            topic_replication_factor=TOPIC_REPLICATION.read(),
            state_dir=state_dir_from_env(),
            ingest_token=_secret("STOREMON_INGEST_TOKEN"),
            log_level=(os.environ.get("STOREMON_LOG_LEVEL") or DEFAULT_LOG_LEVEL).lower(),
            api_tokens=_api_tokens(),
            api_host=os.environ.get("STOREMON_API_HOST", DEFAULT_API_HOST),
            db_schema=os.environ.get("STOREMON_DB_SCHEMA", DEFAULT_DB_SCHEMA),
            max_body_bytes=MAX_BODY_BYTES.read(),
            report_timeout_s=REPORT_TIMEOUT_S.read(),
            report_retention_days=REPORT_RETENTION_DAYS.read(),
            worker_metrics_port=WORKER_METRICS_PORT.read(),
            reporter_metrics_port=REPORTER_METRICS_PORT.read(),
            public_url=os.environ.get("STOREMON_PUBLIC_URL") or None,
            create_topics=CREATE_TOPICS.read(),
            worker_data_dir=(
                Path(os.environ["STOREMON_WORKER_DATA_DIR"])
                if os.environ.get("STOREMON_WORKER_DATA_DIR")
                else None
            ),
            worker_url=os.environ.get("STOREMON_WORKER_URL") or None,
            worker_urls=tuple(
                url.strip()
                for url in os.environ.get(
                    "STOREMON_WORKER_URLS", f"http://127.0.0.1:{DEFAULT_WORKER_METRICS_PORT}"
                ).split(",")
                if url.strip()
            ),
            api_url=os.environ.get("STOREMON_API_URL") or None,
            api_token=_secret("STOREMON_API_TOKEN"),
            kafka_security=KafkaSecurity.from_env(),
            webhook_secret=_secret("STOREMON_WEBHOOK_SECRET"),
            webhook_allowed_hosts=tuple(
                host.strip().lower()
                for host in os.environ.get("STOREMON_WEBHOOK_ALLOWED_HOSTS", "").split(",")
                if host.strip()
            ),
            webhook_retry_s=WEBHOOK_RETRY_S.read(),
        )
        settings.validate()
        return settings

    def problems(self) -> list[str]:
        """Every setting out of its allowed range, one message each (empty when valid)."""
        found = [
            problem
            for value, setting in (
                (self.api_port, API_PORT),
                (self.topic_partitions, TOPIC_PARTITIONS),
                (self.topic_replication_factor, TOPIC_REPLICATION),
                (self.max_body_bytes, MAX_BODY_BYTES),
                (self.report_timeout_s, REPORT_TIMEOUT_S),
                (self.report_retention_days, REPORT_RETENTION_DAYS),
                (self.worker_metrics_port, WORKER_METRICS_PORT),
                (self.reporter_metrics_port, REPORTER_METRICS_PORT),
                (self.webhook_retry_s, WEBHOOK_RETRY_S),
            )
            if (problem := setting.problem(value)) is not None
        ]
        servers = self.kafka_bootstrap_servers.split(",")
        if not all(server.strip() for server in servers):
            found.append(
                _invalid(
                    "KAFKA_BOOTSTRAP_SERVERS",
                    self.kafka_bootstrap_servers,
                    "must be host:port[,host:port...]",
                )
            )
        if not self.database_url.startswith(DATABASE_URL_SCHEMES):
            # Only its scheme: the rest may hold a password.
            scheme = self.database_url.partition("://")[0]
            found.append(
                _invalid(
                    "DATABASE_URL",
                    f"{scheme}://...",
                    "must begin with postgresql:// or postgres://",
                )
            )
        if (
            _TOPIC_PREFIX_RE.fullmatch(self.topic_prefix) is None
            or len(self.topic_prefix) > MAX_TOPIC_PREFIX_CHARS
        ):
            found.append(
                _invalid(
                    "STOREMON_TOPIC_PREFIX",
                    self.topic_prefix,
                    f"must be at most {MAX_TOPIC_PREFIX_CHARS} of the characters Kafka allows "
                    "in topic names: letters, digits, '.', '_' and '-'",
                )
            )
        if self.log_level not in LOG_LEVELS:
            found.append(
                _invalid(
                    "STOREMON_LOG_LEVEL", self.log_level, f"must be one of {', '.join(LOG_LEVELS)}"
                )
            )
        if not self.api_host.strip():
            found.append(_invalid("STOREMON_API_HOST", self.api_host, "must name an address"))
        if not self.db_schema or len(self.db_schema.encode()) > MAX_DB_SCHEMA_BYTES:
            found.append(
                _invalid(
                    "STOREMON_DB_SCHEMA",
                    self.db_schema,
                    f"must be a PostgreSQL schema name of 1 to {MAX_DB_SCHEMA_BYTES} bytes",
                )
            )
        if self.public_url is not None and not _is_base_url(self.public_url):
            found.append(
                _invalid(
                    "STOREMON_PUBLIC_URL",
                    self.public_url,
                    "must be an http:// or https:// URL without query or fragment",
                )
            )
        if self.worker_url is not None and not _is_base_url(self.worker_url):
            found.append(
                _invalid(
                    "STOREMON_WORKER_URL",
                    self.worker_url,
                    "must be an http:// or https:// URL without query or fragment",
                )
            )
        if self.api_url is not None and not _is_base_url(self.api_url):
            found.append(
                _invalid(
                    "STOREMON_API_URL",
                    self.api_url,
                    "must be an http:// or https:// URL without query or fragment",
                )
            )
        bad_worker_urls = [url for url in self.worker_urls if not _is_base_url(url)]
        if bad_worker_urls or not self.worker_urls:
            found.append(
                _invalid(
                    "STOREMON_WORKER_URLS",
                    ",".join(self.worker_urls),
                    "must be one or more http:// or https:// URLs, separated by commas",
                )
            )
        found += self.kafka_security.problems()
        found += self._token_problems()
        return found

    def client_api_url(self) -> str:
        """Where command-line clients reach the API."""
        return (self.api_url or self.public_url or f"http://127.0.0.1:{self.api_port}").rstrip("/")

    def advertised_worker_url(self) -> str:
        """Where other processes reach this worker's web server."""
        if self.worker_url is not None:
            return self.worker_url.rstrip("/")
        # A wildcard address is no address to reach: the host's name is.
        host = socket.gethostname() if self.api_host in ("0.0.0.0", "::") else self.api_host
        return f"http://{host}:{self.worker_metrics_port}"

    def tokens(self) -> tuple[ApiToken, ...]:
        """Every token of the API; none: the API is open."""
        if self.ingest_token is None:
            return self.api_tokens
        legacy = ApiToken.from_secret(INGEST_TOKEN_NAME, [SCOPE_INGEST], self.ingest_token)
        return (*self.api_tokens, legacy)

    def _token_problems(self) -> list[str]:
        tokens = self.tokens()
        names = [token.name for token in tokens]
        found = [
            f"API token name {name!r} is given twice (STOREMON_TOKENS, STOREMON_TOKENS_FILE)"
            for name in sorted({name for name in names if names.count(name) > 1})
        ]
        if len({token.secret_sha256 for token in tokens}) < len(tokens):
            found.append("two API tokens have the same secret: give each its own")
        return found

    def validate(self) -> None:
        """SettingsError, one line naming every invalid setting, unless all are valid."""
        found = self.problems()
        if found:
            raise SettingsError("; ".join(found))

    def topic(self, name: str) -> str:
        """The deployment's name for a logical topic or consumer group."""
        return f"{self.topic_prefix}{name}"
