"""`storemon worker`: the Faust app that turns the input topics into per-store state.

It consumes `store-status`, `store-hours` and `store-timezones` (co-partitioned
by store_id) and writes three changelog-backed tables whose layout is defined in
storemon/state/layout.py. Invalid records go to the dead-letter topic with the reason.
A record found on another partition than its key's (a producer with another
partitioner) is sent on to its key's partition and not applied here, so a
store's state never splits over two partitions. Polls fall out of state
as storemon/state/retention.py decides (per store), so state stays bounded however
long it runs. A changelog record that breaks the state layout is skipped while
recovering, with an error line and a metric.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import faust
from faust.types import TP, EventT, StreamT

from storemon.config import Settings
from storemon.ingest.changelog import ChangelogBatches, flush_until_sent
from storemon.ingest.parts import AppliedOffsets, PartMaker
from storemon.ingest.positions import read_uncommitted_from_beginning
from storemon.ingest.recovery import PollDayRecovery
from storemon.ingest.stores import QueryError, StoreAnswers
from storemon.ingest.worker_metrics import WorkerMetrics
from storemon.inputs.values import Poll, RowError
from storemon.kafka.clients import faust_credentials
from storemon.kafka.partitioning import partition_of
from storemon.kafka.topics import (
    TOPIC_HOURS,
    TOPIC_REPORT_TASKS,
    TOPIC_STATUS,
    TOPIC_STATUS_DLQ,
    TOPIC_TIMEZONES,
    WORKER_APP,
    changelog_topic,
    input_partitions,
    worker_app_id,
    worker_data_dir,
)
from storemon.messages.dead_letters import dlq_record, shown_field
from storemon.messages.polls import decode_status, encode_poll
from storemon.messages.schedules import decode_schedule, encode_schedule
from storemon.messages.zones import decode_zone
from storemon.observability import prometheus
from storemon.observability.logs import faust_worker
from storemon.state.day_merge import merge_batch
from storemon.state.layout import (
    NEWEST_POLL_TABLE,
    POLL_BYTES,
    POLLS_TABLE,
    SCHEDULES_TABLE,
    ZONES_TABLE,
    encode_newest_poll,
    latest_timestamp_us,
    newest_poll_key,
)
from storemon.state.retention import Retention

log = logging.getLogger(__name__)


#: Decodes a compacted-topic record to (store_id, canonical value or None to delete).
Decoder = Callable[[bytes | None, bytes | None], tuple[str, bytes | None]]


def _canonical_schedule(key: bytes | None, value: bytes | None) -> tuple[str, bytes | None]:
    store_id, rows = decode_schedule(key, value)
    return store_id, None if rows is None else encode_schedule(store_id, rows)


def _canonical_zone(key: bytes | None, value: bytes | None) -> tuple[str, bytes | None]:
    store_id, zone = decode_zone(key, value)
    return store_id, None if zone is None else zone.encode()


def _faust_brokers(settings: Settings) -> list[str]:
    return [f"kafka://{server.strip()}" for server in settings.kafka_bootstrap_servers.split(",")]


def _faust_app(settings: Settings, partitions: int) -> faust.App:
    """The worker's Faust app: storemon's ids and folders, and Faust's knobs as measured."""
    data_dir = worker_data_dir(settings)
    data_dir.parent.mkdir(parents=True, exist_ok=True)
    flush_until_sent()
    return faust.App(
        worker_app_id(settings),
        broker=_faust_brokers(settings),
        # Named in `storemon lag` as the owner of its partitions; host:pid as in its
        # parts' computed_by and its live answers' served_by.
        broker_client_id=f"{WORKER_APP}@{socket.gethostname()}:{os.getpid()}",
        # TLS and SASL as every other client of storemon has them (storemon/kafka/clients.py).
        broker_credentials=faust_credentials(settings.kafka_security),
        store="memory://",
        # Faust keeps a per-app folder even with the memory store; not in the CWD, and
        # one per worker (STOREMON_WORKER_DATA_DIR) where several share a host.
        datadir=str(data_dir),
        topic_partitions=partitions,
        topic_replication_factor=settings.topic_replication_factor,
        # storemon creates every topic, changelogs included (storemon/kafka/topics.py);
        # the leader topic serves Faust features the worker does not use.
        topic_allow_declare=False,
        topic_disable_leader=True,
        # The reporter reads the changelogs directly, so no worker needs
        # standby copies of another worker's partitions.
        table_standby_replicas=0,
        consumer_auto_offset_reset="earliest",
        # A worker that died hands its partitions (and their report tasks) over within
        # seconds rather than Faust's default minute; a heartbeat a second (Faust's
        # default: 3 s) is how soon the others learn that a worker joins.
        broker_session_timeout=15.0,
        broker_heartbeat_interval=1.0,
        # Faust's web server (STOREMON_WORKER_METRICS_PORT, 0: none): /metrics, /healthz and
        # the live store queries.
        web_enabled=settings.worker_metrics_port > 0,
        web_bind=settings.api_host,
        web_port=settings.worker_metrics_port or None,
        # What the group tells the other members (GET /partitions): how to reach this one.
        canonical_url=settings.advertised_worker_url(),
        # Throughput: bigger stream buffers and produce batches than Faust's defaults
        # (4096 events, 16 KiB), measured in bench/. Fetches of 256 KiB a partition
        # instead of 1 MiB (8 MiB before): as fast at Loop scale (54k polls/s), while
        # the fetched and not yet processed records of every assigned partition (inputs
        # and changelogs) cost ~50 MiB less at Loop scale, however few partitions
        # the worker owns (BENCHMARKS.md, "Scatter/gather reports").
        consumer_max_fetch_size=256 * 1024,
        stream_buffer_maxsize=65536,
        producer_max_batch_size=1024 * 1024,
        producer_linger=0.02,
        producer_compression_type="lz4",
    )


