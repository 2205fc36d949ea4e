"""`storemon load`: bulk-produce the three CSV inputs into their topics.

Rows are validated by the same rules as every other way in (storemon/inputs/values.py,
storemon/messages/); bad rows go to the dead-letter topic with file, line and
reason. Nothing counts as accepted until the broker has confirmed it. Polls
go out as batches of one store's polls (schemas/status-batch.schema.json), so
a worker handles a store's day of polls as one event.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import KafkaError, Message, Producer
from tqdm import tqdm

from storemon.config import Settings
from storemon.inputs.csv_files import BadRow, read_hours_csv, read_status_csv, read_timezones_csv
from storemon.inputs.values import HoursRow
from storemon.kafka.clients import make_producer
from storemon.kafka.topics import TOPIC_HOURS, TOPIC_STATUS, TOPIC_STATUS_DLQ, TOPIC_TIMEZONES
from storemon.messages.dead_letters import dlq_record
from storemon.messages.polls import MAX_BATCH_POLLS, MAX_FUTURE_US, encode_poll_batch
from storemon.messages.schedules import encode_schedule
from storemon.messages.zones import encode_zone
from storemon.timebase import now_us

#: How often (rows) the producer is polled for delivery reports and the bar redrawn.
_POLL_EVERY = 20_000


@dataclass
class FileCounts:
    """What became of one input file's rows."""

    file: str
    topic: str
    rows: int = 0
    accepted: int = 0
    rejected: int = 0
    failed: int = 0
    first_failure: str | None = None

    def __str__(self) -> str:
        text = (
            f"{self.file}: {self.rows} rows, {self.accepted} accepted into {self.topic}, "
            f"{self.rejected} rejected to the dead-letter topic"
        )
        if self.failed:
            text += f", {self.failed} NOT DELIVERED (first error: {self.first_failure})"
        return text


class _Deliveries:
    """Counts the broker's delivery reports for one file's rows.

    `delivers(rows)` is the callback of one record carrying `rows` rows (a
    batch of a store's polls, a store's schedule).
    """

    def __init__(self, counts: FileCounts, rejected: bool) -> None:
        self.counts = counts
        self.rejected = rejected

    def delivers(self, rows: int) -> Callable[[KafkaError | None, Message], None]:
        def on_delivery(error: KafkaError | None, _message: Message) -> None:
            if error is not None:
                self.counts.failed += rows
                self.counts.first_failure = self.counts.first_failure or str(error)
            elif self.rejected:
                self.counts.rejected += rows
            else:
                self.counts.accepted += rows

        return on_delivery


