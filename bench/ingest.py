"""Ingest benchmark: `storemon load` rows/s, and Faust workers absorbing polls until lag is zero.

    python -m bench.ingest [--stores N] [--workers 1 2] [--data DIR]
                           [--single-polls | --record-per-poll]

(`--workers 0` measures the load alone.)

Needs the Kafka broker of KAFKA_BOOTSTRAP_SERVERS (default: deploy/local's; start
it with `deploy/local/stack.sh start`). Every run uses a fresh topic prefix, so
runs never see each other's data. Prints one line per measurement.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from pathlib import Path

import numpy as np
import psutil

from storemon.config import Settings
from storemon.inputs.csv_files import read_status_csv
from storemon.inputs.values import Poll
from storemon.kafka.clients import make_producer
from storemon.kafka.lag import consumer_lag
from storemon.kafka.topics import TOPIC_STATUS
from storemon.messages.polls import encode_poll
from storemon.producer import PollProducer

STOREMON = [sys.executable, "-m", "storemon.cli"]


def run_env(prefix: str) -> dict[str, str]:
    return {
        **os.environ,
        "STOREMON_TOPIC_PREFIX": prefix,
        "STOREMON_LOG_LEVEL": "warning",
        # Several workers on one host: no /metrics port to share.
        "STOREMON_WORKER_METRICS_PORT": "0",
    }


def generate(directory: Path, stores: int) -> Path:
    subprocess.run(
        [*STOREMON, "generate", "--out", str(directory), "--stores", str(stores), "--seed", "7"],
        check=True,
    )
    return directory


def load(data: Path, prefix: str, status: bool = True) -> subprocess.CompletedProcess[str]:
    """`storemon load` of the data set (without its polls if not `status`) under `prefix`."""
    files = {"--hours": "menu_hours.csv", "--timezones": "timezones.csv"}
    if status:
        files["--status"] = "store_status.csv"
    return subprocess.run(
        [*STOREMON, "load", "--no-progress"]
        + [part for flag, name in files.items() for part in (flag, str(data / name))],
        env=run_env(prefix),
        capture_output=True,
        text=True,
        check=True,
    )


def timed_load(data: Path, prefix: str) -> tuple[int, float]:
    """Load the data set under `prefix`; return (polls, seconds)."""
    started = time.perf_counter()
    run = load(data, prefix)
    elapsed = time.perf_counter() - started
    line = next(line for line in run.stderr.splitlines() if "store_status.csv:" in line)
    polls = int(line.split(" rows,")[0].rsplit(" ", 1)[-1])
    return polls, elapsed


def produce_record_per_poll(data: Path, prefix: str) -> int:
    """Every poll as a record of its own (schemas/status-observation), the way a
    producer polling one store at a time sends them; hours and zones as `load` does."""
    load(data, prefix, status=False)
    settings = replace(Settings.from_env(), topic_prefix=prefix)
    polls = read_status_csv(data / "store_status.csv").data
    producer = make_producer(settings)
    topic = settings.topic(TOPIC_STATUS)
    for index, timestamp_us, active in zip(
        polls.store_index.tolist(), polls.timestamp_us.tolist(), polls.active.tolist(), strict=True
    ):
        store = polls.store_ids[index]
        status = "active" if active else "inactive"
        value = encode_poll(Poll(store, timestamp_us, status))
        while True:
            try:
                producer.produce(topic, value, store.encode())
                break
            except BufferError:  # local queue full: let deliveries drain it
                producer.poll(0.05)
    if producer.flush(120):
        raise RuntimeError("polls still undelivered after 120 s")
    return len(polls.timestamp_us)


def produce_partition_batches(data: Path, prefix: str) -> int:
    """Every poll sent on its own through the producer helper (storemon.producer), in time
    order as pollers send them (so a batch holds one poll each of hundreds of stores):
    partition batches of 500 polls. Hours and zones as `load` does."""
    load(data, prefix, status=False)
    settings = replace(Settings.from_env(), topic_prefix=prefix)
    polls = read_status_csv(data / "store_status.csv").data
    order = np.argsort(polls.timestamp_us, kind="stable")
    stores, stamps = polls.store_index[order].tolist(), polls.timestamp_us[order].tolist()
    actives = polls.active[order].tolist()
    with PollProducer(settings) as producer:
        for index, timestamp_us, active in zip(stores, stamps, actives, strict=True):
            producer.send(
                Poll(polls.store_ids[index], timestamp_us, "active" if active else "inactive")
            )
        delivery = producer.flush(120)
    if delivery.failed or delivery.first_error:
        raise RuntimeError(f"polls not delivered: {delivery}")
    return len(stamps)


def absorb(prefix: str, workers: int, polls: int) -> tuple[float, float, int]:
    """Start `workers` workers; return (seconds to zero lag, polls/s once consuming, peak RSS)."""
    env = run_env(prefix)
    settings = replace(Settings.from_env(), topic_prefix=prefix)
    started = time.perf_counter()
    processes = [
        subprocess.Popen(
            [*STOREMON, "worker"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        for _ in range(workers)
    ]
    peak_rss = 0
    # Lag counts records, and a record carries a batch of one store's polls:
    # progress in polls is the share of records read times the polls.
    first_progress: tuple[float, float] | None = None
    try:
        while True:
            rows = [row for row in consumer_lag(settings) if row.group.endswith("storemon-worker")]
            records = sum(row.end for row in rows if row.topic.endswith("store-status"))
            read = sum(row.end - row.lag for row in rows if row.topic.endswith("store-status"))
            lag = sum(row.lag for row in rows)
            now = time.perf_counter()
            peak_rss = max(
                peak_rss, sum(psutil.Process(p.pid).memory_info().rss for p in processes)
            )
            if first_progress is None and read > 0:
                first_progress = (now, read / records)
            if lag == 0 and records and read == records:
                break
            if any(p.poll() is not None for p in processes):
                raise RuntimeError("a worker exited")
            time.sleep(0.5)
    finally:
        for process in processes:
            process.terminate()
        for process in processes:
            process.wait(60)
    assert first_progress is not None
    since, share_read_then = first_progress
    rate = polls * (1 - share_read_then) / max(now - since, 1e-9)
    return now - started, rate, peak_rss


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument(
        "--stores",
        type=int,
        default=2000,
        help="stores in the generated data set (14000 = Loop scale)",
    )
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--data", type=Path, help="an existing `storemon generate` folder")
    sending = parser.add_mutually_exclusive_group()
    sending.add_argument(
        "--single-polls",
        action="store_true",
        help="every poll sent on its own, in time order, through storemon.producer (which"
        " sends partition batches), instead of `storemon load`'s batches of a store's polls",
    )
    sending.add_argument(
        "--record-per-poll",
        action="store_true",
        help="every poll sent on its own as one record (what a producer without"
        " storemon.producer may do)",
    )
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as scratch:
        data = args.data or generate(Path(scratch), args.stores)
        for workers in args.workers:
            prefix = f"bench-{uuid.uuid4().hex[:8]}-"
            if args.record_per_poll:
                polls = produce_record_per_poll(data, prefix)
                print(f"produced {polls} polls, one record each", flush=True)
            elif args.single_polls:
                started = time.perf_counter()
                polls = produce_partition_batches(data, prefix)
                print(
                    f"produced {polls} polls in time order through storemon.producer in "
                    f"{time.perf_counter() - started:.1f} s (partition batches of 500)",
                    flush=True,
                )
            else:
                polls, load_s = timed_load(data, prefix)
                print(
                    f"load: {polls} polls in {load_s:.1f} s = {polls / load_s:,.0f} rows/s "
                    "(CSV parsing, validation, confirmed delivery)",
                    flush=True,
                )
            if workers == 0:  # --workers 0: the load alone
                continue
            total_s, rate, rss = absorb(prefix, workers, polls)
            print(
                f"worker x{workers}: {polls} polls to zero lag in {total_s:.1f} s "
                f"(incl. start-up): {polls / total_s:,.0f} polls/s overall; "
                f"{rate:,.0f} polls/s while consuming (from committed offsets: coarse when"
                f" records are few); peak RSS {rss / 2**20:.0f} MiB (all workers)",
                flush=True,
            )


if __name__ == "__main__":
    main()
