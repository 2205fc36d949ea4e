"""Synthetic data sets in the Loop CSV format: the benchmark set and the `up --sample` set.

`generate_dataset(out_dir, stores=…, scale=…, seed=…)` writes `store_status.csv`,
`menu_hours.csv` and `timezones.csv`:

- stores: the real stores of the Loop data set (`../shared/data/loop-2023` next to the
  repository: their hours and zones as they are), a random subset of them when fewer
  are asked for, or all of them topped up to the requested count with
  new stores that copy a real store's hours and zone or have neither (so the 24x7 and
  America/Chicago defaults are exercised). Without that folder every store's schedule
  and zone are generated.
- polls: 8 days of about one poll an hour per store, with jitter, dropped polls, poller
  gaps of hours, outages (inactive stretches), a few chronically-down stores and a few
  duplicate polls; lower-case statuses, Loop-form timestamps with trailing zeros of the
  fraction trimmed as in the real file. Rows are in time order, like a stream dump.

Everything is deterministic for a given seed. `generate_sample(out_dir)` makes the small
set that `storemon up --sample` loads.
"""
from __future__ import annotations

import csv
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from storemon.config import REPO_ROOT
from storemon.timebase import US_PER_DAY, US_PER_HOUR, US_PER_SECOND

LOOP_DATA_DIR = REPO_ROOT.parent / "shared" / "data" / "loop-2023"
LOOP_FILES = ("menu_hours.csv", "timezones.csv", "store_status_sample.csv")
STATUS_FILE = "store_status.csv"
HOURS_FILE = "menu_hours.csv"
TIMEZONES_FILE = "timezones.csv"

DEFAULT_STORES = 14_000
SAMPLE_STORES = 200
DAYS = 8

#: The latest poll time of a generated set (the Loop data's last day).
END_US = 1_674_670_402_479_220  # 2023-01-25T18:13:22.479220Z
_ROWS_PER_WRITE = 1 << 20

# Zone shares of the real data set, used when it is not available.
_SYNTHETIC_ZONES = (
    ("America/New_York", 0.60), ("America/Los_Angeles", 0.235), ("America/Chicago", 0.11),
    ("America/Phoenix", 0.03), ("America/Denver", 0.01), ("America/Detroit", 0.005),
    ("Europe/London", 0.005), ("Australia/Lord_Howe", 0.005),
)
_NO_ZONE_SHARE = 0.02
_NO_HOURS_SHARE = 0.18
_NEW_STORE_WITHOUT_DATA_SHARE = 0.2

Schedule = list[tuple[int, str, str]]


@dataclass(frozen=True)
class GeneratedDataset:
    directory: Path
    stores: int
    status_rows: int
    hours_rows: int
    timezone_rows: int
    first_poll_us: int
    last_poll_us: int
    source: str

    @property
    def status_path(self) -> Path:
        return self.directory / STATUS_FILE

    @property
    def hours_path(self) -> Path:
        return self.directory / HOURS_FILE

    @property
    def timezones_path(self) -> Path:
        return self.directory / TIMEZONES_FILE


def loop_data_dir() -> Path | None:
    """The real Loop data folder next to the repository, or None when it is absent."""
    if all((LOOP_DATA_DIR / name).is_file() for name in LOOP_FILES):
        return LOOP_DATA_DIR
    return None


def generate_sample(
    out_dir: str | Path, *, seed: int = 0, synthetic: bool = False
) -> GeneratedDataset:
    """The small data set `storemon up --sample` loads (a few hundred stores, 8 days)."""
    return generate_dataset(out_dir, stores=SAMPLE_STORES, seed=seed, synthetic=synthetic)


