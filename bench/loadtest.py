"""Load test: status polls through POST /events at a set rate while reports are triggered.

    python -m bench.loadtest [--producers 4] [--rate 2000] [--seconds 60] [--batch 100]
                             [--invalid-share 0.01] [--report-every 10] [--stores 1000]
                             [--format json|ndjson|csv] [--host 127.0.0.1] [--seed 1]
                             [--workers 1]

It starts `--workers` `storemon worker`s, `storemon reporter` and `storemon api` under a fresh topic
prefix (`bench-load-<hex>-`) and a fresh reports schema, against the Kafka and PostgreSQL
of KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL (default: deploy/local's). Then:

- `--producers` aiohttp clients share `--rate` polls/s, each POSTing `--batch` polls at a
  time on its own schedule (one request in flight each: when the API cannot keep up, the
  achieved rate says so); `--invalid-share` of the polls are invalid on purpose (a bad
  status, a bad timestamp or an empty store_id);
- every `--report-every` seconds a report is triggered and polled (every 50 ms) until
  Complete;
- once the load ends, it waits for the worker to consume everything and triggers a last
  report.

While the load runs, it reads every 2 s how long the oldest poll the workers have not
consumed has waited (`storemon lag`'s lag seconds).

It prints the polls/s achieved, POST /events latency, trigger -> Complete latency, whether
the workers kept up (never more than KEPT_UP_BEHIND_S behind during the load, caught up
within KEPT_UP_CATCH_UP_S of its end), and the accounting, each line ending OK or MISMATCH
(exit status 1 on any): polls sent =
accepted + rejected (the API's answers); rejected = invalid polls sent; accepted = the polls
in what store-status gained (end offsets before and after); rejected = what the dead-letter
topic gained; every report's rows = the stores in the workers' state.

Bounded and local: the API, Kafka and PostgreSQL must be on loopback addresses, and the
duration, producers, rate, batch size and stores are capped (see --help). Service logs go
to bench/out/loadtest-logs/.
"""

from __future__ import annotations

import argparse
import asyncio
import csv
import io
import ipaddress
import json
import os
import random
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass, field
from urllib.parse import urlsplit

import aiohttp
import psutil

from bench.common import (
    OUT,
    Client,
    Deployment,
    describe,
    percentile,
    say,
    services,
    wait_ready,
    worker_progress,
)
from storemon.config import Settings
from storemon.kafka.lag import consumer_lag
from storemon.kafka.offsets import end_offsets, read_range
from storemon.kafka.topics import TOPIC_STATUS, TOPIC_STATUS_DLQ, ensure_topics, worker_app_id
from storemon.messages.polls import decode_status
from storemon.state.reader import StateReader
from storemon.timebase import format_timestamp, now_us
from storemon.tools.stack import plan_services

MAX_SECONDS = 600.0
MAX_PRODUCERS = 64
MAX_RATE = 50_000.0
MAX_BATCH = 5_000
MAX_STORES = 100_000
MIN_REPORT_EVERY = 1.0
#: The workers keep up when they are never further behind than this during the load...
KEPT_UP_BEHIND_S = 30.0
#: ... and have consumed everything this soon after it ends (issue 16).
KEPT_UP_CATCH_UP_S = 10.0
#: How often the workers' lag is read during the load.
LAG_EVERY_S = 2.0
HOUR_US = 3600 * 1_000_000
CONTENT_TYPES = {"json": "application/json", "ndjson": "application/x-ndjson", "csv": "text/csv"}
#: What makes a poll invalid on purpose (each is rejected by every way in).
BREAKAGES = (("status", "up"), ("timestamp_utc", "yesterday"), ("store_id", ""))


