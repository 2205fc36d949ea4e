"""`storemon load`: bulk-produce the three CSV inputs into their topics.

Rows are validated by the same rules as every other way in (storemon/inputs.py,
storemon/events.py); bad rows go to the dead-letter topic with file, line and
reason. Nothing counts as accepted until the broker has confirmed it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from confluent_kafka import KafkaError, Message, Producer
from tqdm import tqdm

from storemon import config, events, inputs
from storemon.config import Settings
from storemon.inputs import BadRow, HoursRow
from storemon.kafka import make_producer

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

    `rows_of_key` is for records that carry several rows (a store's schedule).
    """

    def __init__(
        self, counts: FileCounts, rejected: bool, rows_of_key: dict[bytes, int] | None = None
    ) -> None:
        self.counts = counts
        self.rejected = rejected
        self.rows_of_key = rows_of_key

    def __call__(self, error: KafkaError | None, message: Message) -> None:
        rows = 1 if self.rows_of_key is None else self.rows_of_key[message.key()]
        if error is not None:
            self.counts.failed += rows
            self.counts.first_failure = self.counts.first_failure or str(error)
        elif self.rejected:
            self.counts.rejected += rows
        else:
            self.counts.accepted += rows


class Loader:
    def __init__(self, settings: Settings, progress: bool = True) -> None:
        self.settings = settings
        self.progress = progress
        self.producer: Producer = make_producer(settings)
        self.dlq_topic = settings.topic(config.TOPIC_STATUS_DLQ)

    def _produce(
        self, topic: str, key: bytes | None, value: bytes | str, on_delivery: _Deliveries
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
        records: Iterator[tuple[bytes, bytes | str]],
        bad_rows: list[BadRow],
        path: Path,
        record_count: int,
        rows_of_key: dict[bytes, int] | None = None,
    ) -> FileCounts:
        topic = self.settings.topic(counts.topic)
        accepted = _Deliveries(counts, rejected=False, rows_of_key=rows_of_key)
        rejected = _Deliveries(counts, rejected=True)
        raw_lines = _lines(path, {row.line for row in bad_rows})
        for row in bad_rows:
            value = events.dlq_record(
                str(path), row.line, row.field, row.reason, raw_lines.get(row.line)
            )
            self._produce(self.dlq_topic, None, value, rejected)
        with tqdm(
            total=record_count,
            desc=path.name,
            unit=" rows",
            disable=not self.progress,
            file=sys.stderr,
            mininterval=0.5,
        ) as bar:
            pending = 0
            for key, value in records:
                self._produce(topic, key, value, accepted)
                pending += 1
                if pending == _POLL_EVERY:
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
        result = inputs.read_status_csv(path)
        data = result.data
        counts = FileCounts(str(path), config.TOPIC_STATUS, rows=result.rows_read)
        received_at = events.now_us()
        too_far = np.flatnonzero(data.timestamp_us > received_at + events.MAX_FUTURE_US)
        bad_rows = list(result.bad_rows)
        keep = np.ones(len(data.timestamp_us), dtype=bool)
        if len(too_far):
            # Line numbers of accepted rows are not kept by the reader; name the store
            # and time instead, which identifies the row as well.
            for row in too_far:
                store = data.store_ids[data.store_index[row]]
                bad_rows.append(
                    BadRow(
                        str(path),
                        0,
                        "timestamp_utc",
                        f"store {store}: {inputs.format_timestamp(int(data.timestamp_us[row]))}"
                        " is more than a day in the future",
                    )
                )
            keep[too_far] = False
        store_json = [json.dumps(store) for store in data.store_ids]
        store_keys = [store.encode() for store in data.store_ids]
        stamps = np.datetime_as_string(data.timestamp_us.astype("datetime64[us]"), unit="us")

        def records() -> Iterator[tuple[bytes, str]]:
            # Formatting by hand: json.dumps per row would halve the throughput.
            for index, stamp, active, kept in zip(
                data.store_index.tolist(),
                stamps.tolist(),
                data.active.tolist(),
                keep.tolist(),
                strict=True,
            ):
                if kept:
                    yield (
                        store_keys[index],
                        (
                            f'{{"store_id":{store_json[index]},"timestamp_utc":"{stamp}Z",'
                            f'"status":"{"active" if active else "inactive"}"}}'
                        ),
                    )

        return self._send_all(counts, records(), bad_rows, path, int(keep.sum()))

    def load_hours(self, path: Path) -> FileCounts:
        result = inputs.read_hours_csv(path)
        data = result.data
        counts = FileCounts(str(path), config.TOPIC_HOURS, rows=result.rows_read)
        schedules: dict[str, list[HoursRow]] = {}
        for store, day, start, end in zip(
            data.store_id.tolist(),
            data.day.tolist(),
            data.start_us.tolist(),
            data.end_us.tolist(),
            strict=True,
        ):
            schedules.setdefault(store, []).append(HoursRow(store, day, start, end))

        def records() -> Iterator[tuple[bytes, bytes]]:
            for store, rows in schedules.items():
                yield store.encode(), events.encode_schedule(store, rows)

        # One record per store carries all its rows: count the rows it delivers.
        rows_of_store = {store.encode(): len(rows) for store, rows in schedules.items()}
        return self._send_all(
            counts, records(), result.bad_rows, path, len(schedules), rows_of_store
        )

    def load_timezones(self, path: Path) -> FileCounts:
        result = inputs.read_timezones_csv(path)
        data = result.data
        counts = FileCounts(str(path), config.TOPIC_TIMEZONES, rows=result.rows_read)

        def records() -> Iterator[tuple[bytes, bytes]]:
            for store, zone in zip(data.store_id.tolist(), data.timezone_str.tolist(), strict=True):
                yield store.encode(), events.encode_zone(store, zone)

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
