"""One worked example per rule of report-semantics.md."""
from __future__ import annotations

import numpy as np
import pytest

from storemon.inputs.values import parse_local_time, parse_timestamp
from storemon.uptime.engine import (
    REPORT_HEADER,
    BusinessHours,
    Polls,
    Timezones,
    compute,
)

US = 1_000_000
MINUTE = 60 * US
HOUR = 60 * MINUTE
DAY = 24 * HOUR


def polls(*rows: tuple[str, str, bool]) -> Polls:
    """(store, ISO instant, active) rows, in acceptance order."""
    return Polls.from_columns(
        [r[0] for r in rows], [parse_timestamp(r[1]) for r in rows], [r[2] for r in rows]
    )


def hours(*rows: tuple[str, int, str, str]) -> BusinessHours:
    """(store, weekday, start, end) rows."""
    return BusinessHours(
        store_id=np.array([r[0] for r in rows], dtype=object),
        day=np.array([r[1] for r in rows], dtype=np.int64),
        start_us=np.array([parse_local_time(r[2]) for r in rows], dtype=np.int64),
        end_us=np.array([parse_local_time(r[3]) for r in rows], dtype=np.int64),
    )


def zones(**by_store: str) -> Timezones:
    return Timezones(
        store_id=np.array(list(by_store), dtype=object),
        timezone_str=np.array(list(by_store.values()), dtype=object),
    )


def one_row(report, store: str = "s") -> dict[str, list[float]]:
    """A store's exact durations (µs) per window: hour, day, week."""
    (row,) = np.flatnonzero(report.store_ids == store)
    return {
        "up": report.uptime_us[row].tolist(),
        "down": report.downtime_us[row].tolist(),
        "business": report.business_us[row].tolist(),
    }


def csv_text(report) -> str:
    return report.to_csv_bytes().decode()


# 2023-01-23 is a Monday (day 0); Chicago is UTC-6 in January.


def test_loop_example_flip_halfway_between_polls():
    report = compute(
        polls(("s", "2023-01-23T16:14:00Z", True), ("s", "2023-01-23T17:15:00Z", False)),
        hours(("s", 0, "09:00", "12:00")),
        zones(s="America/Chicago"),
        as_of=parse_timestamp("2023-01-23T19:00:00Z"),
    )
    durations = one_row(report)
    assert durations["up"][1] == HOUR + 44 * MINUTE + 30 * US
    assert durations["down"][1] == HOUR + 15 * MINUTE + 30 * US
    assert csv_text(report).splitlines()[1] == "s,0,1.74,1.74,0,1.26,1.26"


def test_default_as_of_is_the_latest_poll_of_any_store():
    report = compute(
        polls(("s", "2023-01-23T16:14:00Z", True), ("other", "2023-01-23T19:00:00Z", True)),
        hours(("s", 0, "09:00", "12:00")),
        store_ids=["s"],
    )
    assert report.as_of_us == parse_timestamp("2023-01-23T19:00:00Z")
    assert list(report.store_ids) == ["s"]


def test_status_before_the_first_and_after_the_last_poll_extends():
    report = compute(
        polls(("s", "2023-01-23T16:30:00Z", False)),  # one poll, mid-shift
        hours(("s", 0, "09:00", "12:00")),
        as_of=parse_timestamp("2023-01-23T20:00:00Z"),
    )
    assert one_row(report)["down"][1] == 3 * HOUR
    assert one_row(report)["up"][1] == 0


def test_overnight_shift_runs_into_the_next_local_date():
    # Friday 22:00 to Saturday 02:00 in Chicago = Sat 04:00Z to 08:00Z.
    report = compute(
        polls(("s", "2023-01-28T05:00:00Z", True), ("s", "2023-01-28T07:00:00Z", False)),
        hours(("s", 4, "22:00", "02:00")),
        as_of=parse_timestamp("2023-01-28T12:00:00Z"),
    )
    durations = one_row(report)
    assert durations["business"][1] == 4 * HOUR
    assert durations["up"][1] == 2 * HOUR  # flip at 06:00Z


def test_equal_start_and_end_is_24_hours():
    report = compute(
        polls(("s", "2023-01-23T18:00:00Z", True)),
        hours(("s", 0, "12:00", "12:00")),  # Monday noon to Tuesday noon
        zones(s="UTC"),
        as_of=parse_timestamp("2023-01-25T00:00:00Z"),
    )
    assert one_row(report)["business"][2] == 24 * HOUR