class Loader:
    def __init__(self, settings: Settings, progress: bool = True) -> None:
        self.settings = settings
        self.progress = progress
        self.producer: Producer = make_producer(settings)
        self.dlq_topic = settings.topic(TOPIC_STATUS_DLQ)

    def _produce(
        self,
        topic: str,
        key: bytes | None,
        value: bytes | str,
        on_delivery: Callable[[KafkaError | None, Message], None],
    ) -> None:
        while True:
            try:
                self.producer.produce(topic, value, key, on_delivery=on_delivery)
                return
            except BufferError:
                # Local queue full: wait for deliveries to drain it (backpressure).
                self.producer.poll(0.05)

    def _send_all(
        self,
        counts: FileCounts,
        records: Iterator[tuple[bytes, bytes | str, int]],
        bad_rows: list[BadRow],
        path: Path,
        row_count: int,
    ) -> FileCounts:
        """Produce (key, value, rows it carries) records, and dead-letter `bad_rows`."""
        topic = self.settings.topic(counts.topic)
        accepted = _Deliveries(counts, rejected=False)
        rejected = _Deliveries(counts, rejected=True)
        raw_lines = _lines(path, {row.line for row in bad_rows})
        for row in bad_rows:
            value = dlq_record(
                str(path), row.line, row.field, row.reason, raw_lines.get(row.line)
            )
            self._produce(self.dlq_topic, None, value, rejected.delivers(1))
        with tqdm(
            total=row_count,
            desc=path.name,
            unit=" rows",
            disable=not self.progress,
            file=sys.stderr,
            mininterval=0.5,
        ) as bar:
            pending = 0
            for key, value, rows in records:
                self._produce(topic, key, value, accepted.delivers(rows))
                pending += rows
                if pending >= _POLL_EVERY:
                    self.producer.poll(0)
                    bar.update(pending)
                    pending = 0
            bar.update(pending)
            self._flush()
        return counts

    def _flush(self) -> None:
        remaining = self.producer.flush(120)
        if remaining:
            raise RuntimeError(f"{remaining} records still undelivered after 120 s")

    def load_status(self, path: Path) -> FileCounts:
        result = read_status_csv(path, latest_us=now_us() + MAX_FUTURE_US)
        data = result.data
        counts = FileCounts(str(path), TOPIC_STATUS, rows=result.rows_read)
        # One record per batch of a store's polls, in file order within the store
        # (a stable sort), so a repeated poll's later row still wins.
        order = np.argsort(data.store_index, kind="stable")
        stores = data.store_index[order]
        starts = np.flatnonzero(np.diff(stores, prepend=-1)).tolist()
        stamps = [
            f"{stamp}Z"
            for stamp in np.datetime_as_string(
                data.timestamp_us[order].astype("datetime64[us]"), unit="us"
            ).tolist()
        ]
        active = data.active[order].tolist()
        bounds = [*starts, len(order)]
        batches = zip(bounds[:-1], bounds[1:], stores[starts].tolist(), strict=True)

        def records() -> Iterator[tuple[bytes, bytes, int]]:
            for start, end, index in batches:
                store = data.store_ids[index]
                for first in range(start, end, MAX_BATCH_POLLS):
                    last = min(first + MAX_BATCH_POLLS, end)
                    polls = zip(stamps[first:last], active[first:last], strict=True)
                    value = encode_poll_batch(store, polls)
                    yield store.encode(), value, last - first

        return self._send_all(counts, records(), result.bad_rows, path, len(order))

    def load_hours(self, path: Path) -> FileCounts:
        result = read_hours_csv(path)
        data = result.data
        counts = FileCounts(str(path), TOPIC_HOURS, rows=result.rows_read)
        schedules: dict[str, list[HoursRow]] = {}
        for store, day, start, end in zip(
            data.store_id.tolist(),
            data.day.tolist(),
            data.start_us.tolist(),
            data.end_us.tolist(),
            strict=True,
        ):
            schedules.setdefault(store, []).append(HoursRow(store, day, start, end))

        def records() -> Iterator[tuple[bytes, bytes, int]]:
            # One record per store carries all its rows.
            for store, rows in schedules.items():
                yield store.encode(), encode_schedule(store, rows), len(rows)

        return self._send_all(counts, records(), result.bad_rows, path, len(data.store_id))

    def load_timezones(self, path: Path) -> FileCounts:
        result = read_timezones_csv(path)
        data = result.data
        counts = FileCounts(str(path), TOPIC_TIMEZONES, rows=result.rows_read)

        def records() -> Iterator[tuple[bytes, bytes, int]]:
            for store, zone in zip(data.store_id.tolist(), data.timezone_str.tolist(), strict=True):
                yield store.encode(), encode_zone(store, zone), 1

        return self._send_all(counts, records(), result.bad_rows, path, len(data.store_id))


def _lines(path: Path, wanted: set[int]) -> dict[int, str]:
    """The text of the given (1-based) lines of a file, for dead-letter records."""
    if not wanted:
        return {}
    found = {}
    with path.open(encoding="utf-8", errors="replace", newline="") as file:
        for number, line in enumerate(file, start=1):
            if number in wanted:
                found[number] = line.rstrip("\r\n")
                if len(found) == len(wanted):
                    break
    return found


def load_files(
    settings: Settings,
    status: Path | None,
    hours: Path | None,
    timezones: Path | None,
    progress: bool = True,
    report: Callable[[str], None] = print,
) -> list[FileCounts]:
    """Load whichever files are given; zones and hours first, so polls find them."""
    loader = Loader(settings, progress)
    results = []
    for path, load in (
        (timezones, loader.load_timezones),
        (hours, loader.load_hours),
        (status, loader.load_status),
    ):
        if path is not None:
            counts = load(Path(path))
            report(str(counts))
            results.append(counts)
    return results
