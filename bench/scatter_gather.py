"""Scatter/gather benchmark: memory per state owner and of the reporter, report latency,
and how soon a new owner answers report parts.

    python -m bench.scatter_gather [--prefix bench-sg-] [--scale 4] [--partitions 8]
                                   [--owners 1 4 2] [--loaders 4] [--reports 10]
                                   [--skip-big] [--skip-loop]

Works on two states kept in Kafka, each built once and reused by later runs (the
changelogs persist, and every worker recovers from them when it starts):

- `<prefix>4x-`: `storemon generate --scale 4 --seed 7` (56,000 stores, ~10M polls)
  into bench/out/sg-4x, loaded with `storemon load` on topics of --partitions
  partitions, then absorbed by --loaders workers at once until their lag is zero;
- `<prefix>1x-`: the same at Loop scale (14,000 stores, ~2.6M polls), bench/out/sg-1x.

Each measurement starts its services as subprocesses (fresh PostgreSQL schema, free
loopback port, each worker with its own STOREMON_WORKER_DATA_DIR under bench/out/sg-state/
and no /metrics port) and samples every process's RSS every 0.2 s over its whole life
(psutil), from start through recovery and the reports. It prints one line per figure:

- for each --owners N on the 4x state: N `storemon worker` processes (the state's
  owners), one `storemon reporter` and `storemon api`, all started together; a report
  triggered at once (so it waits for the owners' recovery); once it is Complete, that
  the group's lag is zero, then 3 more reports, the last compared byte for byte with
  `storemon report-csv` on the same files; the peak RSS of each owner and of the
  reporter, which partitions each owner answered, the parts' compute times (worker
  logs) and the assembly time (last part stored -> Complete, from PostgreSQL);
- on the Loop-scale state: one worker, two reporters and the API; --reports reports
  one after the other (trigger -> Complete, polling /get_report every 10 ms), the CSV
  compared with `storemon report-csv`; then two more workers, and once a report has
  parts from all three, a fourth starts (its share: 2 of 8 partitions, Loop scale / 4)
  while reports are triggered one after the other: the seconds from its start until a
  part computed by it (report_parts.computed_by, "host:pid") is stored; then 3 reports
  with the four workers, and the peak RSS of every service process.

Needs Kafka and PostgreSQL (KAFKA_BOOTSTRAP_SERVERS, DATABASE_URL; default:
deploy/local's). Logs go to bench/out/sg-logs/. Building the 4x state takes minutes.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import os
import re
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from pathlib import Path

import aiohttp
import psutil
from confluent_kafka import TopicPartition

from bench.common import (
    OUT,
    STOREMON,
    Client,
    Deployment,
    drop_schema,
    say,
    wait_ready,
    worker_progress,
)
from bench.report_service import data_files
from storemon.config import Settings
from storemon.database import reports_db
from storemon.kafka.clients import make_consumer
from storemon.kafka.topics import TOPIC_REPORT_TASKS, input_partitions, worker_app_id

MIB = 2**20
#: How often every service process's RSS is sampled.
SAMPLE_EVERY_S = 0.2
#: Reports of the 4x state after the first one (the last is compared with report-csv).
REPORTS_PER_OWNER_RUN = 3
#: A report of the 4x state waits for the owners' recovery: far longer than the default.
REPORT_TIMEOUT_S = 1800
PART_LINE = re.compile(r"part (\d+) of report (\S+): (\d+) rows in ([\d.]+) s")


@dataclasses.dataclass(frozen=True)
class StateSet:
    """A generated data set and the topic prefix its state is kept under."""

    label: str
    prefix: str
    data: Path
    scale: int


def deployment(prefix: str, partitions: int) -> Deployment:
    base = Deployment.create(prefix)
    env = {
        **base.env,
        "STOREMON_TOPIC_PARTITIONS": str(partitions),
        "STOREMON_REPORT_TIMEOUT_S": str(REPORT_TIMEOUT_S),
    }
    settings = dataclasses.replace(
        base.settings, topic_partitions=partitions, report_timeout_s=REPORT_TIMEOUT_S
    )
    return Deployment(settings, env, base.api_url)


class Fleet:
    """Service processes of one measurement, each one's RSS sampled over its life."""

    def __init__(self, deployment: Deployment, logs: Path) -> None:
        self.deployment = deployment
        self.logs = logs
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.started: dict[str, float] = {}
        self.peak: dict[str, int] = {}
        self.last: dict[str, int] = {}
        self._stop = threading.Event()
        self._sampler = threading.Thread(target=self._sample, daemon=True)
        logs.mkdir(parents=True, exist_ok=True)
        self._sampler.start()

    def start(
        self, name: str, command: str, **extra_env: str
    ) -> subprocess.Popen[bytes]:
        env = {**self.deployment.env, **extra_env}
        if command == "worker":
            # Each worker its own Faust data folder.
            state_dir = OUT / "sg-state" / name
            state_dir.mkdir(parents=True, exist_ok=True)
            env["STOREMON_WORKER_DATA_DIR"] = str(state_dir)
        with (self.logs / f"{name}.log").open("wb") as log:
            process = subprocess.Popen(
                [*STOREMON, command], env=env, stdout=log, stderr=subprocess.STDOUT
            )
        self.started[name] = time.time()
        self.processes[name] = process
        return process

    def _sample(self) -> None:
        handles: dict[int, psutil.Process] = {}
        while not self._stop.is_set():
            for name, process in list(self.processes.items()):
                try:
                    handle = handles.setdefault(process.pid, psutil.Process(process.pid))
                    rss = handle.memory_info().rss
                except psutil.Error:
                    continue
                if rss == 0:  # exited, not yet reaped
                    continue
                self.last[name] = rss
                self.peak[name] = max(self.peak.get(name, 0), rss)
            self._stop.wait(SAMPLE_EVERY_S)

    def check_alive(self) -> None:
        for name, process in self.processes.items():
            if process.poll() is not None:
                raise RuntimeError(f"{name} exited ({process.returncode}): {self.logs}")

    def stop(self) -> None:
        for process in self.processes.values():
            process.terminate()
        for process in self.processes.values():
            process.wait(60)
        self._stop.set()
        self._sampler.join()

    def part_timings(self, name: str) -> list[tuple[int, int, float]]:
        """(partition, rows, seconds) of each part the worker's log says it computed."""
        text = (self.logs / f"{name}.log").read_text(errors="replace")
        return [
            (int(m.group(1)), int(m.group(3)), float(m.group(4)))
            for m in PART_LINE.finditer(text)
        ]


