"""The engine against a brute-force reading of report-semantics.md, on random inputs.

The brute force is deliberately naive: each business-hours row becomes an interval per
local date through `datetime(..., tzinfo=ZoneInfo(...))` (fold=0), and every second of
every window is sampled for "in business hours?" and "status of the nearest poll?".
Polls sit on even seconds and every other boundary on whole seconds, so each sampled
second is uniform and the counts are exact: the engine must agree to the microsecond.
"""
from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from fractions import Fraction
from zoneinfo import ZoneInfo

import numpy as np
from frames import compute_report, csv_bytes_of_frame
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from storemon.uptime.engine import BusinessHours, Polls, Timezones, compute

US = 1_000_000
DAY_S = 86_400
WINDOW_SECONDS = (3600, DAY_S, 7 * DAY_S)
WINDOW_UNITS = (60, 3600, 3600)
HORIZON_S = 8 * DAY_S
DEFAULT_ZONE = "America/Chicago"
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)

ZONES = [
    "America/New_York", "America/Chicago", "Europe/London", "Australia/Lord_Howe",
    "Asia/Kolkata", "UTC", "America/Sao_Paulo", "Asia/Beirut",
]
# Instants near daylight-saving changes of those zones (and one quiet week).
ANCHORS = [
    datetime(2023, 3, 12, 7, tzinfo=UTC),    # New York / Chicago spring forward
    datetime(2023, 11, 5, 6, tzinfo=UTC),    # New York / Chicago fall back
    datetime(2023, 3, 26, 1, tzinfo=UTC),    # London spring forward; Beirut
    datetime(2023, 10, 29, 1, tzinfo=UTC),   # London fall back; Beirut
    datetime(2023, 4, 1, 15, tzinfo=UTC),    # Lord Howe: 30-minute change
    datetime(2023, 9, 30, 15, tzinfo=UTC),   # Lord Howe
    datetime(2023, 1, 25, 18, tzinfo=UTC),   # the Loop data's week
]
INTERESTING_TIMES = [
    time(0, 0), time(0, 30), time(1, 0), time(1, 30), time(2, 0), time(2, 30),
    time(3, 0), time(9, 0), time(12, 0), time(17, 45), time(23, 0), time(23, 59, 59),
]


# ---------------------------------------------------------------------------------------
# Brute force
# ---------------------------------------------------------------------------------------


def _instant(local_date: date, wall: time, zone: ZoneInfo) -> int:
    """Epoch seconds of a local wall time (fold=0: gaps move forward, overlaps earlier)."""
    moment = datetime.combine(local_date, wall, tzinfo=zone)
    return int((moment - EPOCH).total_seconds())


def brute_business_intervals(rows, zone_name, first_s, last_s):
    """Every (open, close) instant pair of a schedule around [first_s, last_s)."""
    zone = ZoneInfo(zone_name)
    first_date = datetime.fromtimestamp(first_s, UTC).date() - timedelta(days=3)
    last_date = datetime.fromtimestamp(last_s, UTC).date() + timedelta(days=2)
    if not rows:
        return [(first_s, last_s)]
    intervals = []
    local_date = first_date
    while local_date <= last_date:
        for day, start, end in rows:
            if local_date.weekday() != day:
                continue
            end_date = local_date + timedelta(days=1) if end <= start else local_date
            if end >= time(23, 59, 59):
                close = _instant(end_date + timedelta(days=1), time(0), zone)
            else:
                close = _instant(end_date, end, zone)
            intervals.append((_instant(local_date, start, zone), close))
        local_date += timedelta(days=1)
    return intervals


