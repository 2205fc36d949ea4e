"""Report benchmark: trigger -> Complete, CSV download speed, /get_report latency under load.

    python -m bench.report_service [--prefix bench-reports-] [--data bench/out/reports-loop]
                            [--reports 10] [--rate 200] [--seconds 30]

Works on Loop-scale state kept in Kafka under --prefix. The first run builds it:
`storemon generate --seed 7` (14,000 stores, 8 days of polls) unless --data exists,
`storemon load` unless the prefix's store-status topic has data, then a worker
until its consumer lag is zero (~10 minutes on the project's 2-core machine).
Later runs find the state caught up and reuse it (the changelogs persist).

It then starts `storemon reporter` and `storemon api` (fresh PostgreSQL schema,
free loopback port) and measures, printing one line per figure:

- the first report after the reporter started (it reads the whole state), then
  --reports more one after the other: trigger (POST) -> Complete, as seen by a
  client polling /get_report every 10 ms; and that the CSV equals
  `storemon report-csv` on the same files, byte for byte;
- downloading the report CSV (GET /reports/{id}.csv), and a 64 MiB CSV stored
  the same way (streaming throughput at size);
- /get_report status answers (JSON) at --rate requests/s for --seconds: an
  open-loop aiohttp client on the same machine, each latency measured from the
  request's scheduled time, so a stall counts for every request it delays.

Needs Kafka and PostgreSQL (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL; default:
deploy/local's). Logs of the services go to bench/out/reports-logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import statistics
import subprocess
import time
from pathlib import Path

import aiohttp

from bench.common import (
    OUT,
    STOREMON,
    Client,
    Deployment,
    describe,
    open_loop,
    say,
    services,
    wait_ready,
    worker_progress,
)
from storemon.config import Settings
from storemon.database import reports_db
from storemon.tools.stack import plan_services

BIG_CSV_BYTES = 64 * 2**20
MB = 1e6


def data_files(data: Path) -> list[str]:
    return [
        *("--status", str(data / "store_status.csv")),
        *("--hours", str(data / "menu_hours.csv")),
        *("--timezones", str(data / "timezones.csv")),
    ]


def prepare_state(settings: Settings, data: Path, env: dict[str, str]) -> None:
    """Generate, load and absorb the data set under the prefix, as far as not done yet."""
    if not (data / "store_status.csv").exists():
        say(f"generating {data} ...")
        subprocess.run([*STOREMON, "generate", "--out", str(data), "--seed", "7"], check=True)
    loaded, lag = worker_progress(settings)
    if loaded == 0:
        say(f"loading {data} under prefix {settings.topic_prefix!r} ...")
        subprocess.run([*STOREMON, "load", "--no-progress", *data_files(data)], env=env, check=True)
        loaded, lag = worker_progress(settings)
    if lag == 0:
        say(f"state: {loaded:,} input records, worker caught up")
        return
    say(f"state: worker {lag:,} records behind; running a worker until it catches up ...")
    started = time.monotonic()
    worker = subprocess.Popen(
        [*STOREMON, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        while lag:
            if worker.poll() is not None:
                raise RuntimeError("the worker exited")
            time.sleep(5)
            _, lag = worker_progress(settings)
    finally:
        worker.terminate()
        worker.wait(60)
    say(f"state: worker caught up in {time.monotonic() - started:.0f} s")


async def status_load(
    client: Client, report_id: str, rate: float, seconds: float
) -> tuple[list[float], float]:
    """Open-loop GET /get_report (JSON) at `rate`/s; latencies from the scheduled times."""

    async def status(number: int) -> bool:
        async with client.session.get(
            "/get_report", params={"report_id": report_id}, headers={"Accept": "application/json"}
        ) as response:
            await response.read()
            return response.status == 200

    latencies, achieved, failures = await open_loop(status, rate, seconds)
    assert failures == 0, f"{failures} status requests failed"
    return latencies, achieved


async def store_big_report(settings: Settings) -> tuple[str, str]:
    """A 64 MiB CSV stored as a Complete report (as the reporter stores them); (id, sha256)."""
    row = b"0123456789012345678,60,24,168,0,0,0\n"
    csv = row * (BIG_CSV_BYTES // len(row))
    pool = await reports_db.create_pool(settings, "storemon-bench", max_size=1)
    try:
        async with pool.acquire() as connection:
            report_id = reports_db.new_report_id()
            await reports_db.insert_running(connection, report_id, {})
            await reports_db.complete_report(
                connection,
                report_id,
                csv,
                row_count=csv.count(b"\n"),
                as_of=None,
                state_offsets={},
            )
    finally:
        await pool.close()
    return report_id, hashlib.sha256(csv).hexdigest()


async def running_report(settings: Settings) -> str:
    """A report that stays Running (registered, never requested from a reporter)."""
    pool = await reports_db.create_pool(settings, "storemon-bench", max_size=1)
    try:
        async with pool.acquire() as connection:
            report_id = reports_db.new_report_id()
            await reports_db.insert_running(connection, report_id, {})
    finally:
        await pool.close()
    return report_id


async def measure(
    args: argparse.Namespace, settings: Settings, api_url: str, reporter_started: float
) -> None:
    expected = subprocess.run(
        [*STOREMON, "report-csv", *data_files(args.data)], capture_output=True, check=True
    ).stdout
    connector = aiohttp.TCPConnector(limit=64)
    async with aiohttp.ClientSession(api_url, connector=connector) as session:
        client = Client(session)
        await wait_ready(client)
        triggered = time.monotonic()
        first = await client.until_complete(await client.trigger())
        done = time.monotonic()
        say(
            f"first report, triggered while the reporter starts: {done - triggered:.2f} s "
            "to Complete "
            f"({done - reporter_started:.1f} s after the reporter started; {first['rows']:,} "
            f"stores, {first['bytes']:,} bytes)"
        )
        latencies = []
        for _ in range(args.reports):
            started = time.perf_counter()
            summary = await client.until_complete(await client.trigger())
            latencies.append(time.perf_counter() - started)
        say(
            f"trigger -> Complete, {args.reports} reports one after the other: median "
            f"{statistics.median(latencies):.2f} s, max {max(latencies):.2f} s (target <= 5 s)"
        )
        body, _ = await client.download(summary["report_id"])
        say(f"CSV identical to `storemon report-csv` on the same files: {body == expected}")

        timings = [(await client.download(summary["report_id"]))[1] for _ in range(20)]
        say(
            f"download of the report CSV ({len(body) / MB:.2f} MB), 20 times: median "
            f"{len(body) / statistics.median(timings) / MB:.0f} MB/s, slowest "
            f"{len(body) / max(timings) / MB:.0f} MB/s (target >= 50 MB/s)"
        )
        big_id, _ = await store_big_report(settings)
        big = [await client.download_size(big_id) for _ in range(5)]
        rates = [size / seconds / MB for size, seconds in big]
        say(
            f"download of a {big[0][0] / MB:.0f} MB CSV, 5 times: median "
            f"{statistics.median(rates):.0f} MB/s, slowest {min(rates):.0f} MB/s"
        )

        stuck_id = await running_report(settings)
        for name, report_id in (
            ("Complete report", summary["report_id"]),
            ("Running report", stuck_id),
        ):
            await status_load(client, report_id, args.rate, 1.0)  # warm-up
            lags, achieved = await status_load(client, report_id, args.rate, args.seconds)
            say(
                f"/get_report status JSON of a {name} at {achieved:.0f} req/s for "
                f"{args.seconds:.0f} s ({len(lags)} requests): {describe(lags)} "
                "(target p99 <= 20 ms)"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="bench-reports-", help="topic prefix of the state")
    parser.add_argument("--data", type=Path, default=OUT / "reports-loop")
    parser.add_argument("--reports", type=int, default=10)
    parser.add_argument("--rate", type=float, default=200.0)
    parser.add_argument("--seconds", type=float, default=30.0)
    args = parser.parse_args()

    deployment = Deployment.create(args.prefix)
    prepare_state(deployment.settings, args.data, deployment.env)
    logs = OUT / "reports-logs"
    reporter_and_api = [
        spec for spec in plan_services(deployment.settings, 1, 1) if spec.command != "worker"
    ]
    with services(deployment, reporter_and_api, logs):
        reporter_started = time.monotonic()
        asyncio.run(measure(args, deployment.settings, deployment.api_url, reporter_started))
    say(f"reporter log (server-side timings): {logs / 'reporter.log'}")


if __name__ == "__main__":
    main()