@contextmanager
def fleet(deployment: Deployment, logs: Path) -> Iterator[Fleet]:
    """A Fleet, stopped on exit; the deployment's reports schema is dropped afterwards."""
    services = Fleet(deployment, logs)
    try:
        yield services
    finally:
        services.stop()
        # In a thread of its own: the caller may be inside an event loop.
        with ThreadPoolExecutor(1) as thread:
            thread.submit(asyncio.run, drop_schema(deployment.settings)).result()


def prepare_state(state: StateSet, partitions: int, loaders: int) -> None:
    """Generate, load and absorb the data set under its prefix, as far as not done yet."""
    deploy = deployment(state.prefix, partitions)
    settings, env = deploy.settings, deploy.env
    if not (state.data / "store_status.csv").exists():
        say(f"generating {state.data} ...")
        subprocess.run(
            [*STOREMON, "generate", "--out", str(state.data), "--scale", str(state.scale),
             "--seed", "7"],
            check=True,
        )
    loaded, lag = worker_progress(settings)
    if loaded == 0:
        say(f"loading {state.data} under prefix {state.prefix!r} ({partitions} partitions) ...")
        started = time.monotonic()
        subprocess.run(
            [*STOREMON, "load", "--no-progress", *data_files(state.data)], env=env, check=True
        )
        say(f"{state.label}: loaded in {time.monotonic() - started:.0f} s")
        loaded, lag = worker_progress(settings)
    held = input_partitions(settings)
    if held != partitions:
        raise RuntimeError(f"{state.prefix}: the input topics have {held} partitions")
    if lag == 0:
        say(f"{state.label} state: {loaded:,} input records, {held} partitions, caught up")
    else:
        absorb(state, deploy, lag, loaders)
    if not tasks_committed(settings, partitions):
        asyncio.run(prime_tasks(state, partitions))


def absorb(state: StateSet, deploy: Deployment, lag: int, loaders: int) -> None:
    """`loaders` workers at once until the worker group's lag is zero."""
    settings = deploy.settings
    say(f"{state.label} state: {lag:,} records behind; {loaders} workers until caught up ...")
    started = time.monotonic()
    logs = OUT / "sg-logs" / f"load-{state.label}"
    services = Fleet(deploy, logs)
    try:
        for number in range(1, loaders + 1):
            services.start(f"loader-{number}", "worker")
        while lag:
            services.check_alive()
            time.sleep(5)
            _, lag = worker_progress(settings)
    finally:
        services.stop()
    peaks = ", ".join(f"{rss / MIB:.0f}" for rss in services.peak.values())
    say(
        f"{state.label} state: {loaders} workers caught up in {time.monotonic() - started:.0f} s"
        f" (peak RSS {peaks} MiB)"
    )


