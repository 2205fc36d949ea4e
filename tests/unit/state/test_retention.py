"""The worker's retention policy (storemon/state/retention.py), without Kafka or Faust."""

from storemon.state.layout import poll_day_key
from storemon.state.retention import RETAINED_US, STALE_AFTER_US, SWEEP_EVERY_S, Retention
from storemon.timebase import US_PER_DAY

HOUR_US = 3600 * 1_000_000
FIRST_DAY = 19_375  # 2023-01-18, the Loop data's time


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def hold_days(retention: Retention, partition: int, store_id: str, days: range) -> None:
    for day in days:
        key = poll_day_key(store_id, day)
        retention.add(partition, store_id, day, key, day * US_PER_DAY + 23 * HOUR_US)


def test_one_far_newer_poll_moves_only_its_own_stores_horizon():
    retention = Retention(Clock())
    for store in ("a", "b", "c"):
        hold_days(retention, 0, store, range(FIRST_DAY, FIRST_DAY + 8))
    # A poll of store a dated years later, in the same partition.
    far_day = FIRST_DAY + 3 * 365
    key = poll_day_key("a", far_day)
    retention.add(0, "a", far_day, key, far_day * US_PER_DAY)
    assert len(retention.pop_expired(0, "a")) == 8, "a's own old days are behind its horizon"
    assert retention.pop_expired(0, "b") == []
    assert retention.pop_expired(0, "c") == []
    assert retention.cutoff_us(0, "b") == (FIRST_DAY + 7) * US_PER_DAY + 23 * HOUR_US - RETAINED_US
    assert retention.pop_stale(0) == [], "the median store is not behind: nobody is stale"


def test_a_store_keeps_the_days_a_report_inside_its_last_eight_days_needs():
    retention = Retention(Clock())
    hold_days(retention, 0, "s", range(FIRST_DAY, FIRST_DAY + 30))
    expired = retention.pop_expired(0, "s")
    newest_us = (FIRST_DAY + 29) * US_PER_DAY + 23 * HOUR_US
    # A report at as_of = newest - 8 days reads back to newest - 16 days.
    oldest_needed_us = newest_us - 16 * US_PER_DAY
    expired_days = sorted(int(key.split()[1]) for key in expired)
    assert all((day + 1) * US_PER_DAY <= oldest_needed_us for day in expired_days)
    # Whole days only, at most one day more than needed is kept.
    assert expired_days == list(range(FIRST_DAY, (newest_us - RETAINED_US) // US_PER_DAY))
    assert retention.pop_expired(0, "s") == [], "each key is named once"


def test_stores_far_behind_their_partitions_median_are_dropped_at_most_once_per_sweep():
    clock = Clock()
    retention = Retention(clock)
    recent = FIRST_DAY + 60
    for store in ("a", "b", "c"):
        hold_days(retention, 0, store, range(recent, recent + 2))
    hold_days(retention, 0, "closed", range(FIRST_DAY, FIRST_DAY + 2))
    hold_days(retention, 1, "alone", range(FIRST_DAY, FIRST_DAY + 2))
    assert sorted(retention.pop_stale(0)) == [
        poll_day_key("closed", FIRST_DAY),
        poll_day_key("closed", FIRST_DAY + 1),
    ]
    assert retention.cutoff_us(0, "closed") is None, "the store is forgotten"
    assert retention.pop_stale(1) == [], "partition 1 has its own median"
    # Another store goes stale; it is named at the next sweep, not before.
    hold_days(retention, 0, "late", range(FIRST_DAY, FIRST_DAY + 1))
    clock.now += SWEEP_EVERY_S / 2
    assert retention.pop_stale(0) == []
    clock.now += SWEEP_EVERY_S
    assert retention.pop_stale(0) == [poll_day_key("late", FIRST_DAY)]
    assert (recent - FIRST_DAY) * US_PER_DAY > STALE_AFTER_US


def test_partitions_no_longer_owned_are_forgotten_with_every_key_they_held():
    retention = Retention(lambda: 0.0)
    days = range(FIRST_DAY, FIRST_DAY + 2)
    for partition, store_id in ((0, "a"), (1, "b"), (2, "c")):
        hold_days(retention, partition, store_id, days)
    gone = retention.keep_only({1})
    assert sorted(gone) == sorted(
        poll_day_key(store_id, day) for store_id in ("a", "c") for day in days
    )
    assert retention.store_days(0) == {} and retention.store_days(2) == {}
    assert list(retention.store_days(1)) == ["b"]
    assert set(retention.max_timestamp_us) == {1}


def test_the_held_polls_and_stores_follow_every_change_without_a_scan():
    """The worker's state-size gauges: kept as polls come and go, equal to a count."""
    retention = Retention(lambda: 0.0)
    held: dict[bytes, int] = {}

    def add(partition: int, store_id: str, day: int, polls: int) -> None:
        key = poll_day_key(store_id, day)
        retention.add(partition, store_id, day, key, day * US_PER_DAY + HOUR_US, polls)
        held[key] = polls

    for day in range(FIRST_DAY, FIRST_DAY + 3):
        add(0, "a", day, 24)
        add(1, "b", day, 10)
    add(0, "a", FIRST_DAY, 30)  # a day's value rewritten: counted once, at its new size
    assert (retention.held_stores(), retention.held_polls()) == (2, sum(held.values())) == (2, 108)
    far_day = FIRST_DAY + 40
    add(0, "a", far_day, 5)  # a's old days fall behind its horizon
    for key in retention.pop_expired(0, "a"):
        del held[key]
    assert retention.held_polls() == sum(held.values()) == 35
    for key in retention.keep_only({0}):  # partition 1 handed over
        del held[key]
    assert (retention.held_stores(), retention.held_polls()) == (1, 5)
