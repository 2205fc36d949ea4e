"""Live store query benchmark: GET /stores/{id} latency at Loop scale, open loop.

    python -m bench.store_queries [--workers 1 2] [--rate 200] [--seconds 30]

Works on the Loop-scale state bench.scatter_gather keeps under `bench-sg-1x-` (8
partitions; built there on its first run, or here if missing). For each worker count
it starts that many workers (each its own web port) and the API (which routes each
query to the owner of the store's partition), checks the answers of 200 random stores
against `storemon report-csv --as-of T` on the same files, then asks for random
stores at --rate requests/s for --seconds, open loop (each latency from its scheduled
time), once with `as_of=T` and once for now, and prints the latencies and every
process's peak RSS.

Needs Kafka and PostgreSQL (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL; default:
deploy/local's). Logs go to bench/out/store-queries-logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import os
import random
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import aiohttp

from bench.common import OUT, STOREMON, Deployment, describe, free_port, open_loop, say
from bench.scatter_gather import (
    MIB,
    Fleet,
    StateSet,
    data_files,
    deployment,
    fleet,
    prepare_state,
)
from storemon.inputs.values import parse_timestamp
from storemon.timebase import US_PER_MINUTE, format_timestamp
from storemon.uptime.engine import REPORT_COLUMNS

PARTITIONS = 8
CHECKED_STORES = 200


def expected_rows(state: StateSet, as_of: str) -> dict[str, list[float]]:
    text = subprocess.run(
        [*STOREMON, "report-csv", "--as-of", as_of, *data_files(state.data)],
        capture_output=True, check=True, text=True,
    ).stdout
    rows = list(csv.reader(io.StringIO(text)))
    return {row[0]: [float(figure) for figure in row[1:]] for row in rows[1:]}


def last_poll(state: StateSet) -> str:
    with (state.data / "store_status.csv").open() as rows:
        return max(row["timestamp_utc"] for row in csv.DictReader(rows))


async def run(state: StateSet, workers: int, rate: float, seconds: float) -> None:
    deploy = deployment(state.prefix, PARTITIONS)
    ports = [free_port() for _ in range(workers)]
    deploy.env["STOREMON_WORKER_URLS"] = ",".join(f"http://127.0.0.1:{p}" for p in ports)
    logs = OUT / "store-queries-logs" / f"{workers}-workers"
    as_of_us = _as_of_us(state)
    as_of = format_timestamp(as_of_us)
    expected = expected_rows(state, as_of)
    stores = sorted(expected)
    with running(deploy, logs, ports) as services:
        started = time.monotonic()
        async with aiohttp.ClientSession(deploy.api_url) as session:

            async def figures(store_id: str, **query: str) -> list[float] | None:
                async with session.get(f"/stores/{store_id}", params=query) as response:
                    if response.status != 200:
                        return None
                    answer = await response.json()
                    return [answer["figures"][column] for column in REPORT_COLUMNS[1:]]

            checked = random.Random(1).sample(stores, CHECKED_STORES)
            while True:
                services.check_alive()
                try:
                    answers = [await figures(store_id, as_of=as_of) for store_id in checked]
                except aiohttp.ClientConnectionError:
                    answers = [None]
                if all(answer is not None for answer in answers):
                    break
                await asyncio.sleep(0.5)
            ready_s = time.monotonic() - started
            say(
                f"{workers} worker(s): every checked store answered {ready_s:.1f} s after start; "
                f"{CHECKED_STORES} random stores equal to their row of "
                f"`storemon report-csv --as-of {as_of}`: "
                f"{answers == [expected[store_id] for store_id in checked]}"
            )
            picks = random.Random(2)
            for label, query in (("as_of=T", {"as_of": as_of}), ("now", {})):

                async def ask(number: int, query: dict[str, str] = query) -> bool:
                    async with session.get(
                        f"/stores/{picks.choice(stores)}", params=query
                    ) as response:
                        await response.read()
                        return response.status == 200

                await open_loop(ask, rate, 1.0)  # warm-up
                latencies, achieved, failures = await open_loop(ask, rate, seconds)
                say(
                    f"{workers} worker(s), GET /stores/{{id}} ({label}) at {achieved:.0f} req/s "
                    f"for {seconds:.0f} s ({len(latencies)} requests, {failures} not 200): "
                    f"{describe(latencies)} (target p99 <= 20 ms)"
                )
    say(
        f"{workers} worker(s): peak RSS "
        + ", ".join(f"{name} {rss / MIB:.0f} MiB" for name, rss in services.peak.items())
    )


def _as_of_us(state: StateSet) -> int:
    return parse_timestamp(last_poll(state)) - 37 * US_PER_MINUTE


@contextmanager
def running(deploy: Deployment, logs: Path, ports: list[int]) -> Iterator[Fleet]:
    """The API and a worker per port (its web port), stopped on exit."""
    with fleet(deploy, logs) as services:
        for number, port in enumerate(ports, 1):
            services.start(f"worker-{number}", "worker", STOREMON_WORKER_METRICS_PORT=str(port))
        services.start("api", "api")
        yield services


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()
    os.environ.setdefault("STOREMON_TOPIC_PARTITIONS", str(PARTITIONS))
    state = StateSet("1x", "bench-sg-1x-", OUT / "sg-1x", 1)
    prepare_state(state, PARTITIONS, 2)
    for workers in args.workers:
        asyncio.run(run(state, workers, args.rate, args.seconds))


if __name__ == "__main__":
    main()