def brute_force(polls, hours, zones, as_of_s):
    """{store: (uptime seconds per window, business seconds per window)}.

    polls: [(store, epoch seconds, active)] in acceptance order; hours: {store: rows};
    zones: {store: zone}.
    """
    latest: dict[str, dict[int, bool]] = {}
    for store, moment, active in polls:
        if as_of_s - HORIZON_S <= moment <= as_of_s:
            latest.setdefault(store, {})[moment] = active  # the last accepted wins
    result = {}
    week_start = as_of_s - WINDOW_SECONDS[-1]
    # Sample the middle of every second of the week.
    samples = np.arange(week_start, as_of_s, dtype=np.float64) + 0.5
    for store, by_time in latest.items():
        times = np.array(sorted(by_time), dtype=np.float64)
        statuses = np.array([by_time[t] for t in sorted(by_time)])
        after = np.clip(np.searchsorted(times, samples), 0, len(times) - 1)
        before = np.clip(after - 1, 0, len(times) - 1)
        use_before = np.abs(samples - times[before]) <= np.abs(times[after] - samples)
        status = np.where(use_before, statuses[before], statuses[after])
        open_now = np.zeros(len(samples), dtype=bool)
        intervals = brute_business_intervals(
            hours.get(store, []), zones.get(store, DEFAULT_ZONE), week_start, as_of_s
        )
        for opens, closes in intervals:
            open_now |= (samples >= opens) & (samples < closes)
        uptime, business = [], []
        for seconds in WINDOW_SECONDS:
            inside = open_now & (samples >= as_of_s - seconds)
            business.append(int(inside.sum()))
            uptime.append(int((inside & status).sum()))
        result[store] = (uptime, business)
    return result


def hundredths_half_up(seconds: int, unit: int) -> int:
    value = Fraction(seconds, unit) * 100
    return int(value + Fraction(1, 2))  # floor(x + 1/2) for x >= 0


# ---------------------------------------------------------------------------------------
# Engine inputs
# ---------------------------------------------------------------------------------------


def _time_us(wall: time) -> int:
    return ((wall.hour * 60 + wall.minute) * 60 + wall.second) * US + wall.microsecond


def engine_inputs(polls, hours, zones):
    polls = Polls.from_columns(
        [store for store, _, _ in polls],
        [moment * US for _, moment, _ in polls],
        [active for _, _, active in polls],
    )
    rows = [(store, *row) for store, store_rows in hours.items() for row in store_rows]
    business_hours = BusinessHours(
        store_id=np.array([r[0] for r in rows], dtype=object),
        day=np.array([r[1] for r in rows], dtype=np.int64),
        start_us=np.array([_time_us(r[2]) for r in rows], dtype=np.int64),
        end_us=np.array([_time_us(r[3]) for r in rows], dtype=np.int64),
    )
    timezones = Timezones(
        store_id=np.array(list(zones), dtype=object),
        timezone_str=np.array(list(zones.values()), dtype=object),
    )
    return polls, business_hours, timezones


# ---------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------

wall_times = st.one_of(
    st.sampled_from(INTERESTING_TIMES),
    st.builds(time, st.integers(0, 23), st.sampled_from([0, 15, 30, 45])),
)
schedule_rows = st.tuples(st.integers(0, 6), wall_times, wall_times)
schedules = st.one_of(
    st.just([]),  # no rows: 24x7
    st.lists(schedule_rows, min_size=1, max_size=6),
    # the same hours every day, often overnight
    st.tuples(wall_times, wall_times).map(lambda se: [(d, se[0], se[1]) for d in range(7)]),
)