@pytest.mark.parametrize("end", ["23:59:59", "23:59:59.999999"])
def test_end_of_day_is_midnight_and_joins_the_next_days_shift(end):
    report = compute(
        polls(("s", "2023-01-24T03:00:00Z", True)),
        # Monday 18:00 to midnight, then Tuesday 00:00-02:00: one shift of 8 hours.
        hours(("s", 0, "18:00:00", end), ("s", 1, "00:00:00", "02:00:00"),
              ("t", 2, "00:00:00", end)),
        zones(s="UTC", t="UTC"),
        as_of=parse_timestamp("2023-01-26T00:00:00Z"),
    )
    assert one_row(report)["business"][2] == 8 * HOUR


def test_full_day_row():
    report = compute(
        polls(("s", "2023-01-25T12:00:00Z", True)),
        hours(("s", 2, "00:00:00", "23:59:59")),
        zones(s="UTC"),
        as_of=parse_timestamp("2023-01-26T00:00:00Z"),
    )
    assert one_row(report)["business"][1] == 24 * HOUR
    assert csv_text(report).splitlines()[1] == "s,60,24,24,0,0,0"


def test_overlapping_rows_count_once():
    report = compute(
        polls(("s", "2023-01-23T12:00:00Z", True)),
        hours(("s", 0, "09:00", "12:00"), ("s", 0, "11:00", "14:00"), ("s", 0, "10:00", "10:30")),
        zones(s="UTC"),
        as_of=parse_timestamp("2023-01-24T00:00:00Z"),
    )
    assert one_row(report)["business"][1] == 5 * HOUR


def test_store_without_hours_is_open_all_week():
    report = compute(
        polls(("s", "2023-01-23T12:00:00Z", True), ("s", "2023-01-24T12:00:00Z", False)),
        as_of=parse_timestamp("2023-01-25T00:00:00Z"),
    )
    durations = one_row(report)
    assert durations["business"] == [HOUR, DAY, 7 * DAY]
    # Active from the week's start (before the first poll) to the flip at 01-24T00:00Z.
    assert durations["up"][2] == 6 * DAY
    assert csv_text(report).splitlines()[1] == "s,0,0,144,60,24,24"


def test_store_without_zone_is_in_chicago():
    rows = hours(("s", 0, "09:00", "17:00"), ("t", 0, "09:00", "17:00"))
    status = polls(("s", "2023-01-23T18:00:00Z", True), ("t", "2023-01-23T18:00:00Z", True))
    report = compute(status, rows, zones(t="America/Chicago"),
                     as_of=parse_timestamp("2023-01-23T20:00:00Z"))
    # 09:00 Chicago = 15:00Z: five business hours have passed for both stores.
    assert one_row(report, "s") == one_row(report, "t")
    assert one_row(report, "s")["business"][1] == 5 * HOUR


def test_spring_forward_in_new_york():
    # Sunday 2023-03-12: 02:00 EST jumps to 03:00 EDT (07:00Z).
    report = compute(
        polls(("s", "2023-03-12T12:00:00Z", True)),
        hours(
            ("s", 6, "01:00", "04:00"),  # 06:00Z to 08:00Z: two elapsed hours
            ("s", 6, "02:30", "03:30"),  # 02:30 moves to 03:30: nothing
            ("s", 6, "02:30", "05:00"),  # from 03:30 EDT: 07:30Z to 09:00Z
        ),
        zones(s="America/New_York"),
        as_of=parse_timestamp("2023-03-13T00:00:00Z"),
    )
    assert one_row(report)["business"][1] == 3 * HOUR  # 06:00Z to 09:00Z


def test_spring_forward_week_keeps_wall_clock_hours():
    # 09:00-17:00 every day across the change: still 8 hours a day, 56 in the week.
    report = compute(
        polls(("s", "2023-03-15T12:00:00Z", True)),
        hours(*[("s", day, "09:00", "17:00") for day in range(7)]),
        zones(s="America/New_York"),
        as_of=parse_timestamp("2023-03-16T04:00:00Z"),  # Wednesday midnight, local
    )
    assert one_row(report)["business"][2] == 56 * HOUR


def test_fall_back_in_new_york_takes_the_earlier_instant():
    # Sunday 2023-11-05: 02:00 EDT falls back to 01:00 EST (06:00Z).
    report = compute(
        polls(("s", "2023-11-05T12:00:00Z", True)),
        hours(
            ("s", 6, "01:00", "02:00"),  # 05:00Z (EDT) to 07:00Z (EST): two hours
            ("t", 6, "01:30", "01:45"),  # both in the first pass: 15 minutes
        ),
        zones(s="America/New_York", t="America/New_York"),
        as_of=parse_timestamp("2023-11-06T00:00:00Z"),
    )
    assert one_row(report)["business"][1] == 2 * HOUR