def generate_dataset(
    out_dir: str | Path,
    *,
    stores: int | None = None,
    scale: float = 1.0,
    seed: int = 0,
    source_dir: Path | None = None,
    synthetic: bool = False,
) -> GeneratedDataset:
    """Write a data set of `stores` stores (default `DEFAULT_STORES * scale`) to `out_dir`.

    Real stores come from `source_dir` (default: `loop_data_dir()`) unless `synthetic`.
    """
    store_count = stores if stores is not None else round(DEFAULT_STORES * scale)
    if store_count < 1:
        raise ValueError("a data set needs at least one store")
    rng = np.random.default_rng(seed)
    source = None if synthetic else (source_dir or loop_data_dir())
    if source is not None:
        store_ids, schedules, zones = _stores_from_loop(source, store_count, rng)
        source_name = str(source)
    else:
        store_ids, schedules, zones = _synthetic_stores(store_count, rng)
        source_name = "synthetic"

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    hours_rows = _write_rows(
        out / HOURS_FILE,
        ("store_id", "day", "start_time_local", "end_time_local"),
        ((sid, day, start, end) for sid in store_ids for day, start, end in schedules.get(sid, [])),
    )
    timezone_rows = _write_rows(
        out / TIMEZONES_FILE,
        ("store_id", "timezone_str"),
        ((sid, zones[sid]) for sid in store_ids if sid in zones),
    )
    poll_store, poll_us, poll_active = _polls(len(store_ids), rng)
    with (out / STATUS_FILE).open("wb") as handle:
        _write_status(handle, store_ids, poll_store, poll_us, poll_active)
    return GeneratedDataset(
        directory=out,
        stores=len(store_ids),
        status_rows=len(poll_us),
        hours_rows=hours_rows,
        timezone_rows=timezone_rows,
        first_poll_us=int(poll_us.min()),
        last_poll_us=int(poll_us.max()),
        source=source_name,
    )


# ---------------------------------------------------------------------------------------
# Stores, schedules and zones
# ---------------------------------------------------------------------------------------


def _read_csv_rows(path: Path) -> list[dict[str, str]]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def _stores_from_loop(
    source: Path, store_count: int, rng: np.random.Generator
) -> tuple[list[str], dict[str, Schedule], dict[str, str]]:
    schedules: dict[str, Schedule] = {}
    for row in _read_csv_rows(source / "menu_hours.csv"):
        day = row.get("day", row.get("dayOfWeek", ""))
        schedules.setdefault(row["store_id"], []).append(
            (int(day), row["start_time_local"], row["end_time_local"])
        )
    zones = {
        row["store_id"]: row["timezone_str"] for row in _read_csv_rows(source / "timezones.csv")
    }
    polled = {row["store_id"] for row in _read_csv_rows(source / "store_status_sample.csv")}
    pool = sorted(set(schedules) | set(zones) | polled)
    if store_count <= len(pool):
        chosen = sorted(rng.choice(len(pool), size=store_count, replace=False).tolist())
        return [pool[i] for i in chosen], schedules, zones

    store_ids = list(pool)
    taken = set(pool)
    for new_id in _new_store_ids(store_count - len(pool), taken, rng):
        store_ids.append(new_id)
        if rng.random() < _NEW_STORE_WITHOUT_DATA_SHARE:
            continue
        model = pool[int(rng.integers(len(pool)))]
        if model in schedules:
            schedules[new_id] = schedules[model]
        if model in zones:
            zones[new_id] = zones[model]
    return store_ids, schedules, zones


def _new_store_ids(count: int, taken: set[str], rng: np.random.Generator) -> list[str]:
    """Fresh 19-digit store ids, like the Loop data's."""
    new_ids: list[str] = []
    while len(new_ids) < count:
        candidate = str(int(rng.integers(10**18, 9 * 10**18)))
        if candidate not in taken:
            taken.add(candidate)
            new_ids.append(candidate)
    return new_ids


def _synthetic_stores(
    store_count: int, rng: np.random.Generator
) -> tuple[list[str], dict[str, Schedule], dict[str, str]]:
    store_ids = _new_store_ids(store_count, set(), rng)
    names = [name for name, _ in _SYNTHETIC_ZONES]
    shares = np.array([share for _, share in _SYNTHETIC_ZONES])
    zones: dict[str, str] = {}
    schedules: dict[str, Schedule] = {}
    for store_id in store_ids:
        if rng.random() >= _NO_ZONE_SHARE:
            zones[store_id] = names[int(rng.choice(len(names), p=shares / shares.sum()))]
        if rng.random() >= _NO_HOURS_SHARE:
            schedules[store_id] = _synthetic_schedule(rng)
    return store_ids, schedules, zones


