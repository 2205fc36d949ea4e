"""pandas DataFrames as engine inputs and output, for tests that build inputs as frames.

The engine itself is numpy only; this adapter lives with the tests that use it,
so pandas is a test dependency, not a runtime one.
"""
from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime, time

import numpy as np
import pandas as pd

from storemon.timebase import US_PER_SECOND
from storemon.uptime.engine import (
    REPORT_COLUMNS,
    BusinessHours,
    Polls,
    Report,
    Timezones,
    compute,
    object_array,
)


def compute_report(
    polls: pd.DataFrame,
    hours: pd.DataFrame | None = None,
    timezones: pd.DataFrame | None = None,
    as_of: int | datetime | None = None,
    store_ids: Iterable[str] | None = None,
) -> pd.DataFrame:
    """The report as a DataFrame with columns `REPORT_COLUMNS` (figures rounded to 0.01).

    - `polls`: `store_id`, `timestamp_utc` (int64 epoch µs or datetime64) and `active`
      (bool) or `status` ("active"/"inactive", any case), in acceptance order.
    - `hours`: `store_id`, `day` (or `dayOfWeek`), `start_time_local`, `end_time_local`,
      times as int µs since midnight, `datetime.time` or timedelta.
    - `timezones`: `store_id`, `timezone_str`.
    """
    report = compute(
        polls_from_frame(polls),
        hours_from_frame(hours) if hours is not None else None,
        timezones_from_frame(timezones) if timezones is not None else None,
        as_of=as_of,
        store_ids=store_ids,
    )
    return report_frame(report)


def report_frame(report: Report) -> pd.DataFrame:
    """The report with the CSV's columns (figures as rounded floats)."""
    frame = pd.DataFrame(report.figures / 100.0, columns=list(REPORT_COLUMNS[1:]))
    frame.insert(0, "store_id", pd.Series(report.store_ids, dtype=object))
    frame.attrs["as_of_us"] = report.as_of_us
    return frame


def polls_from_frame(frame: pd.DataFrame) -> Polls:
    store_column = frame["store_id"]
    if isinstance(store_column.dtype, pd.CategoricalDtype):
        store_index = store_column.cat.codes.to_numpy(np.int64)
        store_ids = object_array(str(sid) for sid in store_column.cat.categories)
    else:
        store_index, uniques = pd.factorize(store_column)
        store_ids = object_array(str(sid) for sid in uniques)
    if (store_index < 0).any():
        raise ValueError("polls: store_id is missing in some rows")
    timestamp_column = frame["timestamp_utc"]
    if isinstance(timestamp_column.dtype, pd.DatetimeTZDtype):
        timestamp_column = timestamp_column.dt.tz_convert("UTC").dt.tz_localize(None)
    if np.issubdtype(timestamp_column.dtype, np.datetime64):
        timestamp_us = timestamp_column.to_numpy("datetime64[us]").astype(np.int64)
    else:
        timestamp_us = timestamp_column.to_numpy(np.int64)
    if "active" in frame:
        active = frame["active"].to_numpy(bool)
    else:
        status = frame["status"].astype(str).str.lower()
        if not status.isin(["active", "inactive"]).all():
            raise ValueError("polls: status must be 'active' or 'inactive'")
        active = (status == "active").to_numpy(bool)
    return Polls(store_ids, store_index, timestamp_us, active)


def _time_of_day_us(values: pd.Series) -> np.ndarray:
    if np.issubdtype(values.dtype, np.timedelta64):
        return values.to_numpy("timedelta64[us]").astype(np.int64)
    if values.dtype == object:
        return np.fromiter(
            (
                ((v.hour * 60 + v.minute) * 60 + v.second) * US_PER_SECOND + v.microsecond
                if isinstance(v, time) else int(v)
                for v in values
            ),
            dtype=np.int64,
            count=len(values),
        )
    return values.to_numpy(np.int64)


def hours_from_frame(frame: pd.DataFrame) -> BusinessHours:
    day_column = "day" if "day" in frame else "dayOfWeek"
    return BusinessHours(
        store_id=object_array(str(sid) for sid in frame["store_id"]),
        day=frame[day_column].to_numpy(np.int64),
        start_us=_time_of_day_us(frame["start_time_local"]),
        end_us=_time_of_day_us(frame["end_time_local"]),
    )


def timezones_from_frame(frame: pd.DataFrame) -> Timezones:
    return Timezones(
        store_id=object_array(str(sid) for sid in frame["store_id"]),
        timezone_str=object_array(str(zone) for zone in frame["timezone_str"]),
    )


def csv_bytes_of_frame(frame: pd.DataFrame) -> bytes:
    """The CSV of a frame from `compute_report`, as `Report.to_csv_bytes` writes it."""
    figures = np.rint(frame[list(REPORT_COLUMNS[1:])].to_numpy(np.float64) * 100)
    store_ids = frame["store_id"].to_numpy(object)
    order = np.argsort(store_ids, kind="stable")
    figures = figures.astype(np.int64)[order]
    report = Report(None, store_ids[order], np.zeros(0), np.zeros(0), figures)
    return report.to_csv_bytes()
