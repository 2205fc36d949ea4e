"""Live answers per store, from the state where it lives (the worker owning its partition).

`GET /stores/{store_id}` and `GET /stores/{store_id}/polls` on the worker's web server
answer for a store of a partition this worker owns, from its tables, with the same
engine and inputs a report part uses: the six figures equal the store's row of a
report at the same `as_of`. A worker that does not own the partition, or whose state
is being rebuilt (a rebalance, a recovery), answers 503 with Retry-After rather than a
stale or partial answer. `GET /partitions` tells which worker owns which partition
(Faust's assignment, as every member learns it), so the API can send each query
straight to its owner (services/api/stores.py).
"""

from __future__ import annotations

import logging
import os
import socket
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode
from zoneinfo import ZoneInfo

import numpy as np

from storemon.config import Settings
from storemon.ingest.parts import AppliedOffsets, PartMaker
from storemon.inputs.values import RowError, parse_store_id, parse_timestamp
from storemon.kafka.partitioning import partition_of
from storemon.kafka.topics import INPUT_TOPICS
from storemon.messages.report_requests import parse_as_of
from storemon.state.layout import ACTIVE, POLL_DTYPE
from storemon.state.snapshot import PartitionSlice, SnapshotBuilder
from storemon.timebase import datetime_from_us, format_timestamp, now_us
from storemon.uptime import engine

log = logging.getLogger(__name__)

DEFAULT_POLLS_LIMIT = 1_000
MAX_POLLS_LIMIT = 10_000
#: What a 503 suggests waiting (Retry-After, seconds): a rebalance settles in seconds.
RETRY_AFTER_S = 1


