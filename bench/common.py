"""What the service benchmarks share: a deployment of their own, its processes, an HTTP
client of the API, and latency figures."""

from __future__ import annotations

import asyncio
import dataclasses
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from storemon.config import REPO_ROOT, Settings
from storemon.database import reports_db
from storemon.kafka.lag import consumer_lag
from storemon.kafka.topics import worker_app_id
from storemon.tools.stack import ServiceSpec

STOREMON = [sys.executable, "-m", "storemon.cli"]
OUT = REPO_ROOT / "bench" / "out"


def say(text: str) -> None:
    print(text, flush=True)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as probe:
        probe.bind((host, 0))
        return int(probe.getsockname()[1])


@dataclasses.dataclass(frozen=True)
class Deployment:
    """Topics under `settings.topic_prefix`, a reports schema of its own, an API port."""

    settings: Settings
    env: dict[str, str]
    api_url: str

    @classmethod
    def create(cls, prefix: str, host: str = "127.0.0.1") -> Deployment:
        port = free_port(host)
        settings = dataclasses.replace(
            Settings.from_env(),
            topic_prefix=prefix,
            db_schema=f"bench_{uuid.uuid4().hex[:8]}",
            api_host=host,
            api_port=port,
            # Several processes on one host: no /metrics port to collide on.
            worker_metrics_port=0,
            reporter_metrics_port=0,
        )
        env = {
            **os.environ,
            "STOREMON_TOPIC_PREFIX": prefix,
            "STOREMON_DB_SCHEMA": settings.db_schema,
            "STOREMON_API_HOST": host,
            "STOREMON_API_PORT": str(port),
            "STOREMON_LOG_LEVEL": "info",
            "STOREMON_WORKER_METRICS_PORT": "0",
            "STOREMON_REPORTER_METRICS_PORT": "0",
        }
        return cls(settings, env, f"http://{host}:{port}")


@contextmanager
def services(
    deployment: Deployment, specs: list[ServiceSpec], logs: Path
) -> Iterator[dict[str, subprocess.Popen[bytes]]]:
    """The processes of `specs` (as `storemon up` plans them), logging to
    `logs/<name>.log`, stopped on exit; the deployment's reports schema is dropped with its
    CSVs afterwards."""
    logs.mkdir(parents=True, exist_ok=True)
    processes: dict[str, subprocess.Popen[bytes]] = {}
    try:
        for spec in specs:
            with (logs / f"{spec.name}.log").open("wb") as log:
                processes[spec.name] = subprocess.Popen(
                    [*STOREMON, spec.command],
                    env={**deployment.env, **spec.env},
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
        yield processes
    finally:
        for process in processes.values():
            process.terminate()
        for process in processes.values():
            process.wait(60)
        asyncio.run(drop_schema(deployment.settings))


def worker_progress(settings: Settings) -> tuple[int, int]:
    """(records on the input topics, records the worker still has to consume)."""
    rows = [row for row in consumer_lag(settings) if row.group == worker_app_id(settings)]
    return sum(row.end for row in rows), sum(row.lag for row in rows)


class Client:
    def __init__(self, session: aiohttp.ClientSession) -> None:
        self.session = session

    async def trigger(self) -> str:
        async with self.session.post("/trigger_report") as response:
            assert response.status == 202, await response.text()
            return str((await response.json())["report_id"])

    async def summary(self, report_id: str) -> dict:
        async with self.session.get(
            "/get_report", params={"report_id": report_id}, headers={"Accept": "application/json"}
        ) as response:
            assert response.status == 200, await response.text()
            return dict(await response.json())

    async def until_complete(
        self, report_id: str, timeout: float = 120, every: float = 0.01
    ) -> dict:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            summary = await self.summary(report_id)
            if summary["status"] == "Complete":
                return summary
            assert summary["status"] == "Running", summary
            await asyncio.sleep(every)
        raise TimeoutError(f"report {report_id} not Complete within {timeout} s")

    async def download(self, report_id: str) -> tuple[bytes, float]:
        started = time.perf_counter()
        async with self.session.get(f"/reports/{report_id}.csv") as response:
            assert response.status == 200, await response.text()
            body = await response.read()
        return body, time.perf_counter() - started

    async def download_size(self, report_id: str) -> tuple[int, float]:
        """Stream a download, keeping no copy; (bytes, seconds)."""
        size = 0
        started = time.perf_counter()
        async with self.session.get(f"/reports/{report_id}.csv") as response:
            assert response.status == 200, await response.text()
            async for chunk in response.content.iter_chunked(2**20):
                size += len(chunk)
        return size, time.perf_counter() - started


async def wait_ready(client: Client, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            async with client.session.get("/readyz") as response:
                if response.status == 200:
                    return
        except aiohttp.ClientConnectionError:
            pass
        await asyncio.sleep(0.2)
    raise TimeoutError("the API did not become ready")


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


async def open_loop(
    request: Callable[[int], Awaitable[bool]], rate: float, seconds: float
) -> tuple[list[float], float, int]:
    """`request(number)` at `rate`/s for `seconds`, each started on schedule whether or not
    the ones before have answered (open loop), its latency measured from its scheduled
    time, so a stall counts for every request it delays. Returns the latencies, the rate
    achieved and how many requests failed (`request` returned False)."""
    loop = asyncio.get_running_loop()
    latencies: list[float] = []
    failures = 0

    async def one(number: int, scheduled: float) -> None:
        nonlocal failures
        failures += not await request(number)
        latencies.append(loop.time() - scheduled)

    count = int(rate * seconds)
    start = loop.time() + 0.1
    tasks = []
    for number in range(count):
        scheduled = start + number / rate
        delay = scheduled - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        tasks.append(asyncio.create_task(one(number, scheduled)))
    await asyncio.gather(*tasks)
    return latencies, count / (loop.time() - start), failures


def describe(latencies: list[float]) -> str:
    figures = [
        ("p50", percentile(latencies, 0.5)),
        ("p90", percentile(latencies, 0.9)),
        ("p99", percentile(latencies, 0.99)),
        ("max", max(latencies)),
    ]
    return ", ".join(f"{name} {seconds * 1000:.1f} ms" for name, seconds in figures)


async def drop_schema(settings: Settings) -> None:
    pool = await reports_db.create_pool(settings, "storemon-bench", max_size=1)
    try:
        async with pool.acquire() as connection:
            for row in await reports_db.list_reports(connection, 10_000):
                await reports_db.delete_report(connection, row.report_id)  # unlinks its CSV
            drop = await connection.fetchval(
                "SELECT format('DROP SCHEMA %I CASCADE', $1::text)", settings.db_schema
            )
            await connection.execute(drop)
    finally:
        await pool.close()
