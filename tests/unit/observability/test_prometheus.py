"""storemon.observability.prometheus: the histogram exposition every service shares, and
readings of Kafka made at most so often whatever the scrapes."""

import math

from storemon.observability.prometheus import Cached, Histogram, histogram


def test_a_histogram_counts_each_observation_in_the_first_bucket_it_fits_and_renders_cumulative():
    durations = Histogram([1.0, 0.5])  # any order
    for seconds in (0.2, 0.5, 0.7, 30.0):
        durations.observe(seconds)
    assert durations.bounds == (0.5, 1.0, math.inf)
    lines: list[str] = []
    histogram(lines, "x_seconds", "Seconds.", durations.buckets())
    assert lines == [
        "# HELP x_seconds Seconds.",
        "# TYPE x_seconds histogram",
        'x_seconds_bucket{le="0.5"} 2',  # le is inclusive
        'x_seconds_bucket{le="1.0"} 3',
        'x_seconds_bucket{le="+Inf"} 4',
        "x_seconds_sum 31.400000",
        "x_seconds_count 4",
    ]


def test_an_empty_histogram_still_has_every_bucket():
    lines: list[str] = []
    histogram(lines, "x", "X.", Histogram([1.0]).buckets())
    assert lines[2:] == [
        'x_bucket{le="1.0"} 0',
        'x_bucket{le="+Inf"} 0',
        "x_sum 0.000000",
        "x_count 0",
    ]


async def test_a_cached_reading_is_made_again_only_when_old_and_a_failure_reads_as_none():
    answers = iter([1, ConnectionError("away"), 3])
    reads = 0

    async def read() -> int:
        nonlocal reads
        reads += 1
        answer = next(answers)
        if isinstance(answer, Exception):
            raise answer
        return answer

    fresh = Cached(read, (ConnectionError,), max_age_s=3600)
    assert await fresh.get() == 1
    assert await fresh.get() == 1 and reads == 1  # cached
    always = Cached(read, (ConnectionError,), max_age_s=0)
    assert await always.get() is None  # the failure
    assert await always.get() == 3
    assert reads == 3