@dataclass
class Intake:
    """What every input agent does before it applies a record: send a record of another
    partition on to its own, and dead-letter a bad one (or a bad entry of a batch)."""

    partitions: int
    dlq_topic: faust.TopicT
    metrics: WorkerMetrics

    async def sent_to_its_partition(self, event: EventT, topic: faust.TopicT) -> bool:
        """Whether the record belongs to another partition, and was sent on there.

        Its key decides (every storemon producer keys a record by its store_id); a
        record whose key does not match its store is rejected where it lands.
        """
        message = event.message
        if message.key is None:
            return False
        owner = partition_of(message.key, self.partitions)
        if owner == message.partition:
            return False
        await topic.send(key=message.key, value=message.value, partition=owner)
        self.metrics.routed(message.topic)
        log.warning(
            "record %s[%d]@%d belongs to partition %d (murmur2 of its key): sent on there",
            message.topic,
            message.partition,
            message.offset,
            owner,
            extra={"store_id": message.key.decode(errors="replace")},
        )
        return True

    async def send_on(
        self, event: EventT, topic: faust.TopicT, store_id: str, polls: list[Poll]
    ) -> None:
        """Send a partition batch's polls of a store of another partition on to that
        partition, keyed by the store (one record a poll), and note each as routed."""
        message = event.message
        owner = partition_of(store_id.encode(), self.partitions)
        for poll in polls:
            await topic.send(key=store_id.encode(), value=encode_poll(poll), partition=owner)
            self.metrics.routed(message.topic)
        log.warning(
            "%d polls of store %r in a batch of %s[%d]@%d belong to partition %d: sent on there",
            len(polls),
            store_id,
            message.topic,
            message.partition,
            message.offset,
            owner,
            extra={"store_id": store_id},
        )

    async def reject(self, event: EventT, error: RowError, raw: bytes | str | None = None) -> None:
        """Dead-letter the record of `event`, or `raw`, one bad entry of its batch."""
        message = event.message
        log.warning(
            "rejected %s[%d]@%d: %s: %s",
            message.topic,
            message.partition,
            message.offset,
            shown_field(error.field),
            error.reason,
            extra={"store_id": (message.key or b"").decode(errors="replace")},
        )
        self.metrics.rejected(message.topic, error)
        await self.dlq_topic.send(
            key=message.key,
            value=dlq_record(
                f"{message.topic}[{message.partition}]",
                message.offset,
                error.field,
                error.reason,
                message.value if raw is None else raw,
            ),
        )


