"""The report engine's inputs from the workers' state (a storemon.state.StateView)."""

from __future__ import annotations

import numpy as np

from storemon.inputs.values import HoursRow
from storemon.messages.schedules import decode_schedule
from storemon.state.layout import ACTIVE, POLL_BYTES, POLL_DTYPE
from storemon.state.reader import StateView
from storemon.uptime.engine import BusinessHours, Polls, Timezones, object_array


class SnapshotBuilder:
    """Turns a StateView into engine inputs, remembering parsed schedules between calls.

    A store's schedule value rarely changes, so it is decoded again only when
    its bytes differ from the last time.
    """

    def __init__(self) -> None:
        self._schedules: dict[str, tuple[bytes, list[HoursRow]]] = {}

    def build(self, view: StateView) -> tuple[Polls, BusinessHours, Timezones]:
        return self.polls(view), self.business_hours(view), self.timezones(view)

    @staticmethod
    def polls(view: StateView) -> Polls:
        days_by_store = view.poll_days
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

    def business_hours(self, view: StateView) -> BusinessHours:
        rows: list[HoursRow] = []
        for store_id, value in view.schedules.items():
            cached = self._schedules.get(store_id)
            if cached is None or cached[0] != value:
                # The worker stored it canonically, after validating it.
                _, schedule = decode_schedule(store_id.encode(), value)
                cached = (value, schedule or [])
                self._schedules[store_id] = cached
            rows.extend(cached[1])
        for gone in self._schedules.keys() - view.schedules.keys():
            del self._schedules[gone]
        return BusinessHours.from_rows(rows)

    @staticmethod
    def timezones(view: StateView) -> Timezones:
        return Timezones(
            store_id=object_array(list(view.zones)),
            timezone_str=object_array(list(view.zones.values())),
        )
