"""Merging a batch of polls into store-days (storemon/state/day_merge.py), without Faust."""
from __future__ import annotations

from storemon.inputs.values import Poll
from storemon.state.day_merge import merge_batch, statuses_by_day, valid_day
from storemon.state.layout import ACTIVE, INACTIVE, decode_day, encode_day, poll_day_key
from storemon.timebase import US_PER_DAY

DAY = 19_000
T0 = DAY * US_PER_DAY


def poll(offset_us: int, status: str = "active") -> Poll:
    return Poll("s", T0 + offset_us, status)  # type: ignore[arg-type]


def test_polls_are_grouped_by_utc_day_and_a_later_entry_wins():
    days = statuses_by_day([poll(5), poll(US_PER_DAY + 1), poll(5, "inactive")], None)
    assert days == {DAY: {T0 + 5: INACTIVE}, DAY + 1: {T0 + US_PER_DAY + 1: ACTIVE}}


def test_polls_older_than_the_cutoff_are_left_out():
    assert statuses_by_day([poll(5), poll(10)], cutoff_us=T0 + 6) == {DAY: {T0 + 10: ACTIVE}}


def test_a_batch_merges_into_the_held_day_and_wins_over_it():
    held = {poll_day_key("s", DAY): encode_day({T0 + 1: ACTIVE, T0 + 5: ACTIVE})}
    [write] = merge_batch("s", [poll(5, "inactive"), poll(9)], None, held.get)
    assert write.key == poll_day_key("s", DAY) and write.day == DAY
    assert decode_day(write.value) == {T0 + 1: ACTIVE, T0 + 5: INACTIVE, T0 + 9: ACTIVE}


def test_a_replayed_batch_writes_nothing():
    held = {poll_day_key("s", DAY): encode_day({T0 + 1: ACTIVE, T0 + 5: INACTIVE})}
    assert list(merge_batch("s", [poll(1), poll(5, "inactive")], None, held.get)) == []


def test_a_broken_held_value_is_overwritten_by_the_batch():
    held = {poll_day_key("s", DAY): b"not a day value"}
    [write] = merge_batch("s", [poll(3)], None, held.get)
    assert decode_day(write.value) == {T0 + 3: ACTIVE}
    assert valid_day(b"not a day value") is None and valid_day(None) is None


def test_one_write_per_day_touched():
    writes = list(merge_batch("s", [poll(i * US_PER_DAY // 2) for i in range(6)], None, {}.get))
    assert [w.day for w in writes] == [DAY, DAY + 1, DAY + 2]