def create_app(settings: Settings) -> faust.App:
    """The worker's Faust app, its topics, tables and agents."""
    # The input topics' own count (they may predate the setting): what keys map to.
    partitions = input_partitions(settings)
    app = _faust_app(settings, partitions)
    raw: dict[str, Any] = {"key_serializer": "raw", "value_serializer": "raw"}
    raw_table: dict[str, Any] = {"key_type": bytes, "value_type": bytes}  # bytes => raw codec
    status_topic = app.topic(settings.topic(TOPIC_STATUS), **raw)
    hours_topic = app.topic(settings.topic(TOPIC_HOURS), **raw)
    zones_topic = app.topic(settings.topic(TOPIC_TIMEZONES), **raw)
    dlq_topic = app.topic(settings.topic(TOPIC_STATUS_DLQ), **raw)
    tasks_topic = app.topic(settings.topic(TOPIC_REPORT_TASKS), **raw)
    retention = Retention(time.monotonic)
    metrics = WorkerMetrics()

    # The poll days are not a Faust table: the worker writes their changelog itself
    # (ChangelogBatches) and rebuilds them from it (PollDayRecovery), each many times
    # quicker than Faust's per-record machinery.
    poll_days: dict[bytes, bytes] = {}
    polls_changelog = changelog_topic(settings, POLLS_TABLE)
    # Each partition's newest poll, as last written to its record in the newest_poll
    # changelog (where reports find their default as_of): the greatest poll time of the
    # partition's days, so rebuilt with them. (As a Faust table, Faust's recovery of a
    # partition kept through a rebalance rolled it back to its changelog's value while
    # a newer one was not sent yet.)
    newest_written: dict[bytes, bytes] = {}
    newest_changelog = changelog_topic(settings, NEWEST_POLL_TABLE)
    # Every write of the worker's own tables goes through it, so that their records keep
    # their order.
    changelog = ChangelogBatches(app)
    read_uncommitted_from_beginning(app.consumer)

    def note_newest_poll(partition: int) -> None:
        newest_us = retention.max_timestamp_us.get(partition)
        if newest_us is None:
            return
        key, value = newest_poll_key(partition), encode_newest_poll(newest_us)
        if newest_written.get(key) != value:
            changelog.set(newest_changelog, newest_written, partition, key, value)

    recovery = PollDayRecovery(
        settings,
        poll_days,
        retention,
        lambda: metrics.skipped_state_record(POLLS_TABLE),
        lambda error: asyncio.ensure_future(app.crash(error)),
        on_rebuilt=note_newest_poll,
    )
    schedules = app.Table(SCHEDULES_TABLE, partitions=partitions, **raw_table)
    zones = app.Table(ZONES_TABLE, partitions=partitions, **raw_table)

    status_topic_name = status_topic.get_topic_name()
    intake = Intake(partitions, dlq_topic, metrics)
    offsets = AppliedOffsets()
    # Parts read the tables' stores: a store's get skips the table's per-key hooks, a
    # sixth of the cost, ~130,000 times for a Loop-scale report.
    parts = PartMaker(
        settings,
        retention,
        poll_days,
        schedules.data,
        zones.data,
        offsets,
        metrics.report_parts,
    )

    def apply_polls(partition: int, store_id: str, polls: list[Poll]) -> None:
        """Merge a store's polls into its days (one table write per day changed), note
        them for retention, drop what retention says."""
        cutoff = retention.cutoff_us(partition, store_id)
        for write in merge_batch(store_id, polls, cutoff, poll_days.get):
            changelog.set(polls_changelog, poll_days, partition, write.key, write.value)
            retention.add(
                partition,
                store_id,
                write.day,
                write.key,
                latest_timestamp_us(write.value),
                len(write.value) // POLL_BYTES,
            )
        for expired in (
            *retention.pop_expired(partition, store_id),
            *retention.pop_stale(partition),
        ):
            changelog.delete(polls_changelog, poll_days, partition, expired)

    @app.agent(status_topic)
    async def absorb_status(stream: StreamT) -> None:
        async for event in offsets.events(stream):
            partition = event.message.partition
            if not await recovery.ready(partition):
                continue  # handed over meanwhile: its new owner applies it
            # Nothing is awaited from here to the last write of the event's polls, so
            # that no rebuild of the partition can begin in between (it would overwrite
            # them with older values); dead letters and polls sent on go after.
            if await intake.sent_to_its_partition(event, status_topic):
                continue
            try:
                polls = decode_status(event.message.key, event.message.value)
            except RowError as error:
                await intake.reject(event, error)
                continue
            elsewhere: dict[str, list[Poll]] = {}
            accepted = 0
            for store_id, store_polls in polls.by_store.items():
                # A store held here is of this partition: murmur2 only for the others.
                if (
                    not retention.holds(partition, store_id)
                    and partition_of(store_id.encode(), partitions) != partition
                ):
                    elsewhere[store_id] = store_polls
                    continue
                accepted += len(store_polls)
                apply_polls(partition, store_id, store_polls)
            note_newest_poll(partition)
            for error, raw_entry in polls.rejected:
                await intake.reject(event, error, raw_entry)
            for store_id, store_polls in elsewhere.items():
                # A partition batch's entry of another partition's store: never applied
                # here; sent on, keyed, to its own partition.
                await intake.send_on(event, status_topic, store_id, store_polls)
            if changelog.many_unsent:
                await changelog.send()
            if accepted:
                metrics.accepted(event.message.topic, accepted)

    def keep_latest_per_store(topic: faust.TopicT, table: faust.Table, decode: Decoder) -> None:
        """An agent keeping the latest canonical value per store; a null value deletes."""

        async def absorb(stream: StreamT) -> None:
            async for event in offsets.events(stream):
                if await intake.sent_to_its_partition(event, topic):
                    continue
                try:
                    store_id, value = decode(event.message.key, event.message.value)
                except RowError as error:
                    await intake.reject(event, error)
                    continue
                if value is None:
                    table.pop(store_id.encode(), None)
                else:
                    table[store_id.encode()] = value
                metrics.accepted(event.message.topic)

        app.agent(topic, name=f"absorb_{table.name}")(absorb)

    keep_latest_per_store(hours_topic, schedules, _canonical_schedule)
    keep_latest_per_store(zones_topic, zones, _canonical_zone)

    async def rebuild_before_input_resumes() -> None:
        """Faust awaits its tables' recover callbacks before it resumes their input
        partitions: the poll days are rebuilt by then, as Faust's own tables are. (Rebuilt
        while the input flowed, a restarted worker now and then never saw a partition's
        first records after its committed offset, and so never committed past them.)"""
        assignment = app.consumer.assignment()
        recovery.assign({tp.partition for tp in assignment if tp.topic == status_topic_name})
        await recovery.all_ready()

    schedules.on_recover(rebuild_before_input_resumes)
    #: The group generation of this worker's last assignment.
    generation: int | None = None

    @app.on_partitions_assigned.connect
    async def forget_other_partitions(app: faust.App, assigned: set[TP], **kwargs: Any) -> None:
        """Drop what this worker kept of partitions it no longer owns: its indexes, and
        the table entries its agents wrote there (Faust drops only those it recovered).
        Only from the stores, so nothing reaches the changelogs; a partition assigned
        again is recovered from its changelog whole."""
        nonlocal generation
        owned = {tp.partition for tp in assigned if tp.topic == status_topic_name}
        kept = owned
        if generation is not None and app.consumer_generation_id != generation + 1:
            # This worker missed a generation of its group (frozen past its session):
            # others may have owned its partitions and written their changelogs since,
            # so what it holds and has not sent may be stale. Dropped; each partition it
            # gets back is rebuilt, and its input taken again from the committed offsets.
            log.warning(
                "this worker was out of its group from generation %d to %d: rebuilding "
                "every partition it owns", generation, app.consumer_generation_id,
            )
            changelog.drop_unsent()
            kept = set()
        generation = app.consumer_generation_id
        parts.keep_only(kept)
        for key in retention.keep_only(kept):
            poll_days.pop(key, None)
        for key in newest_written.keys() - {newest_poll_key(partition) for partition in kept}:
            del newest_written[key]
        recovery.assign(kept)
        recovery.assign(owned)
        for table in (schedules, zones):
            store = table.data
            for key in [key for key in store if partition_of(key, partitions) not in owned]:
                del store[key]

    @app.agent(tasks_topic)
    async def compute_report_parts(stream: StreamT) -> None:
        async for event in stream.events():
            # A part of a partition not owned any more is its new owner's to compute.
            if await recovery.ready(event.message.partition):
                await parts.answer(event)

    @app.on_before_shutdown.connect
    async def close_database(app: faust.App, **kwargs: Any) -> None:
        await parts.close()

    def unavailable(partition: int) -> str | None:
        """Why this worker may not answer for `partition` now (None: it may)."""
        if app.rebalancing or app.in_recovery or recovery.rebuilding(partition):
            return "this worker's state is being rebuilt after a rebalance; try again shortly"
        if TP(status_topic_name, partition) not in app.consumer.assignment():
            return "owned by another worker"
        return None

    answers = StoreAnswers(settings, partitions, parts, offsets, unavailable)

    def answer(web: faust.web.View, question: Callable[[], dict[str, Any]]) -> faust.web.Response:
        try:
            return web.json(question())
        except QueryError as error:
            return web.json(error.body(), status=error.status, headers=error.headers)

    @app.page("/stores/{store_id}")
    async def serve_store(
        web: faust.web.View, request: faust.web.Request, store_id: str
    ) -> faust.web.Response:
        return answer(web, lambda: answers.store(store_id, request.query))

    @app.page("/stores/{store_id}/polls")
    async def serve_store_polls(
        web: faust.web.View, request: faust.web.Request, store_id: str
    ) -> faust.web.Response:
        return answer(web, lambda: answers.polls(store_id, request.rel_url.raw_path, request.query))

    @app.page("/partitions")
    async def serve_partitions(
        web: faust.web.View, request: faust.web.Request
    ) -> faust.web.Response:
        """Which worker (its URL) owns which state partition, as the group last agreed."""
        if app.rebalancing:
            error = QueryError(503, "rebalancing", "the workers are rebalancing")
            return web.json(error.body(), status=503, headers=error.headers)
        owners = {
            partition: url
            for url, topics in app.router.external_topics_metadata().items()
            for partition in topics.get(status_topic_name, ())
        }
        # The app id names the deployment: an API given another deployment's workers
        # must not take their partitions for its own.
        return web.json({"app": app.conf.id, "partitions": partitions, "owners": owners})

    @app.page("/state")
    async def serve_state(web: faust.web.View, request: faust.web.Request) -> faust.web.Response:
        """The size and newest poll of each state partition this worker owns (the API's
        /metrics gathers them from every owner)."""
        if app.rebalancing or app.in_recovery or recovery.rebuilding():
            error = QueryError(503, "rebalancing", "this worker's state is being rebuilt")
            return web.json(error.body(), status=503, headers=error.headers)
        owned = {tp.partition for tp in app.consumer.assignment() if tp.topic == status_topic_name}
        return web.json(
            {
                "partitions": {
                    partition: {"stores": stores, "polls": polls, "newest_poll_us": newest_us}
                    for partition, (stores, polls, newest_us) in retention.sizes().items()
                    if partition in owned
                }
            }
        )

    @app.page("/healthz")
    async def serve_healthz(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        """Liveness: answered while the worker's event loop runs."""
        return web.json({"status": "ok"})

    @app.page("/readyz")
    async def serve_readyz(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        """Readiness: not while the group rebalances or this worker rebuilds its tables
        (it answers no store query and computes no part then)."""
        if app.rebalancing or app.in_recovery or recovery.rebuilding():
            return web.json({"status": "rebuilding its state after a rebalance"}, status=503)
        return web.json({"status": "ready"})

    @app.page("/metrics")
    async def serve_metrics(web: faust.web.Web, request: faust.web.Request) -> faust.web.Response:
        greatest_event_time_us = max(retention.max_timestamp_us.values(), default=None)
        return web.text(
            metrics.render(retention.held_stores(), retention.held_polls(), greatest_event_time_us),
            headers={"Content-Type": prometheus.CONTENT_TYPE},
        )

    return app


def run_worker(settings: Settings, loglevel: str = "info") -> None:
    """Run one worker until SIGINT/SIGTERM, logging JSON lines (storemon/observability/logs.py)."""
    faust_worker(create_app(settings), loglevel).execute_from_commandline()
