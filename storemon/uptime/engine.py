"""The report engine: status polls + business hours + zones + `as_of` -> the uptime report.

It implements the shared spec's report-semantics.md exactly; the CLI (`storemon
report-csv`) and the reporter service both call it.

Public API
----------
Inputs are columnar and already validated (see `storemon.inputs` for parsing):

- `Polls(store_ids, store_index, timestamp_us, active)`: polls in acceptance order;
  `Polls.from_columns(store_id, timestamp_us, active)` builds one from plain columns.
- `BusinessHours(store_id, day, start_us, end_us)`: times in microseconds since local
  midnight, `day` 0 = Monday.
- `Timezones(store_id, timezone_str)`: a later row for a store replaces earlier ones.

Entry points:

- `compute(polls, hours, timezones, as_of=None, store_ids=None) -> Report`
  (numpy only; what `report-csv` uses).
- `Report.to_csv_bytes()`: the CSV exactly as the spec writes it.

How it computes
---------------
All times are integer microseconds. Polls become a status timeline per store (each poll
rules up to the midpoints with its neighbours); business hours become UTC intervals (one
zone lookup per zone and range, not per row); the answer for an interval [a, b) is F(b) -
F(a) where F is the cumulative active time of the timeline. Stores are laid side by side on
one integer axis (`_STORE_STRIDE` apart), so every step is a single vectorised numpy
operation over all stores. Midpoints can fall on half microseconds, so that axis counts
half-microseconds.
"""
from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from functools import lru_cache
from typing import Any
from zoneinfo import ZoneInfo

import numpy as np

from storemon.timebase import HORIZON_US, US_PER_DAY, US_PER_HOUR, US_PER_MINUTE, US_PER_SECOND

#: `end_time_local` at or after 23:59:59 means midnight at the end of the day.
END_OF_DAY_US = US_PER_DAY - US_PER_SECOND
DEFAULT_TIMEZONE = "America/Chicago"

#: (name, length, unit of the figures), in the column order of the report.
WINDOWS = (
    ("hour", US_PER_HOUR, US_PER_MINUTE),
    ("day", US_PER_DAY, US_PER_HOUR),
    ("week", 7 * US_PER_DAY, US_PER_HOUR),
)
WEEK_US = WINDOWS[-1][1]
REPORT_COLUMNS = (
    "store_id",
    *(f"uptime_last_{name}" for name, _, _ in WINDOWS),
    *(f"downtime_last_{name}" for name, _, _ in WINDOWS),
)
REPORT_HEADER = ",".join(REPORT_COLUMNS)

# Offsets from the horizon start fit in 40 bits (8 days < 2**40 µs); doubled to half
# microseconds they fit in 41, which is how far apart stores sit on the shared axis.
_OFFSET_BITS = 40
_STORE_STRIDE = 1 << (_OFFSET_BITS + 1)
_MAX_STORES = 1 << 21


def object_array(items: Iterable[Any]) -> np.ndarray:
    values = list(items)
    array = np.empty(len(values), dtype=object)
    array[:] = values
    return array


@dataclass(frozen=True)
class Polls:
    """Status polls, columnar, in acceptance order (a later duplicate wins).

    `store_ids` lists distinct store ids (object array of str, any order); each poll names
    its store by `store_index` into it. `timestamp_us` is int64 epoch microseconds (UTC),
    `active` is bool.
    """

    store_ids: np.ndarray
    store_index: np.ndarray
    timestamp_us: np.ndarray
    active: np.ndarray

    @classmethod
    def from_columns(
        cls, store_id: Sequence[str] | np.ndarray, timestamp_us: Any, active: Any
    ) -> Polls:
        """From one store id per poll (strings), epoch-µs timestamps and active flags."""
        index_of: dict[str, int] = {}
        store_index = np.fromiter(
            (index_of.setdefault(sid, len(index_of)) for sid in store_id),
            dtype=np.int64,
            count=len(store_id),
        )
        return cls(
            store_ids=object_array(index_of),
            store_index=store_index,
            timestamp_us=np.asarray(timestamp_us, dtype=np.int64),
            active=np.asarray(active, dtype=bool),
        )


