"""How long the worker keeps polls: per store, never because of another store's polls.

A report at `as_of` reads a store's polls in `[as_of - 8 days, as_of]`
(report-semantics.md). The worker keeps, for each store, every poll no older
than that store's own newest poll minus RETAINED_US (16 days), so a report at
any `as_of` inside the store's last 8 days finds every poll it needs. The
horizon is counted per store, not per partition: one poll far newer than the
rest (a producer's clock, a test poll dated today among last year's data) moves
only its own store's horizon.

State stays bounded all the same:
- per store, at most RETAINED_US of polls, dropped a whole UTC day at a time
  (so at most a day more), at ~24 polls a day for an hourly-polled store;
- stores that stopped being polled go: a store whose newest poll is more than
  STALE_AFTER_US behind the median newest poll of its partition's stores is
  dropped entirely. The median, not the maximum, so that a few far-ahead polls
  cannot make every other store look stale.

This module only decides; the worker deletes what it names from its table, in
the context of an event of the same partition, so each tombstone lands in the
right changelog partition.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from storemon.timebase import HORIZON_US, US_PER_DAY

#: Polls of a store older than its newest poll minus this are dropped (whole days).
RETAINED_US = 2 * HORIZON_US
#: A store this far behind its partition's median newest poll is dropped entirely.
STALE_AFTER_US = 30 * US_PER_DAY
#: The stale-store sweep runs at most this often per partition (seconds of the clock).
SWEEP_EVERY_S = 10.0


@dataclass
class _StoreDays:
    newest_us: int
    #: UTC day number -> the table key holding that day's polls
    keys: dict[int, bytes] = field(default_factory=dict)
    #: UTC day number -> how many polls that day's value holds
    polls: dict[int, int] = field(default_factory=dict)


class Retention:
    """Which store-day keys each partition holds, and which of them are to go."""

    def __init__(self, clock: Callable[[], float]) -> None:
        self._clock = clock
        self._stores: dict[int, dict[str, _StoreDays]] = {}
        self._last_sweep: dict[int, float] = {}
        #: partition -> greatest poll time it has held (for metrics)
        self.max_timestamp_us: dict[int, int] = {}
        #: partition -> polls its held days hold, kept as they change (for metrics)
        self._polls: dict[int, int] = {}

    def add(
        self, partition: int, store_id: str, day: int, key: bytes, newest_us: int, polls: int = 0
    ) -> None:
        """Note that `key` holds `store_id`'s `polls` polls of `day`, the newest at
        `newest_us`."""
        stores = self._stores.setdefault(partition, {})
        held = stores.get(store_id)
        if held is None:
            held = stores[store_id] = _StoreDays(newest_us)
        held.newest_us = max(held.newest_us, newest_us)
        held.keys[day] = key
        self._polls[partition] = (
            self._polls.get(partition, 0) + polls - held.polls.get(day, 0)
        )
        held.polls[day] = polls
        self.max_timestamp_us[partition] = max(
            self.max_timestamp_us.get(partition, newest_us), newest_us
        )

    def keep_only(self, partitions: set[int]) -> list[bytes]:
        """Forget every other partition (no longer this worker's); the keys it held."""
        gone = self._stores.keys() - partitions
        for partition in gone:
            self._last_sweep.pop(partition, None)
            self.max_timestamp_us.pop(partition, None)
            self._polls.pop(partition, None)
        return [
            key
            for partition in gone
            for held in self._stores.pop(partition).values()
            for key in held.keys.values()
        ]

    def store_days(self, partition: int) -> dict[str, dict[int, bytes]]:
        """store_id -> {UTC day: table key} of the partition's stores (the inner mappings are
        the live ones: read them before the next change)."""
        return {store_id: held.keys for store_id, held in self._stores.get(partition, {}).items()}

    def days_of(self, partition: int, store_id: str) -> dict[int, bytes]:
        """{UTC day: table key} of one store of the partition (empty: none held)."""
        held = self._stores.get(partition, {}).get(store_id)
        return {} if held is None else held.keys

    def holds(self, partition: int, store_id: str) -> bool:
        """Whether the partition holds polls of the store (so the store is of it)."""
        return store_id in self._stores.get(partition, ())

    def cutoff_us(self, partition: int, store_id: str) -> int | None:
        """Polls of the store before this instant are not kept (None: keep all)."""
        held = self._stores.get(partition, {}).get(store_id)
        return None if held is None else held.newest_us - RETAINED_US

    def pop_expired(self, partition: int, store_id: str) -> list[bytes]:
        """The store's keys of days wholly before its cutoff; forgotten here."""
        held = self._stores.get(partition, {}).get(store_id)
        if held is None:
            return []
        first_kept_day = (held.newest_us - RETAINED_US) // US_PER_DAY
        if min(held.keys, default=first_kept_day) >= first_kept_day:
            return []  # what nearly every poll finds: checked without a list
        expired = [day for day in held.keys if day < first_kept_day]
        self._forget_polls(partition, held, expired)
        return [held.keys.pop(day) for day in expired]

    def pop_stale(self, partition: int) -> list[bytes]:
        """Every key of the partition's stale stores, at most once per SWEEP_EVERY_S."""
        now = self._clock()
        if now - self._last_sweep.get(partition, -SWEEP_EVERY_S) < SWEEP_EVERY_S:
            return []
        self._last_sweep[partition] = now
        stores = self._stores.get(partition)
        if not stores:
            return []
        newest = np.fromiter((held.newest_us for held in stores.values()), np.int64, len(stores))
        threshold = int(np.median(newest)) - STALE_AFTER_US
        stale = [store_id for store_id, held in stores.items() if held.newest_us < threshold]
        for store_id in stale:
            self._forget_polls(partition, stores[store_id], list(stores[store_id].polls))
        return [key for store_id in stale for key in stores.pop(store_id).keys.values()]

    def _forget_polls(self, partition: int, held: _StoreDays, days: list[int]) -> None:
        for day in days:
            self._polls[partition] = self._polls.get(partition, 0) - held.polls.pop(day, 0)

    def sizes(self) -> dict[int, tuple[int, int, int | None]]:
        """partition -> (stores, polls, greatest poll time µs or None) held here."""
        return {
            partition: (len(stores), self._polls.get(partition, 0),
                        self.max_timestamp_us.get(partition))
            for partition, stores in self._stores.items()
        }

    def held_stores(self) -> int:
        """Stores with polls held, over every partition this worker holds."""
        return sum(len(stores) for stores in self._stores.values())

    def held_polls(self) -> int:
        """Polls held, over every partition this worker holds (kept as they change)."""
        return sum(self._polls.values())
