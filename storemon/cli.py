"""The `storemon` console script: one argparse parser, one thin handler per subcommand.

To add a subcommand, write its handler `_<name>(args) -> int` (which calls into a module),
whose docstring is the command's help (first line) and description (the rest), and an
`_add_<name>(subcommands)` that declares its options on `_command(subcommands,
_<name>)`; list that in `_PARSER_BUILDERS`. Handlers import what they need when they run, so a
command pays only for its own imports (`report-csv` never imports pandas or Kafka).

Errors the user can act on (a missing file, a bad row in `--strict` mode, a bad
argument) are printed as one line on stderr with exit status 1; argparse usage errors
exit with 2.
"""
from __future__ import annotations

import argparse
import contextlib
import ctypes
import ctypes.util
import functools
import importlib
import inspect
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from storemon.config import Settings, SettingsError
from storemon.observability.logs import log_level

if TYPE_CHECKING:
    from storemon.inputs.csv_files import BadRow

PROG = "storemon"
#: Exit status of a command refused for an invalid setting: a usage error, like argparse's.
SETTINGS_ERROR_STATUS = 2
#: At most this many bad rows are listed per file; the rest are counted.
_BAD_ROWS_SHOWN = 10
# glibc mallopt(3) parameters.
_M_TRIM_THRESHOLD = -1
_M_MMAP_MAX = -4


class CommandError(Exception):
    """A failure to report to the user as one line, without a traceback."""


def _say(message: str) -> None:
    print(f"{PROG}: {message}", file=sys.stderr)


# ---------------------------------------------------------------------------------------
# report-csv
# ---------------------------------------------------------------------------------------


def _add_report_csv(subcommands: Any) -> None:
    parser = _command(subcommands, _report_csv)
    parser.add_argument("--status", required=True, type=Path, metavar="F",
                        help="status polls: store_id,status,timestamp_utc")
    parser.add_argument("--hours", required=True, type=Path, metavar="F",
                        help="business hours: store_id,day|dayOfWeek,start_time_local,"
                             "end_time_local")
    parser.add_argument("--timezones", required=True, type=Path, metavar="F",
                        help="store zones: store_id,timezone_str")
    parser.add_argument("--as-of", metavar="T",
                        help="the report's instant (ISO-8601 or Loop form); "
                             "default: the latest poll")
    parser.add_argument("-o", "--output", type=Path, metavar="OUT",
                        help="write the CSV here instead of to standard output")
    parser.add_argument("--strict", action="store_true",
                        help="fail on the first bad input row instead of skipping it")


def tune_memory_for_batch() -> None:
    """Make a one-shot batch process reuse the memory it frees instead of paging in more.

    glibc maps arrays over 32 MB afresh and unmaps them on free, so at Loop scale and
    beyond each large temporary costs more in page faults than in arithmetic (and the
    time stopped growing linearly with the data). numpy's transparent-huge-page advice
    made every first touch ~6x slower where the kernel compacts memory synchronously.
    Neither change suits long-running services, so only batch commands call this; it does
    nothing in a process that has imported numpy already (tests, embedding).
    """
    if "numpy" in sys.modules:
        return
    os.environ.setdefault("NUMPY_MADVISE_HUGEPAGE", "0")
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc: nothing to tune
        return
    mallopt(_M_MMAP_MAX, 0)
    mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)


def _report_csv(args: argparse.Namespace) -> int:
    """the uptime report from CSV files, without any service

    Compute the store uptime report (report-semantics.md) from CSV files.
    """
    tune_memory_for_batch()
    from storemon.inputs.csv_files import (
        InputFileError,
        read_hours_csv,
        read_status_csv,
        read_timezones_csv,
    )
    from storemon.inputs.values import RowError, parse_timestamp
    from storemon.timebase import format_timestamp
    from storemon.uptime import engine

    as_of = None
    if args.as_of is not None:
        try:
            as_of = parse_timestamp(args.as_of)
        except RowError as exc:
            raise CommandError(f"--as-of: {exc.reason}") from None
    try:
        status = read_status_csv(args.status, strict=args.strict)
        hours = read_hours_csv(args.hours, strict=args.strict)
        timezones = read_timezones_csv(args.timezones, strict=args.strict)
    except InputFileError as exc:
        raise CommandError(str(exc)) from None
    for result in (status, hours, timezones):
        _report_bad_rows(result.bad_rows)
    report = engine.compute(status.data, hours.data, timezones.data, as_of=as_of)
    csv_bytes = report.to_csv_bytes()
    if args.output is None:
        sys.stdout.buffer.write(csv_bytes)
        sys.stdout.flush()
    else:
        _write_atomically(args.output, csv_bytes)
        as_of_text = "-" if report.as_of_us is None else format_timestamp(report.as_of_us)
        _say(f"wrote {args.output}: {len(report)} stores, as of {as_of_text}")
    return 0


