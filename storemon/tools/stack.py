"""`storemon up`: the whole stack on this machine, stopped again with Ctrl-C / SIGTERM.

Servers come from deploy/local unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL
name running ones; the services are this package's own processes: `--workers N`
workers and `--reporters M` reporters (1 each by default) and the API. Each worker
and reporter serves its metrics on its own port: the first on
STOREMON_WORKER_METRICS_PORT / STOREMON_REPORTER_METRICS_PORT, each next one on the
next port no other service of the stack has (0: none serves metrics). Each worker
past the first keeps Faust's data in a folder of its own
(STOREMON_WORKER_DATA_DIR, the default folder with `-<n>` added).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from types import FrameType

from storemon.config import REPO_ROOT, Settings
from storemon.kafka.topics import ensure_topics, worker_data_dir

LOCAL_SERVERS = REPO_ROOT / "deploy" / "local"
STOREMON = [sys.executable, "-m", "storemon.cli"]
MAX_PORT = 65535


class StackError(RuntimeError):
    pass


def _server_script(name: str, command: str) -> int:
    script = LOCAL_SERVERS / f"{name}.sh"
    if not script.exists():
        raise StackError(f"{script} is missing: run storemon up from a checkout of the repository")
    return subprocess.run(["bash", str(script), command], check=False).returncode


def start_servers() -> list[str]:
    """Start the local servers the environment does not configure; return those started."""
    started = []
    for name, variable in (("kafka", "KAFKA_BOOTSTRAP_SERVERS"), ("postgres", "DATABASE_URL")):
        if os.environ.get(variable):
            print(f"{variable} is set: using that server", file=sys.stderr)
            continue
        was_running = _server_script(name, "status") == 0
        if _server_script(name, "start") != 0:
            raise StackError(f"could not start the local {name} server (deploy/local/{name}.sh)")
        if not was_running:
            started.append(name)
    return started


def stop_servers(started: list[str]) -> None:
    for name in reversed(started):
        _server_script(name, "stop")


@dataclass(frozen=True)
class ServiceSpec:
    """One process of the stack: its name (and log file's), command, own environment."""

    name: str
    command: str
    env: dict[str, str] = field(default_factory=dict)
    #: Where it serves /metrics (None: the API, on its own port; 0: nowhere).
    metrics_port: int | None = None


def metrics_ports(first: int, count: int, taken: set[int]) -> list[int]:
    """`count` ports from `first` up, skipping those in `taken` (to which they are added);
    all 0 when `first` is 0 (no metrics)."""
    if first == 0:
        return [0] * count
    ports: list[int] = []
    candidate = first
    while len(ports) < count:
        while candidate in taken:
            candidate += 1
        if candidate > MAX_PORT:
            raise StackError(f"no metrics port left above {first} for {count} processes")
        ports.append(candidate)
        taken.add(candidate)
        candidate += 1
    return ports


def _numbered(kind: str, number: int) -> str:
    """`worker`, `worker-2`, ...: the first keeps the plain name (and log file)."""
    return kind if number == 1 else f"{kind}-{number}"


def plan_services(settings: Settings, workers: int, reporters: int) -> list[ServiceSpec]:
    """The stack's processes: `workers` workers, `reporters` reporters, then the API."""
    if workers < 1 or reporters < 1:
        raise StackError("--workers and --reporters must be at least 1")
    worker_base, reporter_base = settings.worker_metrics_port, settings.reporter_metrics_port
    taken = {settings.api_port, reporter_base} - {worker_base}
    worker_ports = metrics_ports(worker_base, workers, taken)
    reporter_ports = metrics_ports(reporter_base, reporters, {settings.api_port, *worker_ports})
    specs = []
    for number, port in enumerate(worker_ports, 1):
        env = {"STOREMON_WORKER_METRICS_PORT": str(port)}
        if number > 1:
            env["STOREMON_WORKER_DATA_DIR"] = f"{worker_data_dir(settings)}-{number}"
        specs.append(ServiceSpec(_numbered("worker", number), "worker", env, port))
    for number, port in enumerate(reporter_ports, 1):
        env = {"STOREMON_REPORTER_METRICS_PORT": str(port)}
        specs.append(ServiceSpec(_numbered("reporter", number), "reporter", env, port))
    # The API sends live store queries to the workers: any of them says who owns what.
    host = "127.0.0.1" if settings.api_host in ("0.0.0.0", "::") else settings.api_host
    api_env = {
        "STOREMON_WORKER_URLS": ",".join(f"http://{host}:{port}" for port in worker_ports if port)
    } if any(worker_ports) else {}
    specs.append(ServiceSpec("api", "api", api_env))
    return specs


def describe(specs: list[ServiceSpec], host: str) -> str:
    """One line per worker and reporter: where it serves its metrics."""
    lines = []
    for spec in specs:
        if spec.metrics_port is None:
            continue
        where = (
            f"http://{host}:{spec.metrics_port}/metrics" if spec.metrics_port else "no metrics"
        )
        lines.append(f"  {spec.name + ':':<12} {where}")
    return "\n".join(lines)


def _api_answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=1) as answer:
            return bool(answer.status == 200)
    except (urllib.error.URLError, OSError):
        return False


