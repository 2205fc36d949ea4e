"""`storemon worker`: the Faust app that turns the input topics into per-store state.

It consumes `store-status`, `store-hours` and `store-timezones` (co-partitioned
by store_id) and writes three changelog-backed tables whose layout is defined in
storemon/state.py. Invalid records go to the dead-letter topic with the reason.
Observations fall out of state once they are older than the partition's
greatest event time minus 8 days, so state stays bounded however long it runs.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Callable
from typing import Any

import faust
from faust.types import EventT, StreamT

from storemon import config, events, prometheus
from storemon.config import Settings
from storemon.ingest.worker_metrics import WorkerMetrics
from storemon.inputs import RowError
from storemon.logs import faust_worker
from storemon.state import (
    ACTIVE,
    DAY_US,
    HORIZON_US,
    INACTIVE,
    OBSERVATIONS_TABLE,
    SCHEDULES_TABLE,
    ZONES_TABLE,
    day_of,
    decode_day,
    encode_day,
    latest_timestamp_us,
    observation_day_key,
    split_observation_day_key,
    worker_app_id,
)

log = logging.getLogger(__name__)


class EvictionIndex:
    """Which store-day keys each partition holds, by day, and its greatest event time.

    Eviction then drops whole days once they are wholly behind the horizon,
    without scanning the table. Keys are deleted in the context of an event of
    their own partition, so each tombstone lands in the right changelog
    partition. A day is dropped at most a day late, which the report ignores
    anyway (it looks at as_of - 8 days only).
    """

    def __init__(self) -> None:
        self._keys_by_day: defaultdict[int, defaultdict[int, set[bytes]]] = defaultdict(
            lambda: defaultdict(set)
        )
        self.max_timestamp_us: dict[int, int] = {}

    def add(self, partition: int, key: bytes, day: int, latest_us: int) -> None:
        """Note `key` (a store-day) in `partition`, holding polls up to `latest_us`."""
        self._keys_by_day[partition][day].add(key)
        if latest_us > self.max_timestamp_us.get(partition, latest_us - 1):
            self.max_timestamp_us[partition] = latest_us

    def cutoff_us(self, partition: int) -> int | None:
        """Observations of `partition` before this instant are out of every report."""
        latest = self.max_timestamp_us.get(partition)
        return None if latest is None else latest - HORIZON_US

    def pop_expired(self, partition: int) -> list[bytes]:
        cutoff = self.cutoff_us(partition)
        days = self._keys_by_day.get(partition)
        if cutoff is None or not days:
            return []
        expired_days = [day for day in days if (day + 1) * DAY_US <= cutoff]
        return [key for day in expired_days for key in days.pop(day)]


#: Decodes a compacted-topic record to (store_id, canonical value or None to delete).
Decoder = Callable[[bytes | None, bytes | None], tuple[str, bytes | None]]


def _canonical_schedule(key: bytes | None, value: bytes | None) -> tuple[str, bytes | None]:
    store_id, rows = events.decode_schedule(key, value)
    return store_id, None if rows is None else events.encode_schedule(store_id, rows)


def _canonical_zone(key: bytes | None, value: bytes | None) -> tuple[str, bytes | None]:
    store_id, zone = events.decode_zone(key, value)
    return store_id, None if zone is None else zone.encode()


def _faust_brokers(settings: Settings) -> list[str]:
    return [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")]


def create_app(settings: Settings) -> faust.App:
    """The worker's Faust app, its topics, tables and agents."""
    faust_dir = settings.state_dir / "faust"
    faust_dir.mkdir(parents=True, exist_ok=True)
    app = faust.App(
        worker_app_id(settings),
        broker=_faust_brokers(settings),
        store="memory://",
        # Faust keeps a per-app folder even with the memory store; not in the CWD.
        datadir=str(faust_dir / f"{worker_app_id(settings)}-data"),
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=settings.topic_replication_factor,
        # The reporter reads the changelogs directly, so no worker needs
        # standby copies of another worker's partitions.
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        # Faust's web server serves /metrics only (STOREMON_WORKER_METRICS_PORT, 0: none).
        web_enabled=settings.worker_metrics_port > 0,
        web_bind=settings.api_host,
        web_port=settings.worker_metrics_port or None,
        # Throughput: bigger fetches, stream buffers and produce batches than
        # Faust's defaults (1 MiB, 4096 events, 16 KiB), measured in bench/.
        consumer_max_fetch_size=8 * 1024 * 1024,
        stream_buffer_maxsize=65536,
        producer_max_batch_size=1024 * 1024,
        producer_linger=0.02,
        producer_compression_type="lz4",
    )
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    raw_table: dict[str, Any] = {"key_type": bytes, "value_type": bytes}  # bytes => raw codec
    status_topic = app.topic(settings.topic(config.TOPIC_STATUS), **raw)
    hours_topic = app.topic(settings.topic(config.TOPIC_HOURS), **raw)
    zones_topic = app.topic(settings.topic(config.TOPIC_TIMEZONES), **raw)
    dlq_topic = app.topic(settings.topic(config.TOPIC_STATUS_DLQ), **raw)
    index = EvictionIndex()
    metrics = WorkerMetrics()

    async def index_recovered_observation(event: EventT) -> None:
        value = event.message.value
        if value:
            _, day = split_observation_day_key(event.message.key)
            index.add(event.message.partition, event.message.key, day, latest_timestamp_us(value))

    observations = app.Table(
        OBSERVATIONS_TABLE,
        partitions=settings.topic_partitions,
        on_changelog_event=index_recovered_observation,
        **raw_table,
    )
    schedules = app.Table(SCHEDULES_TABLE, partitions=settings.topic_partitions, **raw_table)
    zones = app.Table(ZONES_TABLE, partitions=settings.topic_partitions, **raw_table)

    async def reject(event: EventT, error: RowError, raw: bytes | str | None = None) -> None:
        """Dead-letter the record of `event`, or `raw`, one bad entry of its batch."""
        message = event.message
        log.warning(
            "rejected %s[%d]@%d: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            events.shown_field(error.field),
            error.reason,
            extra={"store_id": (message.key or b"").decode(errors="replace")},
        )
        metrics.rejected(message.topic, error)
        await dlq_topic.send(
            key=message.key,
            value=events.dlq_record(
                f"{message.topic}[{message.partition}]",
                message.offset,
                error.field,
                error.reason,
                message.value if raw is None else raw,
            ),
        )

    @app.agent(status_topic)
    async def absorb_status(stream: StreamT) -> None:
        async for event in stream.events():
            try:
                batch = events.decode_observations(event.message.key, event.message.value)
            except RowError as error:
                await reject(event, error)
                continue
            for error, raw_entry in batch.rejected:
                await reject(event, error, raw_entry)
            metrics.accepted(event.message.topic, len(batch.observations))
            partition = event.message.partition
            cutoff = index.cutoff_us(partition)
            # The batch's polls by day; in record order, so a later entry wins.
            polls_by_day: dict[int, dict[int, bytes]] = {}
            for observation in batch.observations:
                if cutoff is not None and observation.timestamp_us < cutoff:
                    continue  # Older than every report window: accepted, nothing to keep.
                status = ACTIVE if observation.status == "active" else INACTIVE
                day = day_of(observation.timestamp_us)
                polls_by_day.setdefault(day, {})[observation.timestamp_us] = status
            for day, polls in polls_by_day.items():
                key = observation_day_key(batch.store_id, day)
                held = observations.get(key)
                merged = {**decode_day(held), **polls} if held else polls
                value = encode_day(merged)
                # A replayed or duplicated poll changes nothing, so it writes nothing.
                if value != held:
                    observations[key] = value
                    index.add(partition, key, day, latest_timestamp_us(value))
            for expired in index.pop_expired(partition):
                observations.pop(expired, None)

    def keep_latest_per_store(topic: faust.TopicT, table: faust.Table, decode: Decoder) -> None:
        """An agent keeping the latest canonical value per store; a null value deletes."""

        async def absorb(stream: StreamT) -> None:
            async for event in stream.events():
                try:
                    store_id, value = decode(event.message.key, event.message.value)
                except RowError as error:
                    await reject(event, error)
                    continue
                if value is None:
                    table.pop(store_id.encode(), None)
                else:
                    table[store_id.encode()] = value
                metrics.accepted(event.message.topic)

        app.agent(topic, name=f"absorb_{table.name}")(absorb)

    keep_latest_per_store(hours_topic, schedules, _canonical_schedule)
    keep_latest_per_store(zones_topic, zones, _canonical_zone)

    @app.page("/metrics")
    async def serve_metrics(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        greatest_event_time_us = max(index.max_timestamp_us.values(), default=None)
        return web.text(
            metrics.render(observations.items(), greatest_event_time_us),
            headers={"Content-Type": prometheus.CONTENT_TYPE},
        )

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run one worker until SIGINT/SIGTERM, logging JSON lines (storemon/logs.py)."""
    faust_worker(create_app(settings), loglevel).execute_from_commandline()