def test_fall_back_ambiguous_times_use_the_first_pass():
    report = compute(
        polls(("t", "2023-11-05T05:00:00Z", True)),
        hours(("t", 6, "01:30", "01:45")),
        zones(t="America/New_York"),
        as_of=parse_timestamp("2023-11-05T05:40:00Z"),  # 01:40 EDT, the first pass
    )
    assert one_row(report, "t")["business"][0] == 10 * MINUTE


def test_day_window_across_a_clock_change_is_24_elapsed_hours():
    report = compute(
        polls(("s", "2023-11-05T12:00:00Z", True)),
        timezones=zones(s="America/New_York"),
        as_of=parse_timestamp("2023-11-06T05:00:00Z"),  # local midnight, 25 hours later
    )
    assert one_row(report)["business"][1] == DAY


def test_duplicate_timestamps_last_accepted_wins():
    at = "2023-01-23T12:00:00Z"
    report = compute(
        polls(("s", at, True), ("s", at, False), ("t", at, False), ("t", at, True)),
        as_of=parse_timestamp("2023-01-23T13:00:00Z"),
    )
    assert one_row(report, "s")["up"][0] == 0
    assert one_row(report, "t")["up"][0] == HOUR


def test_polls_after_as_of_and_before_the_horizon_are_ignored():
    report = compute(
        polls(
            ("s", "2023-01-23T11:00:00Z", True),
            ("s", "2023-01-23T12:00:01Z", False),  # later than as_of: ignored
            ("old", "2023-01-15T11:59:59Z", True),  # older than as_of - 8 days: no row
            ("future", "2023-01-23T12:00:00.000001Z", True),  # no row
            ("edge", "2023-01-15T12:00:00Z", False),  # exactly as_of - 8 days: counts
        ),
        as_of=parse_timestamp("2023-01-23T12:00:00Z"),
    )
    assert list(report.store_ids) == ["edge", "s"]
    assert one_row(report)["up"][0] == HOUR


def test_midpoints_can_fall_on_half_microseconds():
    report = compute(
        Polls.from_columns(["s", "s"], [0, 3], [True, False]),
        as_of=3,
    )
    # Active until the midpoint at 1.5 µs (and before the first poll), then inactive.
    assert one_row(report)["down"][0] == 1.5
    assert one_row(report)["up"][0] == HOUR - 1.5


def test_rows_sorted_by_store_id_as_text_and_exact_header():
    report = compute(
        polls(*[(store, "2023-01-23T12:00:00Z", True) for store in ["9", "10", "a", "0042"]])
    )
    lines = csv_text(report).splitlines()
    assert lines[0] == REPORT_HEADER == (
        "store_id,uptime_last_hour,uptime_last_day,uptime_last_week,"
        "downtime_last_hour,downtime_last_day,downtime_last_week"
    )
    assert [line.split(",")[0] for line in lines[1:]] == ["0042", "10", "9", "a"]


def test_rounding_to_two_places_printed_minimally():
    as_of = parse_timestamp("2023-01-24T00:00:00Z")
    report = compute(
        # The flip falls 11.495 h before as_of: 12.505 h up in the day, a tie at the
        # third decimal that rounds half up.
        Polls.from_columns(
            ["s", "s"], [as_of - 20 * HOUR, as_of - 2 * HOUR - 59 * MINUTE - 24 * US],
            [True, False],
        ),
        as_of=as_of,
    )
    assert one_row(report)["up"][1] == 12 * HOUR + 30 * MINUTE + 18 * US
    figures = csv_text(report).splitlines()[1].split(",")[1:]
    assert figures == ["0", "12.51", "156.51", "60", "11.5", "11.5"]


def test_store_ids_limit_the_report():
    report = compute(
        polls(("a", "2023-01-23T12:00:00Z", True), ("b", "2023-01-23T12:00:00Z", True)),
        store_ids=["b", "missing"],
    )
    assert list(report.store_ids) == ["b"]


def test_no_polls_gives_the_header_only():
    report = compute(Polls.from_columns([], [], []))
    assert csv_text(report) == REPORT_HEADER + "\n"


def test_unknown_zone_is_an_error():
    with pytest.raises(ValueError, match="Mars/Olympus"):
        compute(polls(("s", "2023-01-23T12:00:00Z", True)), timezones=zones(s="Mars/Olympus"))
