"""The store-day value layout shared by the worker and the reporter (storemon/state.py)."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from storemon.reporter.snapshot import SnapshotBuilder
from storemon.state import (
    ACTIVE,
    DAY_US,
    INACTIVE,
    OBSERVATIONS_TABLE,
    SCHEDULES_TABLE,
    ZONES_TABLE,
    StateRecordError,
    StateView,
    day_of,
    decode_day,
    encode_day,
    latest_timestamp_us,
    observation_day_key,
    split_observation_day_key,
)

polls_of_a_day = st.dictionaries(
    st.integers(19_000 * DAY_US, 19_001 * DAY_US - 1), st.sampled_from([ACTIVE, INACTIVE])
)


@given(polls_of_a_day.filter(bool))
def test_a_day_value_round_trips_sorted_and_knows_its_latest_poll(polls):
    value = encode_day(polls)
    assert len(value) == 9 * len(polls)
    assert decode_day(value) == dict(sorted(polls.items()))
    assert latest_timestamp_us(value) == max(polls)


def test_keys_name_store_and_day():
    key = observation_day_key("store-1", day_of(19_000 * DAY_US + 5))
    assert key == b"store-1 19000"
    assert split_observation_day_key(key) == ("store-1", 19_000)


def test_the_view_and_the_snapshot_see_the_same_polls_in_time_order():
    view = StateView()
    late = {19_001 * DAY_US + 10: ACTIVE, 19_001 * DAY_US + 5: INACTIVE}
    early = {19_000 * DAY_US + 7: ACTIVE}
    view.apply(OBSERVATIONS_TABLE, b"s 19001", encode_day(late))
    view.apply(OBSERVATIONS_TABLE, b"s 19000", encode_day(early))
    view.apply(OBSERVATIONS_TABLE, b"t 19000", encode_day(early))
    view.apply(OBSERVATIONS_TABLE, b"t 19000", None)
    expected = {19_000 * DAY_US + 7: True, 19_001 * DAY_US + 5: False, 19_001 * DAY_US + 10: True}
    assert view.observations == {"s": expected}
    assert view.observation_count() == 3

    observations = SnapshotBuilder.observations(view)
    assert list(observations.store_ids) == ["s"]
    assert observations.store_index.tolist() == [0, 0, 0]
    assert observations.timestamp_us.tolist() == list(expected)
    assert observations.active.tolist() == list(expected.values())


@pytest.mark.parametrize(
    ("table", "key", "value"),
    [
        (OBSERVATIONS_TABLE, b"garbage", encode_day({19_000 * DAY_US: ACTIVE})),
        (OBSERVATIONS_TABLE, b"s notaday", encode_day({19_000 * DAY_US: ACTIVE})),
        (OBSERVATIONS_TABLE, None, encode_day({19_000 * DAY_US: ACTIVE})),
        (OBSERVATIONS_TABLE, b"\xff 19000", encode_day({19_000 * DAY_US: ACTIVE})),
        (OBSERVATIONS_TABLE, b" 19000", encode_day({19_000 * DAY_US: ACTIVE})),
        (OBSERVATIONS_TABLE, b"s 19000", b"x"),
        (OBSERVATIONS_TABLE, b"s 19000", b""),
        (OBSERVATIONS_TABLE, b"s 19000", b"\0" * 8 + b"z"),
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
    view.apply(OBSERVATIONS_TABLE, b"s 19000", encode_day({19_000 * DAY_US + 1: INACTIVE}))
    view.apply(ZONES_TABLE, b"s", b"Europe/Paris")
    before = (view.observations, dict(view.zones), dict(view.schedules))
    with pytest.raises(StateRecordError):
        view.apply(table, key, value)
    assert (view.observations, dict(view.zones), dict(view.schedules)) == before