@dataclass(frozen=True)
class BusinessHours:
    """Weekly schedule rows: store, weekday (0 = Monday), local start and end (µs of day).

    A store without rows is open 24x7. `end_us <= start_us` (as written) is an overnight
    shift ending on the next date; an end at or after 23:59:59 means the midnight that
    ends its date.
    """

    store_id: np.ndarray
    day: np.ndarray
    start_us: np.ndarray
    end_us: np.ndarray

    @classmethod
    def empty(cls) -> BusinessHours:
        return cls(object_array([]), *(np.zeros(0, np.int64) for _ in range(3)))

    @classmethod
    def from_rows(cls, rows: Sequence[tuple[str, int, int, int]]) -> BusinessHours:
        """From rows of (store_id, day, start_us, end_us), e.g. parsed `HoursRow`s."""

        def column(index: int) -> np.ndarray:
            return np.fromiter((row[index] for row in rows), dtype=np.int64, count=len(rows))

        return cls(object_array([row[0] for row in rows]), column(1), column(2), column(3))


@dataclass(frozen=True)
class Timezones:
    """Each store's IANA zone; a later row for a store replaces earlier ones."""

    store_id: np.ndarray
    timezone_str: np.ndarray

    @classmethod
    def empty(cls) -> Timezones:
        return cls(object_array([]), object_array([]))


@dataclass(frozen=True)
class Report:
    """The report: one row per store with a poll in `[as_of - 8 days, as_of]`.

    `store_ids` is sorted. `uptime_us` / `downtime_us` / `business_us` are exact durations
    in microseconds (float64, multiples of 0.5), one column per window (hour, day, week).
    `figures` holds the six CSV figures in hundredths, in header order, rounded half-up.
    """

    as_of_us: int | None
    store_ids: np.ndarray
    uptime_us: np.ndarray
    downtime_us: np.ndarray
    figures: np.ndarray

    @property
    def business_us(self) -> np.ndarray:
        return self.uptime_us + self.downtime_us

    def __len__(self) -> int:
        return len(self.store_ids)

    def to_csv_bytes(self) -> bytes:
        """The CSV of report-semantics.md: exact header, sorted rows, minimal 2-place numbers."""
        return ("\n".join([REPORT_HEADER, *self.csv_rows()]) + "\n").encode()

    def csv_rows(self) -> list[str]:
        """The CSV's rows without the header or line ends, in store_id order."""
        if not len(self.store_ids):
            return []
        # Few distinct figures (0, 60, 24, ...): format each once.
        distinct, position = np.unique(self.figures, return_inverse=True)
        texts = object_array(_format_hundredths(int(h)) for h in distinct.tolist())
        cells = texts[position.reshape(self.figures.shape)]
        ids = [_csv_field(sid) for sid in self.store_ids.tolist()]
        return [",".join((sid, *row)) for sid, row in zip(ids, cells.tolist(), strict=True)]


def _format_hundredths(hundredths: int) -> str:
    whole, fraction = divmod(hundredths, 100)
    if fraction == 0:
        return str(whole)
    if fraction % 10 == 0:
        return f"{whole}.{fraction // 10}"
    return f"{whole}.{fraction:02d}"