def _clock(hour: int, minute: int = 0) -> str:
    return f"{hour:02d}:{minute:02d}:00"


def _synthetic_schedule(rng: np.random.Generator) -> Schedule:
    """One of the usual shapes: daily hours, overnight, split shifts, full days, weekends."""
    kind = rng.choice(["daily", "overnight", "split", "full", "weekend"], p=[0.5, 0.15, 0.15,
                                                                            0.1, 0.1])
    opens = int(rng.integers(6, 12))
    closes = int(rng.integers(19, 24))
    if kind == "daily":
        return [(day, _clock(opens), _clock(closes)) for day in range(7)]
    if kind == "overnight":
        return [(day, _clock(int(rng.integers(16, 20))), _clock(int(rng.integers(0, 4))))
                for day in range(7)]
    if kind == "split":
        return [row for day in range(7)
                for row in ((day, _clock(opens), "14:00:00"), (day, "17:00:00", _clock(closes)))]
    if kind == "full":
        return [(day, "00:00:00", "23:59:59") for day in range(7)]
    return [(day, _clock(opens), _clock(closes)) for day in range(5)] + [
        (day, _clock(opens + 1), "23:59:59") for day in (5, 6)
    ]


def _write_rows(path: Path, header: tuple[str, ...], rows: Iterable[tuple[object, ...]]) -> int:
    """Write a CSV file; returns the number of data rows."""
    with path.open("w", encoding="utf-8", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(header)
        count = 0
        for row in rows:
            writer.writerow(row)
            count += 1
    return count


# ---------------------------------------------------------------------------------------
# Polls
# ---------------------------------------------------------------------------------------


def _polls(store_count: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(store number, epoch µs, active) of every poll, in time order."""
    start_us = END_US - DAYS * US_PER_DAY
    slots = DAYS * 24 + 1
    phase = rng.integers(0, US_PER_HOUR, size=store_count)
    jitter = np.clip(rng.normal(0, 90 * US_PER_SECOND, size=(store_count, slots)),
                     -600 * US_PER_SECOND, 600 * US_PER_SECOND).astype(np.int64)
    times = start_us + phase[:, None] + np.arange(slots) * US_PER_HOUR + jitter
    keep = (times >= start_us) & (times <= END_US)
    keep &= rng.random((store_count, slots)) >= 0.03  # dropped polls
    # Poller gaps: 8% of the stores miss every poll for 3 to 30 hours once.
    gap_store = rng.random(store_count) < 0.08
    gap_start = start_us + rng.integers(0, DAYS * US_PER_DAY, size=store_count)
    gap_end = gap_start + rng.integers(3 * US_PER_HOUR, 30 * US_PER_HOUR, size=store_count)
    keep &= ~(gap_store[:, None] & (times >= gap_start[:, None]) & (times < gap_end[:, None]))

    # Outages: a store-specific number of inactive stretches, 10 minutes to a day long.
    outage_count = rng.choice([0, 1, 3, 8], p=[0.4, 0.35, 0.2, 0.05], size=store_count)
    inactive = np.zeros((store_count, slots), dtype=bool)
    for k in range(int(outage_count.max())):
        has = outage_count > k
        begin = start_us + rng.integers(0, DAYS * US_PER_DAY, size=store_count)
        length = np.clip(rng.exponential(2 * US_PER_HOUR, size=store_count),
                         600 * US_PER_SECOND, US_PER_DAY).astype(np.int64)
        inactive |= has[:, None] & (times >= begin[:, None]) & (times < (begin + length)[:, None])
    chronic = rng.random(store_count) < 0.02
    inactive |= chronic[:, None] & (rng.random((store_count, slots)) < 0.7)
    inactive ^= rng.random((store_count, slots)) < 0.005  # noise

    store = np.broadcast_to(np.arange(store_count)[:, None], times.shape)[keep]
    poll_us, active = times[keep], ~inactive[keep]
    # A few polls arrive twice, the second time possibly with another status.
    duplicate = np.flatnonzero(rng.random(len(poll_us)) < 0.0005)
    store = np.concatenate([store, store[duplicate]])
    poll_us = np.concatenate([poll_us, poll_us[duplicate]])
    active = np.concatenate([active, rng.random(len(duplicate)) < 0.5])
    order = np.argsort(poll_us, kind="stable")
    return store[order], poll_us[order], active[order]


def _civil_from_days(days: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(year, month, day) of days since 1970-01-01 (H. Hinnant's algorithm)."""
    z = days + 719468
    era = z // 146097
    day_of_era = z - era * 146097
    year_of_era = (
        day_of_era - day_of_era // 1460 + day_of_era // 36524 - day_of_era // 146096
    ) // 365
    day_of_year = day_of_era - (365 * year_of_era + year_of_era // 4 - year_of_era // 100)
    month_piece = (5 * day_of_year + 2) // 153
    day = day_of_year - (153 * month_piece + 2) // 5 + 1
    month = month_piece + np.where(month_piece < 10, 3, -9)
    year = year_of_era + era * 400 + (month <= 2)
    return year, month, day


def _loop_timestamps(epoch_us: np.ndarray) -> pa.Array:
    """`2023-01-22 12:09:39.38888 UTC\\n` strings: the Loop form, fraction's zeros trimmed."""
    days, day_us = np.divmod(epoch_us, US_PER_DAY)
    year, month, day = _civil_from_days(days)
    seconds, micros = np.divmod(day_us, US_PER_SECOND)
    hour, minute, second = seconds // 3600, seconds // 60 % 60, seconds % 60
    fields = [(year, 4), (None, "-"), (month, 2), (None, "-"), (day, 2), (None, " "),
              (hour, 2), (None, ":"), (minute, 2), (None, ":"), (second, 2), (None, "."),
              (micros, 6), (None, " UTC\n")]
    columns = []
    for value, spec in fields:
        if value is None:
            columns.append(np.broadcast_to(np.frombuffer(spec.encode(), np.uint8),
                                           (len(epoch_us), len(spec))))
            continue
        powers = 10 ** np.arange(spec - 1, -1, -1)
        columns.append(((value[:, None] // powers) % 10 + ord("0")).astype(np.uint8))
    chars = np.concatenate(columns, axis=1)
    trailing_zeros = np.zeros(len(epoch_us), dtype=np.int64)
    for digits in range(1, 7):
        trailing_zeros += micros % 10**digits == 0
    # Keep the first 19 + 7 - trimmed characters of the date, time and fraction (the dot
    # goes too when the whole fraction is zero), then the suffix.
    position = np.arange(chars.shape[1])
    kept_prefix = 26 - trailing_zeros - (trailing_zeros == 6)
    keep = (position < kept_prefix[:, None]) | (position >= 26)
    lengths = keep.sum(axis=1)
    offsets = np.zeros(len(epoch_us) + 1, dtype=np.int32)
    np.cumsum(lengths, out=offsets[1:])
    data = np.ascontiguousarray(chars[keep])
    return pa.StringArray.from_buffers(len(epoch_us), pa.py_buffer(offsets), pa.py_buffer(data))


def _write_status(
    handle: IO[bytes],
    store_ids: list[str],
    poll_store: np.ndarray,
    poll_us: np.ndarray,
    poll_active: np.ndarray,
) -> None:
    handle.write(b"store_id,status,timestamp_utc\n")
    id_array = pa.array(store_ids, pa.string())
    status_array = pa.array(["inactive", "active"], pa.string())
    for first in range(0, len(poll_us), _ROWS_PER_WRITE):
        rows = slice(first, first + _ROWS_PER_WRITE)
        lines = pc.binary_join_element_wise(
            pc.take(id_array, pa.array(poll_store[rows])),
            pc.take(status_array, pa.array(poll_active[rows].astype(np.int8))),
            _loop_timestamps(poll_us[rows]),
            ",",
        )
        # The joined strings end in newlines and sit back to back: the buffer is the file.
        _, offsets_buffer, data_buffer = lines.buffers()
        offsets = np.frombuffer(offsets_buffer, np.int32, count=len(lines) + 1,
                                offset=lines.offset * 4)
        handle.write(memoryview(data_buffer)[offsets[0] : offsets[-1]])