class QueryError(Exception):
    """An answer other than 200: its HTTP status, code and message."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message

    @property
    def headers(self) -> dict[str, str]:
        return {"Retry-After": str(RETRY_AFTER_S)} if self.status == 503 else {}

    def body(self) -> dict[str, Any]:
        return {"error": {"code": self.code, "message": self.message}}


def _bad_request(field_name: str, reason: str) -> QueryError:
    return QueryError(400, "bad_request", f"{field_name}: {reason}")


def _store_id(raw: str) -> str:
    try:
        return parse_store_id(raw)
    except RowError as exc:
        raise _bad_request("store_id", exc.reason) from None


def _instant(query: Mapping[str, str], name: str) -> int | None:
    if name not in query:
        return None
    try:
        return parse_timestamp(query[name])
    except RowError as exc:
        raise _bad_request(name, exc.reason) from None


def _limit(query: Mapping[str, str]) -> int:
    raw = query.get("limit", str(DEFAULT_POLLS_LIMIT))
    try:
        limit = int(raw)
    except ValueError:
        limit = 0
    if not 1 <= limit <= MAX_POLLS_LIMIT:
        raise _bad_request("limit", f"must be an integer from 1 to {MAX_POLLS_LIMIT}")
    return limit


def _poll(timestamp_us: int, status: bytes) -> dict[str, str]:
    return {
        "timestamp_utc": format_timestamp(timestamp_us),
        "status": "active" if status == ACTIVE else "inactive",
    }


@dataclass
class StoreAnswers:
    """Answers about single stores from the tables of the partitions this worker owns."""

    settings: Settings
    partitions: int
    parts: PartMaker
    offsets: AppliedOffsets
    #: partition -> why this worker cannot answer for it now (None: it can)
    unavailable: Callable[[int], str | None]
    _name: str = field(default_factory=lambda: f"{socket.gethostname()}:{os.getpid()}")

    def _held(self, raw_store_id: str) -> tuple[str, int, PartitionSlice]:
        """The store's partition and what this worker holds of it; 503 if it may not
        answer for the partition, 404 if it holds nothing of the store."""
        store_id = _store_id(raw_store_id)
        partition = partition_of(store_id.encode(), self.partitions)
        reason = self.unavailable(partition)
        if reason is not None:
            raise QueryError(503, "not_owner", f"partition {partition}: {reason}")
        part = PartitionSlice()
        self.parts.add_store(part, store_id, self.parts.retention.days_of(partition, store_id))
        if not (part.polls or part.schedules or part.zones):
            raise QueryError(404, "not_found", f"no store {store_id!r} in the state")
        return store_id, partition, part

    def _state_offsets(self, partition: int) -> dict[str, dict[int, int]]:
        return self.offsets.of_partition(
            [self.settings.topic(topic) for topic in INPUT_TOPICS], partition
        )

    def store(self, raw_store_id: str, query: Mapping[str, str]) -> dict[str, Any]:
        """The store's latest poll, business hours and six figures at `as_of` (default now)."""
        unknown = sorted(set(query) - {"as_of"})
        if unknown:
            raise _bad_request(unknown[0], "unknown parameter: only as_of")
        as_of_us = now_us()
        if "as_of" in query:
            try:
                as_of_us = parse_as_of(query["as_of"])
            except RowError as exc:
                raise _bad_request("as_of", exc.reason) from None
        store_id, partition, part = self._held(raw_store_id)
        polls, hours, zones = SnapshotBuilder().build(part)
        report = engine.compute(polls, hours, zones, as_of=as_of_us)
        figures = None
        if len(report):
            figures = {
                column: int(hundredths) / 100
                for column, hundredths in zip(
                    engine.REPORT_COLUMNS[1:], report.figures[0].tolist(), strict=True
                )
            }
        held = np.frombuffer(part.polls_of(store_id), dtype=POLL_DTYPE)
        until = int(np.searchsorted(held["timestamp_us"], as_of_us, side="right"))
        latest = None if until == 0 else _poll(int(held["timestamp_us"][until - 1]),
                                               bytes(held["status"][until - 1]))
        zone_name = part.zones.get(store_id, engine.DEFAULT_TIMEZONE)
        local = datetime_from_us(as_of_us).astimezone(ZoneInfo(zone_name))
        return {
            "store_id": store_id,
            "partition": partition,
            "as_of": format_timestamp(as_of_us),
            "latest_poll": latest,
            "timezone": zone_name,
            "timezone_given": store_id in part.zones,
            "local_time": local.isoformat(timespec="seconds"),
            "business_hours_given": len(hours.store_id) > 0,
            "in_business_hours": engine.in_business_hours(store_id, hours, zones, as_of_us),
            "figures": figures,
            "state_offsets": self._state_offsets(partition),
            "served_by": self._name,
        }

    def polls(self, raw_store_id: str, path: str, query: Mapping[str, str]) -> dict[str, Any]:
        """The store's polls held in [since, until), oldest first, `limit` at a time; `next`
        is the path of the following page (None: this is the last)."""
        unknown = sorted(set(query) - {"since", "until", "after", "limit"})
        if unknown:
            raise _bad_request(unknown[0], "unknown parameter: only since, until, after, limit")
        since_us, until_us, after_us = (_instant(query, name) for name in
                                        ("since", "until", "after"))
        limit = _limit(query)
        store_id, partition, part = self._held(raw_store_id)
        held = np.frombuffer(part.polls_of(store_id), dtype=POLL_DTYPE)
        times = held["timestamp_us"]
        first = 0 if since_us is None else int(np.searchsorted(times, since_us, side="left"))
        if after_us is not None:
            first = max(first, int(np.searchsorted(times, after_us, side="right")))
        end = len(times) if until_us is None else int(np.searchsorted(times, until_us, "left"))
        page = held[first:min(end, first + limit)]
        polls = [_poll(int(t), bytes(s)) for t, s in zip(page["timestamp_us"].tolist(),
                                                        page["status"].tolist(), strict=True)]
        following = None
        if first + limit < end:
            after = format_timestamp(int(page["timestamp_us"][-1]))
            kept = {name: query[name] for name in ("since", "until", "limit") if name in query}
            following = f"{path}?{urlencode({**kept, 'after': after})}"
        return {
            "store_id": store_id,
            "partition": partition,
            "polls": polls,
            "next": following,
            "state_offsets": self._state_offsets(partition),
            "served_by": self._name,
        }