def tasks_committed(settings: Settings, partitions: int) -> bool:
    """Whether the worker group has committed an offset on every report-tasks partition."""
    consumer = make_consumer(settings, worker_app_id(settings), **{"enable.auto.commit": False})
    try:
        topic = settings.topic(TOPIC_REPORT_TASKS)
        committed = consumer.committed(
            [TopicPartition(topic, partition) for partition in range(partitions)], timeout=30
        )
    finally:
        consumer.close()
    return all(tp.offset >= 0 for tp in committed)


async def prime_tasks(state: StateSet, partitions: int) -> None:
    """One report answered by a worker started alone, triggered once it is ready, so that
    the worker group commits its first offsets on report-tasks.

    Without a committed offset there, a task sent while the workers recover was not
    consumed after their recovery (observed: the report stayed Running), so the
    measurements, which trigger a report as the owners start, need one.
    """
    deploy = deployment(state.prefix, partitions)
    logs = OUT / "sg-logs" / f"prime-{state.label}"
    with fleet(deploy, logs) as services:
        services.start("api", "api")
        services.start("reporter", "reporter")
        services.start("worker", "worker")
        while "[^Worker]: Ready" not in (logs / "worker.log").read_text(errors="replace"):
            services.check_alive()
            await asyncio.sleep(1)
        async with aiohttp.ClientSession(deploy.api_url) as session:
            client = Client(session)
            await wait_ready(client)
            await client.until_complete(await client.trigger(), timeout=600)
        await asyncio.sleep(5)  # past Faust's commit interval (2.8 s)
    committed = tasks_committed(deploy.settings, partitions)
    say(f"{state.label} state: a first report answered; offsets on report-tasks: {committed}")


def expected_csv(state: StateSet) -> bytes:
    """`storemon report-csv` on the state's files (kept next to them)."""
    path = state.data / "expected-report.csv"
    if not path.exists():
        body = subprocess.run(
            [*STOREMON, "report-csv", *data_files(state.data)], capture_output=True, check=True
        ).stdout
        path.write_bytes(body)
    return path.read_bytes()


async def report_record(settings: Settings, report_id: str) -> tuple[dict, list[dict]]:
    """The report's row and its parts' rows."""
    pool = await reports_db.create_pool(settings, "storemon-bench", max_size=1)
    try:
        async with pool.acquire() as connection:
            report = await connection.fetchrow(
                "SELECT requested_at, started_at, finished_at, row_count FROM reports"
                " WHERE report_id = $1",
                report_id,
            )
            parts = await connection.fetch(
                "SELECT partition, row_count, computed_by, computed_at FROM report_parts"
                " WHERE report_id = $1 ORDER BY partition",
                report_id,
            )
    finally:
        await pool.close()
    return dict(report), [dict(part) for part in parts]


def owner_of(parts: list[dict], services: Fleet) -> dict[str, list[int]]:
    """Worker name -> the partitions of `parts` it computed."""
    by_pid = {str(process.pid): name for name, process in services.processes.items()}
    owners: dict[str, list[int]] = {}
    for part in parts:
        pid = part["computed_by"].rsplit(":", 1)[-1]
        owners.setdefault(by_pid.get(pid, part["computed_by"]), []).append(part["partition"])
    return owners


def assembly_s(report: dict, parts: list[dict]) -> float:
    """Seconds from the last part stored to the report Complete."""
    return (report["finished_at"] - max(part["computed_at"] for part in parts)).total_seconds()


async def complete(client: Client) -> str:
    """A report triggered and waited for; its id."""
    report_id = await client.trigger()
    await client.until_complete(report_id, timeout=REPORT_TIMEOUT_S)
    return report_id


async def serial_reports(client: Client, count: int) -> tuple[list[float], dict]:
    """`count` reports one after the other: trigger -> Complete seconds, the last summary."""
    latencies = []
    summary: dict = {}
    for _ in range(count):
        started = time.perf_counter()
        summary = await client.until_complete(await client.trigger(), timeout=REPORT_TIMEOUT_S)
        latencies.append(time.perf_counter() - started)
    return latencies, summary


