"""How a batch of one store's polls merges into the store-days it touches.

Pure: the worker gives it the batch, the store's retention cutoff and a way to
read a held day value, and gets back only the day values that change, so a
replayed or duplicated poll writes nothing. Within a batch a later entry for
the same instant wins; against state, the batch wins.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import NamedTuple

from storemon.inputs.values import Poll
from storemon.state.layout import (
    ACTIVE,
    INACTIVE,
    StateRecordError,
    check_day_value,
    decode_day,
    encode_day,
    latest_timestamp_us,
    poll_day_key,
)
from storemon.timebase import day_of


class DayWrite(NamedTuple):
    """A store-day whose value the batch changes."""

    key: bytes
    day: int
    value: bytes


def statuses_by_day(polls: Iterable[Poll], cutoff_us: int | None) -> dict[int, dict[int, bytes]]:
    """{UTC day: {timestamp µs: status byte}}, in batch order (a later entry wins); polls
    older than `cutoff_us` are left out (accepted, but older than the store keeps)."""
    days: dict[int, dict[int, bytes]] = {}
    for poll in polls:
        if cutoff_us is not None and poll.timestamp_us < cutoff_us:
            continue
        status = ACTIVE if poll.status == "active" else INACTIVE
        days.setdefault(day_of(poll.timestamp_us), {})[poll.timestamp_us] = status
    return days


def valid_day(value: bytes | None) -> bytes | None:
    """A held day value, or None when absent or broken (a broken one is overwritten)."""
    if value is None:
        return None
    try:
        check_day_value(value)
    except StateRecordError:
        return None
    return value


def merge_batch(
    store_id: str,
    polls: Iterable[Poll],
    cutoff_us: int | None,
    held: Callable[[bytes], bytes | None],
) -> Iterator[DayWrite]:
    """The writes a batch of `store_id`'s polls makes: one per store-day whose value changes."""
    for day, statuses in statuses_by_day(polls, cutoff_us).items():
        key = poll_day_key(store_id, day)
        held_value = valid_day(held(key))
        if held_value and min(statuses) > latest_timestamp_us(held_value):
            # All newer than what is held (pollers send in time order): appended as is.
            value = held_value + encode_day(statuses)
        else:
            merged = {**decode_day(held_value), **statuses} if held_value else statuses
            value = encode_day(merged)
        if value != held_value:
            yield DayWrite(key, day, value)