def _load_sample(settings: Settings) -> None:
    sample = settings.state_dir / "sample"
    if not (sample / "store_status.csv").exists():
        subprocess.run([*STOREMON, "generate", "--sample", "--out", str(sample)], check=True)
    subprocess.run(
        [
            *STOREMON,
            "load",
            "--no-progress",
            "--status",
            str(sample / "store_status.csv"),
            "--hours",
            str(sample / "menu_hours.csv"),
            "--timezones",
            str(sample / "timezones.csv"),
        ],
        check=True,
    )


class _Stop(Exception):
    pass


def _raise_stop(signum: int, _frame: FrameType | None) -> None:
    raise _Stop(signal.Signals(signum).name)


def run_stack(settings: Settings, sample: bool, workers: int = 1, reporters: int = 1) -> int:
    """Bring everything up, wait for Ctrl-C / SIGTERM or a service dying, stop it all."""
    specs = plan_services(settings, workers, reporters)
    signal.signal(signal.SIGTERM, _raise_stop)
    signal.signal(signal.SIGINT, _raise_stop)
    log_dir = settings.state_dir / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    started: list[str] = []
    services: dict[str, subprocess.Popen[bytes]] = {}
    url = f"http://127.0.0.1:{settings.api_port}"
    try:
        started = start_servers()
        ensure_topics(settings)
        for spec in specs:
            log = (log_dir / f"{spec.name}.log").open("ab")
            services[spec.name] = subprocess.Popen(
                [*STOREMON, spec.command],
                stdout=log,
                stderr=subprocess.STDOUT,
                env={**os.environ, **spec.env},
            )
        deadline = time.monotonic() + 60
        while not _api_answers(url):
            dead = [name for name, process in services.items() if process.poll() is not None]
            if dead or time.monotonic() > deadline:
                raise StackError(
                    f"{', '.join(dead) or 'the api'} did not come up: see {log_dir}/*.log"
                )
            time.sleep(0.2)
        if sample:
            _load_sample(settings)
        print(
            f"storemon is up: {url}  (logs in {log_dir})\n"
            f"  trigger a report:  curl -X POST {url}/trigger_report\n"
            f"  fetch it:          curl -OJ '{url}/get_report?report_id=<report_id>'\n"
            f"  consumer lag:      storemon lag\n"
            f"{workers} worker(s) and {reporters} reporter(s), serving /metrics at:\n"
            f"{describe(specs, settings.api_host)}\n"
            "Ctrl-C stops everything started here.",
            flush=True,
        )
        while True:
            for name, process in services.items():
                if process.poll() is not None:
                    raise StackError(f"{name} exited with {process.returncode}: see {log_dir}")
            time.sleep(0.5)
    except _Stop as stop:
        print(f"{stop}: stopping", file=sys.stderr)
        return 0
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        for process in services.values():
            if process.poll() is None:
                process.terminate()
        for process in services.values():
            try:
                process.wait(60)
            except subprocess.TimeoutExpired:
                process.kill()
        stop_servers(started)
