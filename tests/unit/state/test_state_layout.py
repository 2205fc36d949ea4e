"""The store-day value layout shared by the worker and the reporter (storemon/state/layout.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storemon.state.layout import (
    ACTIVE,
    INACTIVE,
    POLLS_TABLE,
    SCHEDULES_TABLE,
    ZONES_TABLE,
    StateRecordError,
    decode_day,
    encode_day,
    latest_timestamp_us,
    poll_day_key,
    split_poll_day_key,
)
from storemon.state.reader import StateView
from storemon.state.snapshot import SnapshotBuilder
from storemon.timebase import US_PER_DAY, day_of

polls_of_a_day = st.dictionaries(
    st.integers(19_000 * US_PER_DAY, 19_001 * US_PER_DAY - 1), st.sampled_from([ACTIVE, INACTIVE])
)


@given(polls_of_a_day.filter(bool))
def test_a_day_value_round_trips_sorted_and_knows_its_latest_poll(polls):
    value = encode_day(polls)
    assert len(value) == 9 * len(polls)
    assert decode_day(value) == dict(sorted(polls.items()))
    assert latest_timestamp_us(value) == max(polls)


def test_keys_name_store_and_day():
    key = poll_day_key("store-1", day_of(19_000 * US_PER_DAY + 5))
    assert key == b"store-1 19000"
    assert split_poll_day_key(key) == ("store-1", 19_000)


def test_the_view_and_the_snapshot_see_the_same_polls_in_time_order():
    view = StateView()
    late = {19_001 * US_PER_DAY + 10: ACTIVE, 19_001 * US_PER_DAY + 5: INACTIVE}
    early = {19_000 * US_PER_DAY + 7: ACTIVE}
    view.apply(POLLS_TABLE, b"s 19001", encode_day(late))
    view.apply(POLLS_TABLE, b"s 19000", encode_day(early))
    view.apply(POLLS_TABLE, b"t 19000", encode_day(early))
    view.apply(POLLS_TABLE, b"t 19000", None)
    day = 19_000 * US_PER_DAY
    expected = {day + 7: True, day + US_PER_DAY + 5: False, day + US_PER_DAY + 10: True}
    assert view.polls == {"s": expected}
    assert view.poll_count() == 3

    polls = SnapshotBuilder.polls(view.slice())
    assert list(polls.store_ids) == ["s"]
    assert polls.store_index.tolist() == [0, 0, 0]
    assert polls.timestamp_us.tolist() == list(expected)
    assert polls.active.tolist() == list(expected.values())


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        (POLLS_TABLE, b"garbage", encode_day({19_000 * US_PER_DAY: ACTIVE})),
        (POLLS_TABLE, b"s notaday", encode_day({19_000 * US_PER_DAY: ACTIVE})),
        (POLLS_TABLE, None, encode_day({19_000 * US_PER_DAY: ACTIVE})),
        (POLLS_TABLE, b"\xff 19000", encode_day({19_000 * US_PER_DAY: ACTIVE})),
        (POLLS_TABLE, b" 19000", encode_day({19_000 * US_PER_DAY: ACTIVE})),
        (POLLS_TABLE, b"s 19000", b"x"),
        (POLLS_TABLE, b"s 19000", b""),
        (POLLS_TABLE, b"s 19000", b"\0" * 8 + b"z"),
        (SCHEDULES_TABLE, b"s", b"{not json"),
        (SCHEDULES_TABLE, b"s", b'{"store_id": "other", "hours": []}'),
        (SCHEDULES_TABLE, None, b'{"store_id": "s", "hours": []}'),
        (ZONES_TABLE, b"s", b"Not/AZone"),
        (ZONES_TABLE, b"s", b"\xff"),
        (ZONES_TABLE, b"has space", b"UTC"),
    ],
)
def test_a_record_that_breaks_the_layout_is_refused_and_changes_nothing(table, key, value):
    view = StateView()
    view.apply(POLLS_TABLE, b"s 19000", encode_day({19_000 * US_PER_DAY + 1: INACTIVE}))
    view.apply(ZONES_TABLE, b"s", b"Europe/Paris")
    before = (view.polls, dict(view.zones), dict(view.schedules))
    with pytest.raises(StateRecordError):
        view.apply(table, key, value)
    assert (view.polls, dict(view.zones), dict(view.schedules)) == before
