"""`storemon up`: the whole stack on this machine, stopped again with Ctrl-C / SIGTERM.

Servers come from deploy/local unless KAFKA_BOOTSTRAP_SERVERS / DATABASE_URL
name running ones; the services are this package's own processes.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from types import FrameType

from storemon.config import REPO_ROOT, Settings
from storemon.kafka.topics import ensure_topics

LOCAL_SERVERS = REPO_ROOT / "deploy" / "local"
SERVICES = ("worker", "reporter", "api")
STOREMON = [sys.executable, "-m", "storemon.cli"]


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


def run_stack(settings: Settings, sample: bool) -> int:
    """Bring everything up, wait for Ctrl-C / SIGTERM or a service dying, stop it all."""
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
        for name in SERVICES:
            log = (log_dir / f"{name}.log").open("ab")
            services[name] = subprocess.Popen(
                [*STOREMON, name], stdout=log, stderr=subprocess.STDOUT
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