def describe_parts(services: Fleet, workers: list[str]) -> str:
    timings = [timing for name in workers for timing in services.part_timings(name)]
    if not timings:
        return "no part timings in the worker logs"
    rows = sum(rows for _, rows, _ in timings)
    seconds = sum(seconds for _, _, seconds in timings)
    per_part = statistics.median(seconds for _, _, seconds in timings)
    return (
        f"{len(timings)} parts, median {per_part * 1000:.0f} ms a part, "
        f"{seconds / rows * 1e6:.1f} µs a store (rows {rows:,} in {seconds:.2f} s)"
    )


async def run_owners(
    state: StateSet, owners: int, partitions: int, expected: bytes
) -> dict[str, int]:
    """The 4x state with `owners` workers: figures printed; peak RSS per worker returned."""
    deploy = deployment(state.prefix, partitions)
    label = f"{state.label}, {owners} owner{'s' if owners > 1 else ''}"
    logs = OUT / "sg-logs" / f"{state.label}-owners-{owners}"
    workers = [f"worker-{number}" for number in range(1, owners + 1)]
    with fleet(deploy, logs) as services:
        services.start("api", "api")
        services.start("reporter", "reporter")
        started = time.monotonic()
        for name in workers:
            services.start(name, "worker")
        async with aiohttp.ClientSession(deploy.api_url) as session:
            client = Client(session)
            await wait_ready(client)
            first_id = await client.trigger()
            await client.until_complete(first_id, timeout=REPORT_TIMEOUT_S)
            first_s = time.monotonic() - started
            services.check_alive()
            _, lag = worker_progress(deploy.settings)
            latencies, summary = await serial_reports(client, REPORTS_PER_OWNER_RUN)
            body, _ = await client.download(summary["report_id"])
        report, parts = await report_record(deploy.settings, summary["report_id"])
        first_report, first_parts = await report_record(deploy.settings, first_id)
    say(
        f"{label}: start -> first report Complete {first_s:.1f} s (recovery of "
        f"{partitions} partitions included; assembled {assembly_s(first_report, first_parts):.2f}"
        f" s after its last part); group lag then {lag}; {REPORTS_PER_OWNER_RUN} more reports:"
        f" {', '.join(f'{s:.2f}' for s in latencies)} s; CSV identical to `storemon report-csv`:"
        f" {body == expected} ({summary['rows']:,} rows, {len(body):,} bytes)"
    )
    answered = owner_of(parts, services)
    say(
        f"{label}: peak RSS per owner: "
        + ", ".join(
            f"{name} {services.peak[name] / MIB:.0f} MiB (at the end "
            f"{services.last[name] / MIB:.0f}, partitions {answered.get(name, [])})"
            for name in workers
        )
    )
    say(
        f"{label}: reporter peak RSS {services.peak['reporter'] / MIB:.0f} MiB (target <= 250);"
        f" api {services.peak['api'] / MIB:.0f} MiB"
    )
    say(
        f"{label}: parts: {describe_parts(services, workers)}; last report assembled in"
        f" {assembly_s(report, parts):.2f} s after its last part ({report['row_count']:,} rows)"
    )
    return {name: services.peak[name] for name in workers}