def _loopback(host: str | None) -> bool:
    if host is None:  # a Unix socket
        return True
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def refusals(args: argparse.Namespace, settings: Settings) -> list[str]:
    """Why this run must not start: anything off this machine, any bound exceeded."""
    problems = []
    if not _loopback(args.host):
        problems.append(f"--host {args.host} is not a loopback address (127.0.0.0/8, ::1)")
    for server in settings.kafka_bootstrap_servers.split(","):
        host = server.strip().rsplit(":", 1)[0]
        if not _loopback(host):
            problems.append(f"KAFKA_BOOTSTRAP_SERVERS names {server.strip()}, not loopback")
    database_host = urlsplit(settings.database_url).hostname
    if not _loopback(database_host):
        problems.append(f"DATABASE_URL's host {database_host} is not loopback")
    for name, value, low, high in (
        ("--seconds", args.seconds, 1, MAX_SECONDS),
        ("--producers", args.producers, 1, MAX_PRODUCERS),
        ("--rate", args.rate, 1, MAX_RATE),
        ("--batch", args.batch, 1, MAX_BATCH),
        ("--stores", args.stores, 1, MAX_STORES),
        ("--report-every", args.report_every, MIN_REPORT_EVERY, MAX_SECONDS),
        ("--invalid-share", args.invalid_share, 0, 1),
        ("--workers", args.workers, 1, settings.topic_partitions),
    ):
        if not low <= value <= high:
            problems.append(f"{name} must be between {low:g} and {high:g}, got {value:g}")
    return problems


