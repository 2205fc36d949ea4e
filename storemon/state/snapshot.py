"""The report engine's inputs from a slice of the workers' state.

A slice is some stores of one state partition as its owner holds them: each store's
polls (its day values, in time order), schedule value and zone. A part is computed a
chunk of stores at a time, so the engine's temporary arrays, and the polls joined
into one buffer, stay bounded by the chunk, not by the partition.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from itertools import chain, islice

import numpy as np

from storemon.inputs.values import RowError
from storemon.messages.schedules import decode_schedule
from storemon.state.layout import ACTIVE, POLL_BYTES, POLL_DTYPE
from storemon.uptime.engine import BusinessHours, Polls, Timezones, object_array

log = logging.getLogger(__name__)

#: A decoded schedule kept between reports: (day, start µs, end µs) per row, int64.
_ROW_DTYPE = np.dtype(np.int64)
_ROW_FIELDS = 3


@dataclass
class PartitionSlice:
    """Some stores' state, as a report part is computed from it."""

    #: store_id -> its polls in time order (layout.POLL_DTYPE records), in pieces read end
    #: to end: the tables' own day values, referenced, not copied (joined per chunk; a
    #: partition's polls joined at once were a second copy of its state)
    polls: dict[str, tuple[bytes, ...]] = field(default_factory=dict)
    #: store_id -> the schedule's JSON value (as the worker stored it)
    schedules: dict[str, bytes] = field(default_factory=dict)
    #: store_id -> IANA zone name
    zones: dict[str, str] = field(default_factory=dict)

    def chunks(self, stores: int) -> Iterator[PartitionSlice]:
        """The slice `stores` stores (with polls) at a time, in the slice's order."""
        ids = iter(self.polls)
        while chunk := list(islice(ids, stores)):
            yield PartitionSlice(
                {store_id: self.polls[store_id] for store_id in chunk},
                {store_id: self.schedules[store_id] for store_id in chunk
                 if store_id in self.schedules},
                {store_id: self.zones[store_id] for store_id in chunk if store_id in self.zones},
            )

    def polls_of(self, store_id: str) -> bytes:
        """The store's polls end to end (none: empty)."""
        return b"".join(self.polls.get(store_id, ()))


class SnapshotBuilder:
    """Turns state slices into engine inputs, remembering decoded schedules between calls.

    A store's schedule value rarely changes, so it is decoded again only when its
    bytes differ from the last time; what is kept is the value and its rows packed as
    int64 (a few hundred bytes a store, and no Python object per row). A schedule
    that cannot be decoded (only a record written to the changelog by something else
    than the worker can be one) counts as none, with an error line, and is counted in
    `invalid_schedules`.
    """

    def __init__(self) -> None:
        self._schedules: dict[str, tuple[bytes, bytes]] = {}
        self.invalid_schedules = 0

    def build(self, state: PartitionSlice) -> tuple[Polls, BusinessHours, Timezones]:
        """The engine's inputs of `state`."""
        return self.polls(state), self.business_hours(state), self.timezones(state)

    def keep_only(self, store_ids: Iterable[str]) -> None:
        """Forget the schedules of stores not in `store_ids` (gone from the partition)."""
        for gone in self._schedules.keys() - store_ids:
            del self._schedules[gone]

    @staticmethod
    def polls(state: PartitionSlice) -> Polls:
        # One buffer of fixed-size polls that numpy reads without a Python loop per poll.
        pieces = list(state.polls.values())
        polls = np.frombuffer(b"".join(chain.from_iterable(pieces)), dtype=POLL_DTYPE)
        counts = [sum(map(len, pieces_of_store)) // POLL_BYTES for pieces_of_store in pieces]
        return Polls(
            store_ids=object_array(state.polls),
            store_index=np.repeat(np.arange(len(counts), dtype=np.int64), counts),
            timestamp_us=polls["timestamp_us"].astype(np.int64),
            active=polls["status"] == ACTIVE,
        )

    def business_hours(self, state: PartitionSlice) -> BusinessHours:
        store_ids: list[str] = []
        packed: list[bytes] = []
        for store_id, value in state.schedules.items():
            cached = self._schedules.get(store_id)
            if cached is None or cached[0] != value:
                cached = (value, self._decoded(store_id, value))
                self._schedules[store_id] = cached
            store_ids.append(store_id)
            packed.append(cached[1])
        rows = np.frombuffer(b"".join(packed), dtype=_ROW_DTYPE).reshape(-1, _ROW_FIELDS)
        counts = [len(rows_of_store) // (_ROW_DTYPE.itemsize * _ROW_FIELDS)
                  for rows_of_store in packed]
        return BusinessHours(
            store_id=np.repeat(object_array(store_ids), counts),
            day=rows[:, 0].copy(),
            start_us=rows[:, 1].copy(),
            end_us=rows[:, 2].copy(),
        )

    def _decoded(self, store_id: str, value: bytes) -> bytes:
        try:
            _, schedule = decode_schedule(store_id.encode(), value)
        except RowError as exc:
            self.invalid_schedules += 1
            log.error("schedule of store %r in state is invalid, taken as none: %s", store_id, exc)
            return b""
        return np.array(
            [(row.day, row.start_us, row.end_us) for row in schedule or ()], dtype=_ROW_DTYPE
        ).tobytes()

    @staticmethod
    def timezones(state: PartitionSlice) -> Timezones:
        return Timezones(
            store_id=object_array(list(state.zones)),
            timezone_str=object_array(list(state.zones.values())),
        )