async def run_loop(state: StateSet, partitions: int, reports: int, expected: bytes) -> None:
    """Loop scale: 1 owner's report latency; a 4th owner joining 3; RSS of every process."""
    deploy = deployment(state.prefix, partitions)
    logs = OUT / "sg-logs" / f"{state.label}-join"
    label = f"{state.label} ({partitions} partitions)"
    with fleet(deploy, logs) as services:
        services.start("api", "api")
        services.start("reporter-1", "reporter")
        services.start("reporter-2", "reporter")
        started = time.monotonic()
        services.start("worker-1", "worker")
        async with aiohttp.ClientSession(deploy.api_url) as session:
            client = Client(session)
            await wait_ready(client)
            await client.until_complete(await client.trigger(), timeout=REPORT_TIMEOUT_S)
            first_s = time.monotonic() - started
            latencies, summary = await serial_reports(client, reports)
            body, _ = await client.download(summary["report_id"])
            say(
                f"{label}, 1 owner: start -> first report Complete {first_s:.1f} s; then "
                f"trigger -> Complete, {reports} reports one after the other: median "
                f"{statistics.median(latencies):.2f} s, min {min(latencies):.2f} s, max "
                f"{max(latencies):.2f} s (target <= 0.8 s); CSV identical to "
                f"`storemon report-csv`: {body == expected} ({summary['rows']:,} rows)"
            )
            report, parts = await report_record(deploy.settings, summary["report_id"])
            say(
                f"{label}, 1 owner: parts: {describe_parts(services, ['worker-1'])}; last "
                f"report assembled in {assembly_s(report, parts):.2f} s after its last part"
            )
            # Two more owners; then a fourth joins three and takes a quarter of the state.
            services.start("worker-2", "worker")
            services.start("worker-3", "worker")
            while len(owner_of((await report_record(
                deploy.settings, await complete(client)))[1], services)) < 3:
                services.check_alive()
            joining = services.start("worker-4", "worker")
            joined_at = services.started["worker-4"]
            during: list[float] = []
            join_s = None
            mine: list[dict] = []
            while time.time() - joined_at < 300:
                services.check_alive()
                began = time.perf_counter()
                report_id = await complete(client)
                during.append(time.perf_counter() - began)
                _, parts = await report_record(deploy.settings, report_id)
                mine = [
                    part for part in parts
                    if part["computed_by"].endswith(f":{joining.pid}")
                ]
                if mine:
                    first_part = min(part["computed_at"] for part in mine)
                    join_s = first_part.timestamp() - joined_at
                    break
            say(
                f"{label}: a 4th owner joining 3 (Loop scale / 4 is its share): "
                + (
                    f"its first report part stored {join_s:.1f} s after it started "
                    f"(target <= 10 s; partitions {sorted(p['partition'] for p in mine)})"
                    if join_s is not None
                    else "no part of it within 300 s"
                )
                + f"; {len(during)} reports meanwhile, trigger -> Complete max "
                f"{max(during):.2f} s"
            )
            latencies, summary = await serial_reports(client, REPORTS_PER_OWNER_RUN)
            _, parts = await report_record(deploy.settings, summary["report_id"])
            answered = owner_of(parts, services)
            say(
                f"{label}, 4 owners: {REPORTS_PER_OWNER_RUN} reports: "
                f"{', '.join(f'{s:.2f}' for s in latencies)} s; partitions per owner: "
                + ", ".join(f"{name} {sorted(ps)}" for name, ps in sorted(answered.items()))
            )
    say(
        f"{label}, up to 4 workers + 2 reporters + api: peak RSS "
        + ", ".join(f"{name} {rss / MIB:.0f} MiB" for name, rss in services.peak.items())
        + f" (target: none above 600 MiB; worker-1 owned all {partitions} partitions "
        "until the others joined)"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--prefix", default="bench-sg-", help="topic prefix of the states")
    parser.add_argument("--scale", type=int, default=4, help="scale of the big state")
    parser.add_argument("--partitions", type=int, default=8)
    parser.add_argument("--owners", type=int, nargs="+", default=[1, 4, 2])
    parser.add_argument("--loaders", type=int, default=4, help="workers building a state")
    parser.add_argument("--reports", type=int, default=10)
    parser.add_argument("--skip-big", action="store_true", help="only the Loop-scale figures")
    parser.add_argument("--skip-loop", action="store_true", help="only the big state's figures")
    args = parser.parse_args()

    os.environ.setdefault("STOREMON_TOPIC_PARTITIONS", str(args.partitions))
    big = StateSet(
        f"{args.scale}x", f"{args.prefix}{args.scale}x-", OUT / f"sg-{args.scale}x", args.scale
    )
    loop = StateSet("1x", f"{args.prefix}1x-", OUT / "sg-1x", 1)
    if not args.skip_big:
        prepare_state(big, args.partitions, args.loaders)
        expected = expected_csv(big)
        peaks: dict[int, dict[str, int]] = {}
        for owners in args.owners:
            peaks[owners] = asyncio.run(run_owners(big, owners, args.partitions, expected))
        if 1 in peaks:
            single = peaks[1]["worker-1"]
            for owners, by_worker in sorted(peaks.items()):
                if owners == 1:
                    continue
                target = {2: " (target <= 60 %)", 4: " (target <= 35 %)"}.get(owners, "")
                say(
                    f"{big.label}, {owners} owners: largest owner peak "
                    f"{max(by_worker.values()) / MIB:.0f} MiB = "
                    f"{100 * max(by_worker.values()) / single:.0f} % of the single owner's "
                    f"{single / MIB:.0f} MiB{target}"
                )
    if not args.skip_loop:
        prepare_state(loop, args.partitions, min(args.loaders, 2))
        asyncio.run(run_loop(loop, args.partitions, args.reports, expected_csv(loop)))


if __name__ == "__main__":
    main()