class Polls:
    """Generates polls of `stores` stores, `invalid_share` of them invalid, and counts."""

    def __init__(self, stores: int, invalid_share: float, form: str, seed: int) -> None:
        self.random = random.Random(seed)
        self.stores = [f"load-{number:06d}" for number in range(stores)]
        self.invalid_share = invalid_share
        self.form = form

    def body(self, size: int) -> tuple[bytes, int]:
        """A request body of `size` polls, and how many of them are invalid."""
        now = now_us()
        rows = []
        invalid = 0
        for _ in range(size):
            row = {
                "store_id": self.random.choice(self.stores),
                "timestamp_utc": format_timestamp(now - self.random.randrange(HOUR_US)),
                "status": "active" if self.random.random() < 0.9 else "inactive",
            }
            if self.random.random() < self.invalid_share:
                name, value = self.random.choice(BREAKAGES)
                row[name] = value
                invalid += 1
            rows.append(row)
        if self.form == "json":
            return json.dumps(rows).encode(), invalid
        if self.form == "ndjson":
            return "\n".join(json.dumps(row) for row in rows).encode(), invalid
        text = io.StringIO()
        writer = csv.DictWriter(text, ["store_id", "timestamp_utc", "status"], lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        return text.getvalue().encode(), invalid


@dataclass
class Tally:
    sent: int = 0
    invalid: int = 0
    accepted: int = 0
    rejected: int = 0
    requests: int = 0
    failed_requests: int = 0
    latencies: list[float] = field(default_factory=list)
    reports: list[Report] = field(default_factory=list)
    #: How long the oldest poll not yet consumed had waited, read every LAG_EVERY_S.
    behind_s: list[float] = field(default_factory=list)


@dataclass(frozen=True)
class Report:
    #: Trigger -> Complete.
    seconds: float
    rows: int
    #: Stores in the workers' state just before the trigger and once Complete: the state the
    #: report read lies between (state only grows here), so before <= rows <= after.
    stores_before: int
    stores_after: int

    @property
    def consistent(self) -> bool:
        return self.stores_before <= self.rows <= self.stores_after


class StateStores:
    """How many stores the workers' state holds (their changelogs, read incrementally)."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.reader = StateReader(settings, group_id=settings.topic("bench-loadtest-state"))
        self.lock = asyncio.Lock()

    def _count(self) -> int:
        self.reader.catch_up(timeout=120)
        return len(self.reader.view.polls)

    async def count(self) -> int:
        async with self.lock:
            return await asyncio.to_thread(self._count)

    async def count_once_committed(self, timeout: float = 120) -> int:
        """The stores once the workers have committed every poll produced until now: a
        worker writes its changelogs before each commit, not as it applies each poll."""
        status_topic = self.settings.topic(TOPIC_STATUS)
        ends = await asyncio.to_thread(end_offsets, self.settings, status_topic)
        deadline = time.monotonic() + timeout
        while True:
            rows = await asyncio.to_thread(
                consumer_lag, self.settings, 5.0, [worker_app_id(self.settings)]
            )
            committed = {
                row.partition: row.committed or 0 for row in rows if row.topic == status_topic
            }
            if all(committed.get(partition, 0) >= end for partition, end in ends.items()):
                return await self.count()
            if time.monotonic() > deadline:
                raise TimeoutError(f"the workers did not commit {status_topic} within {timeout} s")
            await asyncio.sleep(0.2)

    def close(self) -> None:
        self.reader.close()


async def produce(
    session: aiohttp.ClientSession,
    polls: Polls,
    args: argparse.Namespace,
    until: float,
    tally: Tally,
) -> None:
    """One producer: a batch every batch / (rate / producers) seconds, one at a time, until
    `until` (behind schedule, it sends back to back: the rate achieved says so)."""
    loop = asyncio.get_running_loop()
    interval = args.batch * args.producers / args.rate
    headers = {"Content-Type": CONTENT_TYPES[args.format]}
    next_at = loop.time() + polls.random.random() * interval  # producers out of step
    while next_at < until and loop.time() < until:
        delay = next_at - loop.time()
        if delay > 0:
            await asyncio.sleep(delay)
        body, invalid = polls.body(args.batch)
        started = loop.time()
        async with session.post("/events", data=body, headers=headers) as response:
            answer = await response.json()
        tally.latencies.append(loop.time() - started)
        tally.requests += 1
        if response.status == 200:
            tally.sent += args.batch
            tally.invalid += invalid
            tally.accepted += answer["accepted"]
            tally.rejected += answer["rejected"]
        else:
            tally.failed_requests += 1
            say(f"POST /events answered {response.status}: {answer}")
        next_at += interval


async def report(client: Client, state: StateStores) -> Report:
    """Trigger a report and poll it to Complete."""
    before = await state.count()
    started = time.perf_counter()
    summary = await client.until_complete(await client.trigger(), timeout=300, every=0.05)
    seconds = time.perf_counter() - started
    return Report(seconds, int(summary["rows"]), before, await state.count_once_committed())


async def trigger_reports(
    client: Client, state: StateStores, every: float, until: float, tally: Tally
) -> None:
    loop = asyncio.get_running_loop()
    pending = []
    next_at = loop.time() + every
    while next_at < until:
        await asyncio.sleep(max(0.0, next_at - loop.time()))
        pending.append(asyncio.create_task(report(client, state)))
        next_at += every
    tally.reports.extend(await asyncio.gather(*pending))


def seconds_behind(settings: Settings) -> float:
    """How long the oldest store-status record the workers have not consumed has waited."""
    rows = consumer_lag(settings, 5.0, [worker_app_id(settings)], details=True)
    status_topic = settings.topic(TOPIC_STATUS)
    return max(
        (row.lag_seconds or 0.0 for row in rows if row.topic == status_topic), default=0.0
    )


async def watch_lag(settings: Settings, until: float, tally: Tally) -> None:
    loop = asyncio.get_running_loop()
    while loop.time() < until:
        tally.behind_s.append(await asyncio.to_thread(seconds_behind, settings))
        await asyncio.sleep(LAG_EVERY_S)


async def wait_for_worker(settings: Settings, timeout: float = 900) -> float:
    """Seconds until the worker group has consumed every input record."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    while (await asyncio.to_thread(worker_progress, settings))[1]:
        if loop.time() - started > timeout:
            raise TimeoutError(f"the worker did not catch up within {timeout:.0f} s")
        await asyncio.sleep(0.5)
    return loop.time() - started


def cpu_seconds(processes: dict[str, subprocess.Popen[bytes]]) -> dict[str, float]:
    """CPU time (user + system) used so far by each process, and by this one."""
    pids = {name: process.pid for name, process in processes.items()}
    return {
        name: sum(psutil.Process(pid).cpu_times()[:2])
        for name, pid in {**pids, "load client": os.getpid()}.items()
    }


@dataclass
class Run:
    tally: Tally
    #: Length of the load phase, seconds.
    elapsed: float
    #: CPU seconds each process used during the load phase.
    cpu: dict[str, float]
    #: Seconds the worker took to consume the rest once the load ended.
    catch_up: float
    #: The report triggered once the worker had caught up.
    last: Report


async def run(
    args: argparse.Namespace,
    deployment: Deployment,
    polls: Polls,
    processes: dict[str, subprocess.Popen[bytes]],
) -> Run:
    tally = Tally()
    state = StateStores(deployment.settings)
    connector = aiohttp.TCPConnector(limit=args.producers + 8)
    timeout = aiohttp.ClientTimeout(total=120)
    try:
        async with aiohttp.ClientSession(
            deployment.api_url, connector=connector, timeout=timeout
        ) as session:
            client = Client(session)
            await wait_ready(client)
            # The reporter has read the (empty) state and joined its group.
            await report(client, state)
            loop = asyncio.get_running_loop()
            cpu_before = cpu_seconds(processes)
            started = loop.time()
            until = started + args.seconds
            await asyncio.gather(
                trigger_reports(client, state, args.report_every, until, tally),
                watch_lag(deployment.settings, until, tally),
                *(produce(session, polls, args, until, tally) for _ in range(args.producers)),
            )
            elapsed = loop.time() - started
            cpu = {
                name: seconds - cpu_before[name]
                for name, seconds in cpu_seconds(processes).items()
            }
            catch_up = await wait_for_worker(deployment.settings)
            return Run(tally, elapsed, cpu, catch_up, await report(client, state))
    finally:
        state.close()


def polls_gained(settings: Settings, topic: str, start: dict[int, int]) -> tuple[int, int]:
    """(records, polls in them) that `topic` gained since `start`."""
    records = polls = 0
    for record in read_range(settings, topic, start, end_offsets(settings, topic)):
        records += 1
        polls += decode_status(record.key(), record.value()).count()
    return records, polls


def check(label: str, ok: bool) -> bool:
    say(f"  {label}: {'OK' if ok else 'MISMATCH'}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__.splitlines()[0], formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--producers", type=int, default=4, help=f"at most {MAX_PRODUCERS}")
    parser.add_argument("--rate", type=float, default=2000.0,
                        help=f"polls/s in total, at most {MAX_RATE:g}")
    parser.add_argument("--seconds", type=float, default=60.0, help=f"at most {MAX_SECONDS:g}")
    parser.add_argument("--batch", type=int, default=100,
                        help=f"polls per request, at most {MAX_BATCH}")
    parser.add_argument("--invalid-share", type=float, default=0.01)
    parser.add_argument("--report-every", type=float, default=10.0, metavar="K",
                        help=f"seconds between reports, at least {MIN_REPORT_EVERY:g}")
    parser.add_argument("--stores", type=int, default=1000, help=f"at most {MAX_STORES}")
    parser.add_argument("--format", choices=sorted(CONTENT_TYPES), default="json")
    parser.add_argument("--host", default="127.0.0.1", help="the API's address: loopback only")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--workers", type=int, default=1,
                        help="storemon workers sharing the partitions (at most their count)")
    args = parser.parse_args()

    problems = refusals(args, Settings.from_env())
    if problems:
        print("bench.loadtest: refusing to run: " + "; ".join(problems), file=sys.stderr)
        return 2
    deployment = Deployment.create(f"bench-load-{uuid.uuid4().hex[:8]}-", args.host)
    settings = deployment.settings
    ensure_topics(settings)
    status_topic = settings.topic(TOPIC_STATUS)
    dlq_topic = settings.topic(TOPIC_STATUS_DLQ)
    status_start = end_offsets(settings, status_topic)
    dlq_start = sum(end_offsets(settings, dlq_topic).values())
    polls = Polls(args.stores, args.invalid_share, args.format, args.seed)
    say(
        f"load: {args.producers} producers, {args.rate:,.0f} polls/s in batches of {args.batch} "
        f"({args.format}), {args.invalid_share:.1%} invalid, {args.seconds:g} s, a report "
        f"every {args.report_every:g} s, {args.stores:,} stores, {args.workers} worker(s); "
        f"prefix {settings.topic_prefix}; "
        f"{os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f}"
    )
    specs = plan_services(settings, args.workers, 1)
    with services(deployment, specs, OUT / "loadtest-logs") as processes:
        result = asyncio.run(run(args, deployment, polls, processes))
    tally, elapsed = result.tally, result.elapsed
    records, accepted_polls = polls_gained(settings, status_topic, status_start)
    dead_letters = sum(end_offsets(settings, dlq_topic).values()) - dlq_start

    say(
        f"sent {tally.sent:,} polls in {tally.requests:,} requests over {elapsed:.1f} s: "
        f"{tally.sent / elapsed:,.0f} polls/s achieved (target {args.rate:,.0f}); "
        f"{tally.failed_requests} requests failed"
    )
    say(f"POST /events latency: {describe(tally.latencies)}")
    say("CPU during the load, in cores: " + ", ".join(
        f"{name} {seconds / elapsed:.2f}" for name, seconds in result.cpu.items()
    ))
    seconds = [report.seconds for report in tally.reports]
    if seconds:
        say(
            f"reports during the load: {len(seconds)}, trigger -> Complete p50 "
            f"{percentile(seconds, 0.5):.2f} s, p99 {percentile(seconds, 0.99):.2f} s, "
            f"max {max(seconds):.2f} s"
        )
    say(
        f"the worker consumed the rest {result.catch_up:.1f} s after the load ended; "
        f"last report (worker caught up): {result.last.seconds:.2f} s to Complete"
    )
    behind = max(tally.behind_s, default=0.0)
    say(f"workers behind during the load (read every {LAG_EVERY_S:g} s): p50 "
        f"{percentile(tally.behind_s, 0.5):.1f} s, max {behind:.1f} s")
    say("keeping up:")
    kept_up = [
        check(f"never more than {KEPT_UP_BEHIND_S:g} s behind during the load: at most "
              f"{behind:.1f} s", behind <= KEPT_UP_BEHIND_S),
        check(f"caught up within {KEPT_UP_CATCH_UP_S:g} s of the end: in "
              f"{result.catch_up:.1f} s", result.catch_up <= KEPT_UP_CATCH_UP_S),
    ]
    say("accounting:")
    reports = [*tally.reports, result.last]
    exact = sum(report.stores_before == report.rows == report.stores_after for report in reports)
    results = [
        check(f"sent {tally.sent:,} = accepted {tally.accepted:,} + rejected {tally.rejected:,}",
              tally.sent == tally.accepted + tally.rejected),
        check(f"rejected {tally.rejected:,} = invalid polls sent {tally.invalid:,}",
              tally.rejected == tally.invalid),
        check(f"accepted {tally.accepted:,} = polls store-status gained {accepted_polls:,} "
              f"(in {records:,} records)", tally.accepted == accepted_polls),
        check(f"rejected {tally.rejected:,} = dead letters gained {dead_letters:,}",
              tally.rejected == dead_letters),
        check(f"rows of each of the {len(reports)} reports = stores in the state it read "
              f"({exact} with the state unchanged from trigger to Complete; last report "
              f"{result.last.rows:,} rows, {result.last.stores_after:,} stores)",
              all(report.consistent for report in reports)
              and result.last.rows == result.last.stores_before == result.last.stores_after),
    ]
    return 0 if all(results) and all(kept_up) else 1


if __name__ == "__main__":
    sys.exit(main())