def _report_bad_rows(bad_rows: Sequence[BadRow]) -> None:
    for bad in bad_rows[:_BAD_ROWS_SHOWN]:
        _say(f"skipped bad row: {bad}")
    if bad_rows:
        more = len(bad_rows) - _BAD_ROWS_SHOWN
        extra = f" ({more} more not shown)" if more > 0 else ""
        _say(f"skipped {len(bad_rows)} bad rows in {bad_rows[0].file}{extra}")


def _write_atomically(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so a reader never sees half a report."""
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        temporary.write_bytes(data)
        temporary.replace(path)
    except OSError as exc:
        raise CommandError(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        temporary.unlink(missing_ok=True)


# ---------------------------------------------------------------------------------------
# generate
# ---------------------------------------------------------------------------------------


def _add_generate(subcommands: Any) -> None:
    parser = _command(subcommands, _generate)
    parser.add_argument("--out", required=True, type=Path, metavar="DIR")
    parser.add_argument("--scale", type=float, default=1.0, metavar="F",
                        help="multiply the default 14,000 stores (default 1)")
    parser.add_argument("--stores", type=int, metavar="N", help="exact number of stores")
    parser.add_argument("--seed", type=int, default=0, metavar="S")
    parser.add_argument("--sample", action="store_true",
                        help="the small sample set that `storemon up --sample` loads")
    parser.add_argument("--synthetic", action="store_true",
                        help="generate every store's hours and zone, even with Loop data")


def _generate(args: argparse.Namespace) -> int:
    """write a synthetic data set (benchmark scale or the small sample)

    Write store_status.csv, menu_hours.csv and timezones.csv to a folder: the real
    Loop stores' hours and zones when ../shared/data/loop-2023 exists, with 8 days
    of generated polls. Deterministic by seed.
    """
    from storemon.timebase import format_timestamp
    from storemon.tools import generator

    if args.scale <= 0:
        raise CommandError("--scale must be positive")
    if args.sample:
        dataset = generator.generate_sample(args.out, seed=args.seed, synthetic=args.synthetic)
    else:
        dataset = generator.generate_dataset(
            args.out, stores=args.stores, scale=args.scale, seed=args.seed,
            synthetic=args.synthetic,
        )
    _say(
        f"wrote {dataset.directory}: {dataset.stores} stores, {dataset.status_rows} polls "
        f"({format_timestamp(dataset.first_poll_us)} to {format_timestamp(dataset.last_poll_us)}),"
        f" {dataset.hours_rows} hours rows, {dataset.timezone_rows} zone rows; "
        f"stores from {dataset.source}"
    )
    return 0


# ---------------------------------------------------------------------------------------
# services: create-topics, load, worker, lag
# ---------------------------------------------------------------------------------------


def _add_loglevel(parser: argparse.ArgumentParser) -> None:
    """`--loglevel` of a service; its logs are JSON lines on stderr (storemon/logs.py)."""
    parser.add_argument("--loglevel", type=log_level, metavar="LEVEL",
                        help="debug, info, warning or error (default: STOREMON_LOG_LEVEL, "
                             "else info)")


def _loglevel(args: argparse.Namespace, settings: Settings) -> str:
    """The service's log level: --loglevel, else the setting."""
    return str(args.loglevel or settings.log_level)


def _add_create_topics(subcommands: Any) -> None:
    parser = _command(subcommands, _create_topics)
    parser.add_argument("--dry-run", action="store_true",
                        help="print the topics it would create, one a line, and create none")


def _create_topics(args: argparse.Namespace) -> int:
    """create the deployment's topics (idempotent)

    Create the topics of system.md with their cleanup policies, named with
    STOREMON_TOPIC_PREFIX; partitions and replication from STOREMON_TOPIC_PARTITIONS
    / STOREMON_TOPIC_REPLICATION. Whatever STOREMON_CREATE_TOPICS says: this is the
    command that creates them.
    """
    from storemon.kafka.topics import ensure_topics, missing_topics

    settings = Settings.from_env()
    if args.dry_run:
        with _kafka_errors(settings):
            missing = missing_topics(settings)
        for topic in missing:
            configs = " ".join(f"{key}={value}" for key, value in sorted(topic.config.items()))
            print(
                f"{topic.topic} partitions={topic.num_partitions} "
                f"replication={topic.replication_factor} {configs}"
            )
        _say(
            f"dry run: would create {len(missing)} topics, created none"
            if missing else "dry run: all topics already exist"
        )
        return 0
    with _kafka_errors(settings):
        created = ensure_topics(settings)
    _say(f"created {', '.join(created)}" if created else "all topics already exist")
    return 0


def _add_load(subcommands: Any) -> None:
    parser = _command(subcommands, _load)
    parser.add_argument("--status", type=Path, metavar="F", help="status polls CSV")
    parser.add_argument("--hours", type=Path, metavar="F", help="business hours CSV")
    parser.add_argument("--timezones", type=Path, metavar="F", help="store zones CSV")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")


def _load(args: argparse.Namespace) -> int:
    """bulk-produce CSV files into the input topics

    Validate CSV rows and produce them keyed by store_id: polls to store-status,
    each store's whole schedule to store-hours, zones to store-timezones. Bad rows
    go to store-status-dlq with file, line and reason. Exits non-zero if any
    delivery failed.
    """
    from storemon.ingest.load import load_files
    from storemon.inputs.csv_files import InputFileError

    if args.status is None and args.hours is None and args.timezones is None:
        raise CommandError("give at least one of --status, --hours, --timezones")
    settings = Settings.from_env()
    _prepare_topics(settings)
    try:
        results = load_files(
            settings, args.status, args.hours, args.timezones, progress=not args.no_progress,
            report=_say,
        )
    except InputFileError as exc:
        raise CommandError(str(exc)) from None
    failed = sum(counts.failed for counts in results)
    if failed:
        _say(f"error: {failed} rows were not delivered")
        return 1
    _say("done: every accepted and rejected row is confirmed by the broker")
    return 0


def _prepare_topics(settings: Settings) -> None:
    """Reach the cluster, then create the missing topics, or with
    STOREMON_CREATE_TOPICS=false check them: a problem ends the command with one line."""
    from storemon.kafka.topics import prepare_topics

    with _kafka_errors(settings):
        prepare_topics(settings)


def _reach_kafka(settings: Settings) -> None:
    """Return once the cluster answers; a refused login or certificate, or no answer,
    ends the command with one line within seconds."""
    from storemon.kafka.clients import KafkaUnreachable, verify_connection

    try:
        verify_connection(settings)
    except KafkaUnreachable as exc:
        raise CommandError(str(exc)) from None


@contextmanager
def _kafka_errors(settings: Settings) -> Iterator[None]:
    """The cluster reached first (`_reach_kafka`); a TopicError (topics not as storemon
    needs them) ends the command with its line."""
    from storemon.kafka.topics import TopicError

    _reach_kafka(settings)
    try:
        yield
    except TopicError as exc:
        raise CommandError(str(exc)) from None


def _command(
    subcommands: Any, handler: Callable[[argparse.Namespace], int]
) -> argparse.ArgumentParser:
    """The parser of the subcommand `handler` runs, declared by the handler itself.

    Its name is the handler's without the leading underscore, `_` read as `-`; its help
    is the first line of the handler's docstring and its description the rest.
    """
    summary, _, description = inspect.cleandoc(handler.__doc__ or "").partition("\n\n")
    name = handler.__name__.lstrip("_").replace("_", "-")
    return _subcommand(subcommands, name, handler, summary, " ".join(description.split()))


def _subcommand(
    subcommands: Any,
    name: str,
    handler: Callable[[argparse.Namespace], int],
    summary: str,
    description: str,
) -> argparse.ArgumentParser:
    """A subcommand's parser, run by `handler(args)`."""
    parser: argparse.ArgumentParser = subcommands.add_parser(
        name, help=summary, description=description
    )
    parser.set_defaults(handler=handler)
    return parser


@dataclass(frozen=True)
class Service:
    """A long-running service subcommand: where its `run(settings, loglevel)` lives."""

    name: str
    module: str
    function: str
    help: str
    description: str


SERVICES = (
    Service(
        "worker", "storemon.ingest.worker", "run_worker",
        "run a Faust worker keeping per-store state",
        "Consume store-status, store-hours and store-timezones into changelog-backed "
        "per-store tables. Run several to share partitions.",
    ),
    Service(
        "reporter", "storemon.reporter.service", "run_reporter",
        "run a reporter turning report requests into CSVs in PostgreSQL",
        "Consume report-requests in the reporter group, compute each report from the "
        "workers' state and store it as a large object. Run several to share the work; a "
        "request whose reporter dies is redone by another.",
    ),
    Service(
        "api", "storemon.api.app", "run_api",
        "run the HTTP API (reports, ingest, health, metrics)",
        "Serve the HTTP API of system.md on STOREMON_API_HOST:STOREMON_API_PORT.",
    ),
)


def _add_services(subcommands: Any) -> None:
    for service in SERVICES:
        parser = _subcommand(
            subcommands, service.name, functools.partial(_run_service, service), service.help,
            service.description,
        )
        _add_loglevel(parser)


#: glibc's mallopt parameter for the most malloc arenas (malloc.h's M_ARENA_MAX).
_M_ARENA_MAX = -8


def _few_malloc_arenas() -> None:
    """At most two glibc malloc arenas, as MALLOC_ARENA_MAX=2 would: by default each thread
    that allocates (librdkafka's, the changelog readers') may get one of up to 8 per core,
    and an owner of 56,000 stores then kept ~130 MiB more (BENCHMARKS.md). Every service:
    they all run librdkafka's threads. Not glibc: no-op."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6").mallopt(_M_ARENA_MAX, 2)


def _run_service(service: Service, args: argparse.Namespace) -> int:
    _few_malloc_arenas()  # before any thread starts
    # Imported here: each command pays only for its own imports.
    run = getattr(importlib.import_module(service.module), service.function)
    settings = Settings.from_env()
    from storemon.kafka.topics import prepare_topics

    # The worker checks its input topics are co-partitioned as it starts, too.
    with _kafka_errors(settings):
        prepare_topics(settings)
        run(settings, loglevel=_loglevel(args, settings))
    return 0


def _add_lag(subcommands: Any) -> None:
    parser = _command(subcommands, _lag)
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--watch", type=float, nargs="?", const=2.0, metavar="SECONDS",
                        help="refresh in place every SECONDS (default 2) until Ctrl-C")
    parser.add_argument("--max-lag", type=int, metavar="N",
                        help="exit with status 3 when the total lag exceeds N")


def _lag(args: argparse.Namespace) -> int:
    """consumer lag per group, topic and partition, with who consumes it

    For every consumer group of the deployment (worker, reporter): the group's state,
    and per topic partition the committed offset, end offset, lag in records, lag in
    seconds (how long the oldest record not yet consumed has waited) and the member
    that owns it (client id and host; a worker's is storemon-worker@HOST:PID). A
    group that has committed nothing yet counts its whole backlog.
    """
    import json
    import time

    from storemon.kafka.lag import consumer_lag, lag_as_json, lag_as_table

    settings = Settings.from_env()
    _reach_kafka(settings)
    while True:
        rows = consumer_lag(settings, details=True)
        text = json.dumps(lag_as_json(rows)) if args.json else lag_as_table(rows)
        if args.watch and sys.stdout.isatty():
            print("\x1b[H\x1b[2J", end="")  # home + clear: refresh in place
        print(text, flush=True)
        total = sum(row.lag for row in rows)
        if args.max_lag is not None and total > args.max_lag:
            _say(f"total lag {total} exceeds --max-lag {args.max_lag}")
            return 3
        if not args.watch:
            return 0
        time.sleep(args.watch)


def _add_up(subcommands: Any) -> None:
    parser = _command(subcommands, _up)
    parser.add_argument("--sample", action="store_true",
                        help="also generate and load the sample data set")
    parser.add_argument("--workers", type=_at_least_one, default=1, metavar="N",
                        help="worker processes (default 1); each serves /metrics on its own "
                             "port from STOREMON_WORKER_METRICS_PORT up")
    parser.add_argument("--reporters", type=_at_least_one, default=1, metavar="M",
                        help="reporter processes (default 1); each serves /metrics on its own "
                             "port from STOREMON_REPORTER_METRICS_PORT up")


def _at_least_one(text: str) -> int:
    """An argparse type: an integer of at least 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _up(args: argparse.Namespace) -> int:
    """run the whole stack locally (servers, topics, workers, reporters, API)

    Start Kafka and PostgreSQL from deploy/local unless KAFKA_BOOTSTRAP_SERVERS /
    DATABASE_URL name running ones, create the topics, run the workers, the
    reporters and the API, and print the API URL and each worker's and reporter's
    metrics port. Ctrl-C or SIGTERM stops everything it started.
    """
    import subprocess

    from storemon.tools.stack import StackError, run_stack

    try:
        return run_stack(
            Settings.from_env(), sample=args.sample, workers=args.workers, reporters=args.reporters
        )
    except (StackError, subprocess.CalledProcessError) as exc:
        raise CommandError(str(exc)) from None


def _add_store(subcommands: Any) -> None:
    parser = _command(subcommands, _store)
    parser.add_argument("store_id", metavar="STORE_ID")
    parser.add_argument("--as-of", metavar="TIME", help="answer for this instant (default: now)")
    parser.add_argument("--polls", action="store_true",
                        help="list the polls held for the store instead, oldest first")
    parser.add_argument("--since", metavar="TIME", help="with --polls: from this instant on")
    parser.add_argument("--until", metavar="TIME", help="with --polls: before this instant")
    parser.add_argument("--json", action="store_true", help="print the API's JSON")


def _store(args: argparse.Namespace) -> int:
    """one store now: latest poll, business hours and its six figures, live

    Ask the API (STOREMON_API_URL, default http://127.0.0.1:STOREMON_API_PORT; token from
    STOREMON_API_TOKEN or STOREMON_API_TOKEN_FILE) for GET /stores/STORE_ID, which the
    worker owning the store's partition answers from its state; with --polls, for the
    polls it holds (every page).
    """
    import json

    from storemon.client import ApiCallError, SyncClient
    from storemon.tools.store_query import describe

    try:
        with SyncClient.from_settings(Settings.from_env()) as api:
            if args.polls:
                for poll in api.store_polls(args.store_id, args.since, args.until):
                    print(json.dumps(poll) if args.json else " ".join(poll.values()))
                return 0
            answer = api.store(args.store_id, args.as_of)
    except ApiCallError as exc:
        raise CommandError(str(exc)) from None
    print(json.dumps(answer, indent=2) if args.json else describe(answer))
    return 0


#: `storemon report --wait`: the report ended Failed; it did not end within --timeout.
REPORT_FAILED_STATUS = 3
REPORT_TIMEOUT_STATUS = 4


def _add_report(subcommands: Any) -> None:
    parser = _command(subcommands, _report)
    parser.add_argument("--as-of", metavar="TIME", help="the report's as_of (default: the "
                        "newest poll)")
    parser.add_argument("--store", action="append", metavar="ID", dest="stores",
                        help="only this store (repeat for more)")
    parser.add_argument("--wait", action="store_true",
                        help="wait until it ends, showing its status as it goes")
    parser.add_argument("-o", "--output", type=Path, metavar="FILE",
                        help="save the CSV there once Complete (implies --wait)")
    parser.add_argument("--timeout", type=float, default=600.0, metavar="S",
                        help="give up waiting after S seconds (default 600)")


def _report(args: argparse.Namespace) -> int:
    """trigger a report through the API, wait for it and save its CSV

    Ask the API (STOREMON_API_URL; token STOREMON_API_TOKEN(_FILE)) for a report and
    print its id. With --wait or -o, follow its status live (Server-Sent Events) on
    stderr until it ends; Complete: save the CSV to -o FILE (else print its summary),
    exit 0; Failed: exit 3 with its error; not ended within --timeout: exit 4.
    """
    import json
    import time

    from storemon.client import ApiCallError, ReportFailed, SyncClient

    started = time.monotonic()
    progress = sys.stderr.isatty()

    def show(status: dict[str, Any]) -> None:
        line = f"{status['report_id']}: {status['status']} after {time.monotonic() - started:.1f} s"
        if progress:
            print(f"\r{line}", end="" if status["status"] == "Running" else "\n",
                  file=sys.stderr, flush=True)

    try:
        with SyncClient.from_settings(Settings.from_env()) as api:
            report_id = api.trigger(args.as_of, args.stores)
            print(report_id, flush=True)
            if not (args.wait or args.output):
                return 0
            try:
                final = api.wait(report_id, args.timeout, show)
            except ReportFailed as failed:
                _say(f"error: report {report_id} failed: {failed.status.get('error')}")
                return REPORT_FAILED_STATUS
            except TimeoutError:
                _say(f"error: report {report_id} did not end within {args.timeout:g} s")
                return REPORT_TIMEOUT_STATUS
            if args.output is not None:
                size = api.download(report_id, args.output)
                _say(f"saved {final['rows']:,} rows ({size:,} bytes) to {args.output}")
            else:
                print(json.dumps(final, indent=2))
    except ApiCallError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _add_reports(subcommands: Any) -> None:
    parser = _command(subcommands, _reports)
    actions = parser.add_subparsers(title="actions", dest="action", metavar="ACTION",
                                    required=True)
    listing = actions.add_parser("list", help="reports, newest first")
    listing.add_argument("--status", choices=["Running", "Complete", "Failed"])
    listing.add_argument("--since", metavar="TIME", help="requested at or after TIME")
    listing.add_argument("--limit", type=_at_least_one, default=20, metavar="N",
                         help="at most N reports (default 20)")
    listing.add_argument("--json", action="store_true", help="one JSON object a line")
    delete = actions.add_parser("delete", help="delete a report and its CSV (admin scope)")
    delete.add_argument("report_id", metavar="REPORT_ID")
    rows = actions.add_parser("rows", help="some stores' rows of a Complete report")
    rows.add_argument("report_id", metavar="REPORT_ID")
    rows.add_argument("--store", action="append", metavar="ID", dest="stores", required=True,
                      help="a store (repeat for more)")


def _reports(args: argparse.Namespace) -> int:
    """list reports, delete one, or read some stores' rows of one

    Through the API (STOREMON_API_URL; token STOREMON_API_TOKEN(_FILE)).
    """
    import itertools
    import json

    from storemon.client import ApiCallError, SyncClient

    try:
        with SyncClient.from_settings(Settings.from_env()) as api:
            if args.action == "list":
                listed = api.reports(args.status, args.since, min(args.limit, 1000))
                for report in itertools.islice(listed, args.limit):
                    if args.json:
                        print(json.dumps(report))
                        continue
                    rows = report.get("rows")
                    print(f"{report['report_id']}  {report['status']:<8}  "
                          f"requested {report['requested_at']}"
                          + ("" if rows is None else f"  {rows:,} rows"))
            elif args.action == "delete":
                api.delete(args.report_id)
                _say(f"deleted {args.report_id}")
            else:
                for row in api.rows(args.report_id, args.stores):
                    print(json.dumps(row))
    except ApiCallError as exc:
        raise CommandError(str(exc)) from None
    return 0


def _add_health(subcommands: Any) -> None:
    _command(subcommands, _health)


def _health(args: argparse.Namespace) -> int:
    """exit 0 if the service beside it answers /healthz (for container health checks)

    Ask http://127.0.0.1:PORT/healthz on the API's, the reporter's and the worker's ports
    (STOREMON_API_PORT, STOREMON_REPORTER_METRICS_PORT, STOREMON_WORKER_METRICS_PORT):
    healthy when one answers 200, else exit status 1 and one line saying what each
    port answered.
    """
    from storemon.observability.probe import probe

    result = probe(Settings.from_env())
    if not result.healthy:
        raise CommandError(f"unhealthy: {result.detail}")
    print(result.detail)
    return 0


# ---------------------------------------------------------------------------------------
# main
# ---------------------------------------------------------------------------------------

_PARSER_BUILDERS: tuple[Callable[[Any], None], ...] = (
    _add_report_csv,
    _add_generate,
    _add_create_topics,
    _add_load,
    _add_services,
    _add_lag,
    _add_up,
    _add_store,
    _add_report,
    _add_reports,
    _add_health,
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=PROG, description="Store uptime reports.")
    subcommands = parser.add_subparsers(title="commands", metavar="COMMAND")
    for add in _PARSER_BUILDERS:
        add(subcommands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; returns the process exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:
        parser.print_help(sys.stderr)
        return 2
    try:
        return int(handler(args))
    except SettingsError as exc:
        _say(f"error: {exc}")
        return SETTINGS_ERROR_STATUS
    except CommandError as exc:
        _say(f"error: {exc}")
    except OSError as exc:
        where = f": {exc.filename}" if exc.filename else ""
        _say(f"error: {exc.strerror or exc}{where}")
    except ValueError as exc:  # e.g. an unknown zone handed to the engine
        _say(f"error: {exc}")
    except KeyboardInterrupt:
        return 130
    return 1


if __name__ == "__main__":
    raise SystemExit(main())
