"""The data generator: deterministic, valid input for the readers, Loop-like shape."""
from __future__ import annotations

import numpy as np
import pytest

from storemon.inputs.csv_files import read_hours_csv, read_status_csv, read_timezones_csv
from storemon.tools import generator
from storemon.tools.generator import generate_dataset, generate_sample, loop_data_dir


def read_all(dataset):
    return (
        read_status_csv(dataset.status_path, strict=True),
        read_hours_csv(dataset.hours_path, strict=True),
        read_timezones_csv(dataset.timezones_path, strict=True),
    )


def test_synthetic_set_is_valid_and_loop_shaped(tmp_path):
    dataset = generate_dataset(tmp_path, stores=60, seed=3, synthetic=True)
    status, hours, zones = read_all(dataset)
    assert dataset.stores == 60
    assert status.rows_read == dataset.status_rows
    polls_per_store = np.bincount(status.data.store_index)
    assert len(polls_per_store) == 60
    assert 100 < np.median(polls_per_store) <= 8 * 24 + 2  # about hourly for 8 days
    assert not status.data.active.all() and status.data.active.mean() > 0.5
    span = status.data.timestamp_us.max() - status.data.timestamp_us.min()
    assert span <= 8 * 86_400 * 1_000_000
    assert 0 < hours.rows_read and 0 < zones.rows_read < 60  # some stores use the defaults


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path):
    first = generate_dataset(tmp_path / "a", stores=20, seed=1, synthetic=True)
    again = generate_dataset(tmp_path / "b", stores=20, seed=1, synthetic=True)
    other = generate_dataset(tmp_path / "c", stores=20, seed=2, synthetic=True)
    for name in (generator.STATUS_FILE, generator.HOURS_FILE, generator.TIMEZONES_FILE):
        assert (first.directory / name).read_bytes() == (again.directory / name).read_bytes()
    assert first.status_path.read_bytes() != other.status_path.read_bytes()


def test_sample_set(tmp_path):
    dataset = generate_sample(tmp_path)
    assert dataset.stores == generator.SAMPLE_STORES
    status, _, _ = read_all(dataset)
    assert len(status.data.store_ids) == generator.SAMPLE_STORES


@pytest.mark.skipif(loop_data_dir() is None, reason="the Loop data set is not next to the repo")
def test_loop_stores_keep_their_hours_and_zones(tmp_path):
    dataset = generate_dataset(tmp_path, stores=40, seed=0)
    _, hours, _ = read_all(dataset)
    real_hours = read_hours_csv(generator.LOOP_DATA_DIR / "menu_hours.csv").data
    real = {(s, d, a, b) for s, d, a, b in zip(real_hours.store_id, real_hours.day,
                                                 real_hours.start_us, real_hours.end_us,
                                                 strict=True)}
    ours = set(zip(hours.data.store_id, hours.data.day, hours.data.start_us, hours.data.end_us,
                   strict=True))
    assert ours and ours <= real
    assert dataset.source == str(generator.LOOP_DATA_DIR)


@pytest.mark.skipif(loop_data_dir() is None, reason="the Loop data set is not next to the repo")
def test_more_stores_than_loop_has_copies_real_schedules():
    rng = np.random.default_rng(0)
    store_ids, schedules, zones = generator._stores_from_loop(generator.LOOP_DATA_DIR, 1, rng)
    pool_size = len(
        set(schedules) | set(zones)
        | {s for s in read_status_csv(generator.LOOP_DATA_DIR / "store_status_sample.csv")
           .data.store_ids}
    )
    store_ids, schedules, zones = generator._stores_from_loop(
        generator.LOOP_DATA_DIR, pool_size + 50, rng
    )
    assert len(store_ids) == len(set(store_ids)) == pool_size + 50
    new_ids = store_ids[pool_size:]
    assert all(len(store_id) == 19 and store_id.isdigit() for store_id in new_ids)
    assert any(store_id in schedules for store_id in new_ids)
    assert any(store_id not in schedules and store_id not in zones for store_id in new_ids)
