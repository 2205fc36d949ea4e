"""docker-compose.yml cannot run here (no Docker engine), so check what it says
against what the code reads: services, ports, health checks, environment."""
import re
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import yaml

from storemon.cli import build_parser

REPO = Path(__file__).resolve().parents[3]
STOREMON_SERVICES = ("worker", "reporter", "api")


@pytest.fixture(scope="module")
def compose():
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def environment_variables_read_by_the_code() -> set[str]:
    pattern = re.compile(
        r"""(?:os\.environ\.get|os\.environ\[|IntSetting|BoolSetting)\(?\s*["']([A-Z_]+)["']"""
    )
    names = set()
    for path in [*REPO.glob("storemon/**/*.py"), *REPO.glob("services/**/*.py")]:
        names.update(pattern.findall(path.read_text()))
    return names


def test_the_code_reads_the_documented_settings():
    read = environment_variables_read_by_the_code()
    for name in ("KAFKA_BOOTSTRAP_SERVERS", "DATABASE_URL", "STOREMON_API_PORT",
                 "STOREMON_TOPIC_PREFIX"):
        assert name in read


def test_every_service_has_an_image_and_the_servers_have_health_checks(compose):
    services = compose["services"]
    assert {"kafka", "postgres", "topics", *STOREMON_SERVICES} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:3.9")
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("kafka", "postgres", "api"):
        assert services[name]["healthcheck"]["test"], name
    for name, service in services.items():
        assert service.get("image"), f"service {name} names no image"


@pytest.mark.parametrize("name", STOREMON_SERVICES)
def test_storemon_services_wait_for_healthy_servers_and_get_every_setting(compose, name):
    service = compose["services"][name]
    assert service["depends_on"]["kafka"]["condition"] == "service_healthy"
    assert service["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert service["depends_on"]["topics"]["condition"] == "service_completed_successfully"
    # PGPASSFILE is libpq's own, which storemon respects (config.with_local_passfile).
    missing = environment_variables_read_by_the_code() - set(service["environment"]) - {
        "PGPASSFILE"
    }
    assert not missing, f"{name} lacks {sorted(missing)}"


def test_service_commands_are_real_storemon_subcommands(compose):
    parser = build_parser()
    for service in compose["services"].values():
        command = service.get("command")
        if command and command[0] == "storemon":
            parser.parse_args(command[1:])  # exits (SystemExit) on an unknown subcommand


def _port(published: str) -> str:
    """The container's port of a published `host_ip:host_port:container_port[/proto]`."""
    return published.split("/")[0].rsplit(":", 1)[-1]


def test_the_api_port_is_published_and_matches_its_setting(compose):
    api = compose["services"]["api"]
    port = api["environment"]["STOREMON_API_PORT"]
    assert f"127.0.0.1:{port}:{port}" in api["ports"]


#: The setting of the port each service answers /healthz on (what `storemon health` asks).
HEALTH_PORT_SETTINGS = {
    "api": "STOREMON_API_PORT",
    "reporter": "STOREMON_REPORTER_METRICS_PORT",
    "worker": "STOREMON_WORKER_METRICS_PORT",
}


@pytest.mark.parametrize("name", STOREMON_SERVICES)
def test_every_storemon_service_is_checked_by_storemon_health_on_its_own_port(compose, name):
    service = compose["services"][name]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1:] == ["storemon", "health"]
    build_parser().parse_args(test[2:])  # a real subcommand
    assert int(service["environment"][HEALTH_PORT_SETTINGS[name]]) > 0


def test_the_broker_the_database_and_the_workers_folder_are_named_volumes(compose):
    assert set(compose["volumes"]) == {"kafka-data", "postgres-data", "worker-state"}
    kafka = compose["services"]["kafka"]
    assert f"kafka-data:{kafka['environment']['KAFKA_LOG_DIRS']}" in kafka["volumes"]
    assert "postgres-data:/var/lib/postgresql/data" in compose["services"]["postgres"]["volumes"]
    state_dir = compose["services"]["worker"]["environment"]["STOREMON_STATE_DIR"]
    assert f"worker-state:{state_dir}" in compose["services"]["worker"]["volumes"]


def test_the_image_runs_as_an_unprivileged_user_with_a_health_check():
    lines = [
        line.strip() for line in (REPO / "Dockerfile").read_text().splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    users = [line.split()[1] for line in lines if line.startswith("USER ")]
    assert users and users[-1] not in ("root", "0")
    healthcheck = " ".join(lines[[line.startswith("HEALTHCHECK") for line in lines].index(True):])
    assert 'CMD ["storemon", "health"]' in healthcheck


def test_every_published_port_is_bound_to_loopback_only(compose):
    published = [
        (name, port)
        for name, service in compose["services"].items()
        for port in service.get("ports", [])
    ]
    assert {name for name, _ in published} >= {"kafka", "postgres", "api"}
    for name, port in published:
        assert isinstance(port, str) and port.startswith("127.0.0.1:"), (name, port)
        assert port.count(":") == 2, (name, port)


def test_the_services_use_a_database_role_that_is_not_the_superuser(compose):
    postgres = compose["services"]["postgres"]
    url = urlsplit(compose["services"]["api"]["environment"]["DATABASE_URL"])
    assert url.username == "storemon" != postgres["environment"]["POSTGRES_USER"]
    init = REPO / "deploy" / "docker" / "postgres-init.sh"
    assert f"./{init.relative_to(REPO)}:/docker-entrypoint-initdb.d/storemon.sh:ro" in (
        postgres["volumes"]
    )
    assert init.stat().st_mode & 0o111, "the image runs it only if executable"
    assert "NOSUPERUSER NOCREATEDB NOCREATEROLE" in init.read_text()


def test_services_reach_the_servers_by_their_compose_names(compose):
    env = compose["services"]["api"]["environment"]
    kafka_ports = {_port(p) for p in compose["services"]["kafka"]["ports"]}
    assert env["KAFKA_BOOTSTRAP_SERVERS"] == f"kafka:{kafka_ports.pop()}"
    assert "@postgres:5432/" in env["DATABASE_URL"]
    postgres_env = compose["services"]["postgres"]["environment"]
    assert env["DATABASE_URL"].endswith("/" + postgres_env["POSTGRES_DB"])
