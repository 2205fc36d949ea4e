"""The report engine's inputs from a slice of the workers' state.

A slice is what one state partition's owner holds (or a `StateView` read from the
changelogs): each store's day values, schedules and zones, as the worker stored them.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from storemon.inputs.values import HoursRow, RowError
from storemon.messages.schedules import decode_schedule
from storemon.state.layout import ACTIVE, POLL_BYTES, POLL_DTYPE
from storemon.uptime.engine import BusinessHours, Polls, Timezones, object_array

log = logging.getLogger(__name__)


class StateSlice(Protocol):
    """Some stores' state: what a snapshot is taken of."""

    #: store_id -> {UTC day number: that day's value (layout.encode_day)}
    poll_days: Mapping[str, Mapping[int, bytes]]
    #: store_id -> the schedule's JSON value (as the worker stored it)
    schedules: Mapping[str, bytes]
    #: store_id -> IANA zone name
    zones: Mapping[str, str]


@dataclass
class PartitionSlice:
    """A StateSlice assembled by the owner of one state partition."""

    poll_days: dict[str, dict[int, bytes]] = field(default_factory=dict)
    schedules: dict[str, bytes] = field(default_factory=dict)
    zones: dict[str, str] = field(default_factory=dict)


class SnapshotBuilder:
    """Turns state slices into engine inputs, remembering parsed schedules between calls.

    A store's schedule value rarely changes, so it is decoded again only when
    its bytes differ from the last time. A schedule that cannot be decoded (only a
    record written to the changelog by something else than the worker can be one)
    counts as none, with an error line, and is counted in `invalid_schedules`.
    """

    def __init__(self) -> None:
        self._schedules: dict[str, tuple[bytes, list[HoursRow]]] = {}
        self.invalid_schedules = 0

    def build(
        self, state: StateSlice, *, whole: bool = True
    ) -> tuple[Polls, BusinessHours, Timezones]:
        """The engine's inputs of `state`; `whole`: it is all the builder is used for, so
        schedules remembered of stores it lacks are forgotten."""
        return self.polls(state), self.business_hours(state, whole=whole), self.timezones(state)

    @staticmethod
    def polls(state: StateSlice) -> Polls:
        days_by_store = state.poll_days
        # Each store's day values, in day order, end to end: one buffer of
        # fixed-size polls that numpy reads without a Python loop per poll.
        values = [
            b"".join(days[day] for day in sorted(days)) for days in days_by_store.values()
        ]
        polls = np.frombuffer(b"".join(values), dtype=POLL_DTYPE)
        counts = [len(value) // POLL_BYTES for value in values]
        return Polls(
            store_ids=object_array(list(days_by_store)),
            store_index=np.repeat(np.arange(len(counts), dtype=np.int64), counts),
            timestamp_us=polls["timestamp_us"].astype(np.int64),
            active=polls["status"] == ACTIVE,
        )

    def business_hours(self, state: StateSlice, *, whole: bool = True) -> BusinessHours:
        rows: list[HoursRow] = []
        for store_id, value in state.schedules.items():
            cached = self._schedules.get(store_id)
            if cached is None or cached[0] != value:
                cached = (value, self._decoded(store_id, value))
                self._schedules[store_id] = cached
            rows.extend(cached[1])
        if whole:
            for gone in self._schedules.keys() - state.schedules.keys():
                del self._schedules[gone]
        return BusinessHours.from_rows(rows)

    def _decoded(self, store_id: str, value: bytes) -> list[HoursRow]:
        try:
            _, schedule = decode_schedule(store_id.encode(), value)
        except RowError as exc:
            self.invalid_schedules += 1
            log.error("schedule of store %r in state is invalid, taken as none: %s", store_id, exc)
            return []
        return schedule or []

    @staticmethod
    def timezones(state: StateSlice) -> Timezones:
        return Timezones(
            store_id=object_array(list(state.zones)),
            timezone_str=object_array(list(state.zones.values())),
        )