def _csv_field(text: str) -> str:
    if any(ch in text for ch in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


# ---------------------------------------------------------------------------------------
# The computation
# ---------------------------------------------------------------------------------------


def compute(
    polls: Polls,
    hours: BusinessHours | None = None,
    timezones: Timezones | None = None,
    *,
    as_of: int | datetime | None = None,
    store_ids: Iterable[str] | None = None,
) -> Report:
    """The report for `as_of` (epoch µs or an aware datetime; default: the latest poll).

    `store_ids` limits the report to those stores (still only those with polls).
    Raises ValueError for an unknown zone name.
    """
    hours = hours if hours is not None else BusinessHours.empty()
    timezones = timezones if timezones is not None else Timezones.empty()
    if as_of is not None:
        as_of_us = _epoch_us(as_of)
    elif len(polls.timestamp_us):
        as_of_us = int(polls.timestamp_us.max())
    else:
        return _empty_report(None)
    horizon_start = as_of_us - HORIZON_US
    latest = _latest_polls(polls, horizon_start, as_of_us, store_ids)
    if latest is None:
        return _empty_report(as_of_us)
    intervals = _business_intervals(latest.report_ids, hours, timezones, horizon_start)
    uptime, business = _window_totals(latest, intervals)
    downtime = business - uptime
    figures = np.empty((len(latest.report_ids), 2 * len(WINDOWS)), dtype=np.int64)
    for column, (_, _, unit_us) in enumerate(WINDOWS):
        figures[:, column] = _round_hundredths(uptime[:, column], 2 * unit_us)
        figures[:, len(WINDOWS) + column] = _round_hundredths(downtime[:, column], 2 * unit_us)
    return Report(as_of_us, latest.report_ids, uptime / 2.0, downtime / 2.0, figures)


def in_business_hours(
    store_id: str, hours: BusinessHours, timezones: Timezones, at_us: int
) -> bool:
    """Whether `store_id` is open at the instant `at_us`, by the same schedule rules the
    report's windows use (no rows: open 24x7; no zone: DEFAULT_TIMEZONE)."""
    # The report's intervals end at its as_of (exclusive): ask for a window that ends
    # just after the instant, and see whether the instant is inside one.
    horizon_start = at_us + 1 - HORIZON_US
    _, start, end = _business_intervals(object_array([store_id]), hours, timezones, horizon_start)
    offset = at_us - horizon_start
    return bool(np.any((start <= offset) & (offset < end)))


def _empty_report(as_of_us: int | None) -> Report:
    shape = (0, len(WINDOWS))
    return Report(
        as_of_us, object_array([]), np.zeros(shape), np.zeros(shape),
        np.zeros((0, 2 * len(WINDOWS)), np.int64),
    )


def _epoch_us(moment: int | datetime) -> int:
    if isinstance(moment, datetime):
        if moment.tzinfo is None:
            raise ValueError("as_of must be timezone-aware (or epoch microseconds)")
        return (moment - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    return int(moment)


def _round_hundredths(half_us: np.ndarray, unit_half_us: int) -> np.ndarray:
    """Exact half-up rounding of durations (half-µs) to hundredths of a unit."""
    return (half_us * 200 + unit_half_us) // (2 * unit_half_us)


_RANK_SHIFT = _OFFSET_BITS + 1


@dataclass(frozen=True)
class _Polls:
    """The polls that count, one per (store, timestamp), as sorted keys.

    A key is `rank << 41 | offset << 1 | active`: the store's rank among the distinct ids
    (sorted, so key order is report order), µs since the horizon start, the status. A
    key without its status bit is the poll's position on the shared axis (half-µs).
    """

    keys: np.ndarray
    store_last: np.ndarray  # index of each report store's last key
    report_ranks: np.ndarray  # the ranks of the stores with polls, ascending
    report_ids: np.ndarray  # their ids


def _poll_keys(
    rank: np.ndarray, polls: Polls, horizon_start: int, rows: np.ndarray | None
) -> np.ndarray:
    """The keys of the given poll rows (all when None), in row order."""
    if rows is None:
        store_index, timestamps = polls.store_index, polls.timestamp_us
        active = polls.active
    else:
        store_index, timestamps = polls.store_index[rows], polls.timestamp_us[rows]
        active = polls.active[rows]
    # In place: at Loop scale each temporary is 20 MB of fresh memory.
    keys = rank[store_index]
    keys <<= _RANK_SHIFT
    offset = timestamps - horizon_start
    offset <<= 1
    keys |= offset
    del offset
    keys |= active
    return keys


def _latest_polls(
    polls: Polls,
    horizon_start: int,
    as_of_us: int,
    store_ids: Iterable[str] | None,
) -> _Polls | None:
    """The polls inside the horizon, deduplicated and sorted; None when none is left."""
    timestamps = polls.timestamp_us
    # Sorting the distinct ids once gives each store its rank in the report's order.
    sorted_ids, rank = np.unique(polls.store_ids.astype(object), return_inverse=True)
    if len(sorted_ids) > _MAX_STORES:
        raise ValueError(f"at most {_MAX_STORES} stores per report")
    rank = rank.astype(np.int64)
    keep = timestamps >= horizon_start
    keep &= timestamps <= as_of_us
    if store_ids is not None:
        wanted = np.isin(sorted_ids, object_array(store_ids))
        keep &= wanted[rank][polls.store_index]
    keys = _poll_keys(rank, polls, horizon_start, None)
    if not keep.all():
        keys = keys[keep]  # rows outside the horizon had meaningless keys
    if len(keys) == 0:
        return None
    # Sorting the keys themselves is several times faster than an argsort; polls handed
    # over in store and time order (a worker's part) are checked in ~1 ms instead.
    if (keys[1:] < keys[:-1]).any():
        keys.sort()

    def accepted_keys_of(stores: np.ndarray) -> np.ndarray:
        of_store = np.zeros(len(sorted_ids), dtype=bool)
        of_store[stores] = True
        rows = np.flatnonzero(keep & of_store[rank][polls.store_index])
        return _poll_keys(rank, polls, horizon_start, rows)

    keys = _deduplicate(keys, accepted_keys_of)
    ranks = keys >> _RANK_SHIFT
    store_last = np.append(np.flatnonzero(ranks[1:] != ranks[:-1]), len(keys) - 1)
    report_ranks = ranks[store_last]
    return _Polls(keys, store_last, report_ranks, sorted_ids[report_ranks])


def _deduplicate(
    sorted_keys: np.ndarray, accepted_keys_of: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """One key per (store, timestamp), keeping the status of the poll accepted last.

    `accepted_keys_of(ranks)` gives the keys of those stores' polls in acceptance order.
    """
    # Keys of one poll are equal or an inactive/active pair: they differ by at most 1.
    step = np.diff(sorted_keys)
    near = np.flatnonzero(step <= 1)
    del step
    if len(near) == 0:
        return sorted_keys
    involved = np.union1d(near, near + 1)
    poll = sorted_keys[involved] >> 1
    first = np.ones(len(involved), dtype=bool)
    first[1:] = poll[1:] != poll[:-1]
    group = np.cumsum(first) - 1
    actives = np.bincount(group, weights=sorted_keys[involved] & 1)
    mixed = (actives > 0) & (actives < np.bincount(group))
    if mixed.any():
        conflicting = poll[first][mixed]
        sorted_keys[involved[first][mixed]] = _last_accepted(conflicting, accepted_keys_of)
    return np.delete(sorted_keys, involved[~first])


def _last_accepted(
    conflicting: np.ndarray, accepted_keys_of: Callable[[np.ndarray], np.ndarray]
) -> np.ndarray:
    """For each poll (key >> 1, ascending) the key accepted last among its duplicates."""
    accepted = accepted_keys_of(np.unique(conflicting >> _OFFSET_BITS))
    accepted_poll = accepted >> 1
    slot = np.minimum(np.searchsorted(conflicting, accepted_poll), len(conflicting) - 1)
    matched = conflicting[slot] == accepted_poll
    accepted, slot = accepted[matched], slot[matched]
    # The last key of each poll is the first one when read backwards.
    _, first_backwards = np.unique(slot[::-1], return_index=True)
    return accepted[::-1][first_backwards]


def _window_totals(
    polls: _Polls, intervals: tuple[np.ndarray, np.ndarray, np.ndarray]
) -> tuple[np.ndarray, np.ndarray]:
    """(uptime, business time) per report store and window, in half-microseconds.

    Intervals are (report store number, start, end) in µs since the horizon start,
    disjoint, non-empty and inside the week window.
    """
    keys = polls.keys
    active = (keys & 1).astype(bool)
    # The status timeline on the shared axis: poll i rules until `segment_end[i]`, the
    # midpoint to the store's next poll, or the end of the store's stretch of the axis.
    segment_end = keys & ~1
    segment_end[:-1] += segment_end[1:]
    segment_end[:-1] >>= 1
    segment_end[polls.store_last] = (polls.report_ranks + 1) * _STORE_STRIDE
    # Active time on the axis up to each segment's end.
    active_until_end = np.diff(segment_end, prepend=0)
    active_until_end *= active
    np.cumsum(active_until_end, out=active_until_end)

    def active_time_until(points: np.ndarray) -> np.ndarray:
        segment = np.searchsorted(segment_end, points, side="left")
        return active_until_end[segment] - active[segment] * (segment_end[segment] - points)

    interval_store, interval_start, interval_end = intervals
    store_count = len(polls.report_ids)
    store_base = polls.report_ranks[interval_store] * _STORE_STRIDE
    active_until_interval_end = active_time_until(store_base + 2 * interval_end)
    uptime = np.zeros((store_count, len(WINDOWS)), dtype=np.int64)
    business = np.zeros((store_count, len(WINDOWS)), dtype=np.int64)
    for column, (_, length_us, _) in enumerate(WINDOWS):
        # Intervals lie inside the week already; shorter windows take those reaching in.
        window_start = HORIZON_US - length_us
        rows = np.flatnonzero(interval_end > window_start)
        stores = interval_store[rows]
        start = np.maximum(interval_start[rows], window_start)
        # Per-store sums stay below 2**53, so float64 bincount is exact.
        business[:, column] = np.bincount(
            stores, weights=2 * (interval_end[rows] - start), minlength=store_count
        ).astype(np.int64)
        up = active_until_interval_end[rows] - active_time_until(store_base[rows] + 2 * start)
        uptime[:, column] = np.bincount(stores, weights=up, minlength=store_count).astype(
            np.int64
        )
    return uptime, business


# ---------------------------------------------------------------------------------------
# Business hours as UTC intervals
# ---------------------------------------------------------------------------------------


def _business_intervals(
    report_ids: np.ndarray,
    hours: BusinessHours,
    timezones: Timezones,
    horizon_start: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Each report store's business time inside the week window, as disjoint intervals.

    Returns (store number, start, end) with times in µs since `horizon_start`.
    """
    store_count = len(report_ids)
    number_of = {store_id: i for i, store_id in enumerate(report_ids.tolist())}
    hours_store = np.fromiter(
        (number_of.get(sid, -1) for sid in hours.store_id.tolist()),
        dtype=np.int64,
        count=len(hours.store_id),
    )
    listed = hours_store >= 0
    hours_store = hours_store[listed]
    day = np.asarray(hours.day, dtype=np.int64)[listed]
    start_us = np.asarray(hours.start_us, dtype=np.int64)[listed]
    end_us = np.asarray(hours.end_us, dtype=np.int64)[listed]

    zone_names = [DEFAULT_TIMEZONE]
    zone_number_of = {DEFAULT_TIMEZONE: 0}
    store_zone = np.zeros(store_count, dtype=np.int64)
    for store_id, zone_name in zip(
        timezones.store_id.tolist(), timezones.timezone_str.tolist(), strict=True
    ):
        store = number_of.get(store_id)
        if store is not None:
            if zone_name not in zone_number_of:
                _zone(zone_name)  # fails early and clearly on an unknown zone
                zone_number_of[zone_name] = len(zone_names)
                zone_names.append(zone_name)
            store_zone[store] = zone_number_of[zone_name]

    week_start = HORIZON_US - WEEK_US
    as_of_us = horizon_start + HORIZON_US
    # Local dates whose shifts can reach into the week: zones are within a day of UTC and
    # a shift ends at most two local midnights after its start date.
    first_day = (as_of_us - WEEK_US) // US_PER_DAY - 2
    last_day = as_of_us // US_PER_DAY + 1
    stores, wall_starts, wall_ends = [], [], []
    for date in range(first_day, last_day + 1):
        weekday = (date + 3) % 7  # 1970-01-01 was a Thursday
        rows = day == weekday
        start, end = start_us[rows], end_us[rows]
        end_date = date + (end <= start)
        stores.append(hours_store[rows])
        wall_starts.append(date * US_PER_DAY + start)
        wall_ends.append(
            np.where(end >= END_OF_DAY_US, (end_date + 1) * US_PER_DAY, end_date * US_PER_DAY + end)
        )
    interval_store = np.concatenate(stores)
    wall_start = np.concatenate(wall_starts)
    wall_end = np.concatenate(wall_ends)

    interval_zone = store_zone[interval_store]
    utc_start = wall_start.copy()
    utc_end = wall_end.copy()
    for zone_number, zone_name in enumerate(zone_names):
        rows = interval_zone == zone_number
        if rows.any():
            utc_start[rows] = _wall_to_utc(zone_name, wall_start[rows], first_day, last_day)
            utc_end[rows] = _wall_to_utc(zone_name, wall_end[rows], first_day, last_day)

    always_open = np.ones(store_count, dtype=bool)
    always_open[hours_store] = False
    open_stores = np.flatnonzero(always_open)
    interval_store = np.concatenate([interval_store, open_stores])
    start = np.concatenate([
        np.clip(utc_start - horizon_start, week_start, HORIZON_US),
        np.full(len(open_stores), week_start),
    ])
    end = np.concatenate([
        np.clip(utc_end - horizon_start, week_start, HORIZON_US),
        np.full(len(open_stores), HORIZON_US),
    ])
    return _disjoint(interval_store, start, end)


def _disjoint(
    store: np.ndarray, start: np.ndarray, end: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The union of each store's intervals, as disjoint intervals (same store order)."""
    base = store << (_OFFSET_BITS + 1)
    order = np.argsort(base + start)
    store, start, end = store[order], start[order], end[order]
    # Cut each interval where the ones before it (in start order) ended; what is left
    # never overlaps them. Stores sit apart on the axis, so one running max serves all.
    global_end = base[order] + end
    reached = np.maximum.accumulate(global_end)
    already_covered = np.empty_like(reached)
    already_covered[:1] = 0
    already_covered[1:] = reached[:-1]
    start = np.maximum(start, already_covered - base[order])
    keep = end > start
    return store[keep], start[keep], end[keep]


def _wall_to_utc(zone_name: str, wall_us: np.ndarray, first_day: int, last_day: int) -> np.ndarray:
    """Local wall times (µs, as if UTC) to instants, as `zoneinfo` does with `fold=0`."""
    boundaries, offsets = _zone_offsets(zone_name, first_day, last_day)
    return wall_us - offsets[np.searchsorted(boundaries, wall_us, side="right")]


def _zone(zone_name: str) -> ZoneInfo:
    try:
        return ZoneInfo(zone_name)
    except Exception as exc:  # ZoneInfoNotFoundError; ValueError for malformed keys
        raise ValueError(f"unknown time zone {zone_name!r}") from exc


@lru_cache(maxsize=1024)
def _zone_offsets(zone_name: str, first_day: int, last_day: int) -> tuple[np.ndarray, np.ndarray]:
    """A zone's UTC offsets for wall times on local dates `first_day` … `last_day + 2`.

    A wall time `w` has offset `offsets[searchsorted(boundaries, w, "right")]`. With
    `fold=0`, zoneinfo keeps the old offset for every wall time before the transition
    instant plus the larger of the two offsets: gap times move forward by the gap,
    repeated times take the earlier instant.
    """
    zone = _zone(zone_name)

    def offset_at(epoch_second: int) -> int:
        offset = datetime.fromtimestamp(epoch_second, zone).utcoffset()
        return (offset or timedelta(0)) // timedelta(microseconds=1)

    # Probe every 6 hours (zones never change offset twice that fast), then find each
    # change to the second by bisection: tz database transitions are on whole seconds.
    probe_step = 6 * 3600
    first_second = (first_day - 2) * 86_400
    last_second = (last_day + 4) * 86_400
    boundaries: list[int] = []
    offsets = [offset_at(first_second)]
    previous = first_second
    for probe in range(first_second + probe_step, last_second + 1, probe_step):
        offset = offset_at(probe)
        if offset != offsets[-1]:
            before, after = previous, probe
            while after - before > 1:
                middle = (before + after) // 2
                if offset_at(middle) == offsets[-1]:
                    before = middle
                else:
                    after = middle
            boundaries.append(after * US_PER_SECOND + max(offsets[-1], offset))
            offsets.append(offset)
        previous = probe
    return np.array(boundaries, dtype=np.int64), np.array(offsets, dtype=np.int64)
