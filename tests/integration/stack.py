"""A whole storemon deployment as processes (worker, reporter, API), for end-to-end tests.

A `Stack` has fresh topics and a fresh reports schema, a generated data set and
the report `storemon report-csv` makes of it: what a report over HTTP must
equal once the worker holds all of it.
"""

from __future__ import annotations

import asyncio
import csv
import dataclasses
import subprocess
import urllib.request
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import asyncpg

from storemon.config import Settings
from storemon.tools import generator
from storemon.tools.generator import GeneratedDataset

from .conftest import drop_report_schema
from .services import (
    STOREMON,
    ServiceProcess,
    deployment_env,
    free_port,
    settings_for,
    wait_until,
    worker_lag,
)

#: How long a report may take here, from trigger to Complete.
REPORT_DEADLINE_S = 30


def run_storemon(command: list[str], env: dict[str, str]) -> bytes:
    """`storemon <command>` to its end; its standard output. Fails the test if it fails."""
    done = subprocess.run([*STOREMON, *command], env=env, capture_output=True, timeout=300)
    assert done.returncode == 0, done.stderr.decode()
    return done.stdout


def store_ids_in(path: Path) -> set[str]:
    """The store_ids a data file (CSV with a store_id column) names."""
    with path.open(newline="") as rows:
        return {row["store_id"] for row in csv.DictReader(rows)}


def data_arguments(data: GeneratedDataset) -> list[str]:
    """The --status, --hours and --timezones arguments of a data set's files."""
    return [
        *("--status", str(data.status_path)),
        *("--hours", str(data.hours_path)),
        *("--timezones", str(data.timezones_path)),
    ]


@dataclass
class Stack:
    settings: Settings
    env: dict[str, str]
    log_dir: Path
    api_url: str
    data: GeneratedDataset
    expected_csv: bytes
    processes: dict[str, ServiceProcess] = field(default_factory=dict)

    @classmethod
    def create(
        cls,
        kafka_bootstrap: str,
        database_url: str,
        workdir: Path,
        *,
        stores: int,
        seed: int,
        **env: str,
    ) -> Stack:
        """A deployment on fresh topics and schema, with its data set; nothing loaded or run."""
        prefix = f"t-{uuid.uuid4().hex[:8]}-"
        settings = dataclasses.replace(
            settings_for(kafka_bootstrap, prefix),
            database_url=database_url,
            db_schema=f"t_{uuid.uuid4().hex[:12]}",
        )
        port = free_port()
        service_environment = deployment_env(settings, STOREMON_API_PORT=str(port), **env)
        (workdir / "logs").mkdir(parents=True, exist_ok=True)
        data = generator.generate_dataset(workdir / "data", stores=stores, seed=seed)
        expected_csv = run_storemon(["report-csv", *data_arguments(data)], service_environment)
        return cls(
            settings,
            service_environment,
            workdir / "logs",
            f"http://127.0.0.1:{port}",
            data,
            expected_csv,
        )

    @classmethod
    @contextmanager
    def running(
        cls,
        kafka_bootstrap: str,
        database_url: str,
        workdir: Path,
        *,
        stores: int,
        seed: int,
        **env: str,
    ) -> Iterator[Stack]:
        """A deployment with its data loaded and worker, reporter and API running (the
        worker caught up); everything stopped and its schema dropped on exit."""
        stack = cls.create(kafka_bootstrap, database_url, workdir, stores=stores, seed=seed, **env)
        try:
            stack.storemon("load", "--no-progress", *data_arguments(stack.data))
            stack.start_services()
            yield stack
        finally:
            stack.close()

    def storemon(self, *command: str) -> bytes:
        return run_storemon(list(command), self.env)

    def start(self, name: str, command: str) -> ServiceProcess:
        self.processes[name] = ServiceProcess([command], self.env, self.log_dir, name)
        return self.processes[name]

    def start_services(self) -> None:
        """Worker, reporter and API; returns once the worker caught up and the API is ready."""
        for name in ("worker", "reporter", "api"):
            self.start(name, name)
        self.wait_for_worker()
        wait_until(lambda: api_ready(self.api_url), 60, "the API to be ready", self.logs)

    def wait_for_worker(self) -> None:
        """Until the worker group has consumed every input record."""

        def caught_up() -> bool:
            self.assert_running()
            return worker_lag(self.settings) == 0

        wait_until(caught_up, 120, "the worker to catch up", self.logs)

    def assert_running(self) -> None:
        """Fails, with its log, if one of the services ended."""
        for name, service in self.processes.items():
            code = service.process.poll()
            assert code is None, f"{name} ended (exit status {code}):\n{service.log_tail()}"

    def logs(self) -> str:
        return "\n".join(f"--- {name}\n{p.log_tail(15)}" for name, p in self.processes.items())

    def close(self) -> None:
        """Stop every process; drop the reports schema with its CSVs."""
        for process in self.processes.values():
            process.stop()
        asyncio.run(_drop_schema(self.settings))


async def _drop_schema(settings: Settings) -> None:
    connection = await asyncpg.connect(settings.database_url)
    try:
        await drop_report_schema(connection, settings.db_schema)
    finally:
        await connection.close()


def api_ready(api_url: str) -> bool:
    try:
        with urllib.request.urlopen(f"{api_url}/readyz", timeout=5) as response:
            return response.status == 200
    except OSError:
        return False


async def eventually(probe: Callable[[], Awaitable[Any]], timeout: float, what: str, stack: Stack):
    """Poll `probe` until it returns something truthy, for at most `timeout` seconds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while True:
        result = await probe()
        if result:
            return result
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{stack.logs()}")
        await asyncio.sleep(0.1)


async def trigger(http: aiohttp.ClientSession, **body: Any) -> str:
    async with http.post("/trigger_report", json=body or None) as response:
        assert response.status == 202, await response.text()
        return (await response.json())["report_id"]


async def report_json(http: aiohttp.ClientSession, report_id: str) -> dict:
    async with http.get(
        "/get_report", params={"report_id": report_id}, headers={"Accept": "application/json"}
    ) as response:
        assert response.status == 200, await response.text()
        return await response.json()


async def completed(http: aiohttp.ClientSession, report_id: str, stack: Stack) -> dict:
    """The report's summary once Complete; fails if it fails or takes too long."""

    async def complete() -> dict | None:
        report = await report_json(http, report_id)
        assert report["status"] != "Failed", report
        return report if report["status"] == "Complete" else None

    return await eventually(complete, REPORT_DEADLINE_S, f"report {report_id}", stack)


async def report_csv(http: aiohttp.ClientSession, report_id: str) -> bytes:
    async with http.get(f"/reports/{report_id}.csv") as response:
        assert response.status == 200, await response.text()
        return await response.read()