@st.composite
def scenarios(draw):
    anchor = draw(st.sampled_from(ANCHORS))
    as_of_s = int(anchor.timestamp()) + draw(st.integers(-5 * DAY_S, 5 * DAY_S))
    store_ids = draw(st.lists(st.sampled_from(["7", "10", "a-1", "b", "0042"]), min_size=1,
                              max_size=3, unique=True))
    polls = []
    hours = {}
    zones = {}
    for store in store_ids:
        # Polls on even seconds, some outside [as_of - 8 days, as_of].
        count = draw(st.integers(1, 25))
        offsets = draw(st.lists(st.integers(-HORIZON_S // 2 - 1800, 1800), min_size=count,
                                max_size=count))
        for offset in offsets:
            polls.append((store, as_of_s + 2 * offset, draw(st.booleans())))
        if draw(st.booleans()) and polls:  # a duplicate timestamp, maybe another status
            _, moment, _ = draw(st.sampled_from([p for p in polls if p[0] == store]))
            polls.append((store, moment, draw(st.booleans())))
        if draw(st.integers(0, 4)) > 0:
            hours[store] = draw(schedules)
        if draw(st.integers(0, 4)) > 0:
            zones[store] = draw(st.sampled_from(ZONES))
    # Schedules and zones of a store without polls must not matter.
    hours["ghost"] = [(0, time(9), time(17))]
    zones["ghost"] = "Europe/London"
    shuffled = draw(st.permutations(polls))
    return shuffled, hours, zones, as_of_s


# ---------------------------------------------------------------------------------------
# Properties
# ---------------------------------------------------------------------------------------


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_engine_matches_brute_force(scenario):
    polls, hours, zones, as_of_s = scenario
    expected = brute_force(polls, hours, zones, as_of_s)
    report = compute(*engine_inputs(polls, hours, zones), as_of=as_of_s * US)

    assert list(report.store_ids) == sorted(expected)
    for row, store in enumerate(report.store_ids):
        uptime, business = expected[store]
        assert report.uptime_us[row].tolist() == [s * US for s in uptime], store
        assert report.business_us[row].tolist() == [s * US for s in business], store
        downtime = [b - u for u, b in zip(uptime, business, strict=True)]
        figures = [
            hundredths_half_up(seconds, unit)
            for values in (uptime, downtime)
            for seconds, unit in zip(values, WINDOW_UNITS, strict=True)
        ]
        assert report.figures[row].tolist() == figures, store


@settings(max_examples=40, deadline=None)
@given(scenarios())
def test_uptime_plus_downtime_is_business_time(scenario):
    polls, hours, zones, as_of_s = scenario
    report = compute(*engine_inputs(polls, hours, zones), as_of=as_of_s * US)
    assert np.array_equal(report.uptime_us + report.downtime_us, report.business_us)
    assert (report.uptime_us >= 0).all() and (report.downtime_us >= 0).all()
    # Business time never exceeds the window.
    assert (report.business_us <= np.array(WINDOW_SECONDS) * US).all()


@settings(max_examples=25, deadline=None)
@given(scenarios())
def test_dataframe_api_gives_the_same_csv(scenario):
    import pandas as pd

    polls, hours, zones, as_of_s = scenario
    report = compute(*engine_inputs(polls, hours, zones), as_of=as_of_s * US)
    frame = compute_report(
        pd.DataFrame({
            "store_id": [p[0] for p in polls],
            "timestamp_utc": pd.to_datetime([p[1] for p in polls], unit="s", utc=True),
            "status": ["ACTIVE" if p[2] else "inactive" for p in polls],
        }),
        pd.DataFrame(
            [(s, d, a, b) for s, rows in hours.items() for d, a, b in rows],
            columns=["store_id", "dayOfWeek", "start_time_local", "end_time_local"],
        ),
        pd.DataFrame({"store_id": list(zones), "timezone_str": list(zones.values())}),
        as_of=datetime.fromtimestamp(as_of_s, UTC),
    )
    assert csv_bytes_of_frame(frame) == report.to_csv_bytes()


DST_ZONES = ["America/New_York", "Europe/London", "Australia/Lord_Howe", "Asia/Beirut"]
night_times = st.builds(time, st.integers(0, 3), st.sampled_from([0, 30]))


@st.composite
def dst_scenarios(draw):
    """A store open around the night hours every day, in a zone changing its clocks."""
    anchor = draw(st.sampled_from(ANCHORS[:6]))
    as_of_s = int(anchor.timestamp()) + draw(st.integers(0, 3 * DAY_S))
    rows = [(day, draw(night_times), draw(night_times)) for day in range(7)]
    polls = [
        ("s", as_of_s - 2 * draw(st.integers(0, HORIZON_S // 2)), draw(st.booleans()))
        for _ in range(draw(st.integers(1, 30)))
    ]
    return polls, {"s": rows}, {"s": draw(st.sampled_from(DST_ZONES))}, as_of_s


@settings(max_examples=60, deadline=None)
@given(dst_scenarios())
def test_engine_matches_brute_force_across_clock_changes(scenario):
    polls, hours, zones, as_of_s = scenario
    expected = brute_force(polls, hours, zones, as_of_s)
    report = compute(*engine_inputs(polls, hours, zones), as_of=as_of_s * US)
    for row, store in enumerate(report.store_ids):
        uptime, business = expected[store]
        assert report.business_us[row].tolist() == [s * US for s in business]
        assert report.uptime_us[row].tolist() == [s * US for s in uptime]
