"""The reporter's /metrics: its own work, and how far each state partition's owner is
behind, with what Kafka could not give left out."""

import re

from prometheus_client.parser import text_string_to_metric_families

from storemon.kafka.lag import PartitionLag
from storemon.observability import metric_names as names
from storemon.reporter.metrics import ReporterMetrics
from storemon.state.lag import StateLag
from storemon.timebase import US_PER_SECOND

HOUR_US = 3600 * US_PER_SECOND
T0 = 1_700_000_000 * US_PER_SECOND


def samples(text: str, family: str) -> list[tuple[str, dict[str, str], float]]:
    """The samples of a family (a counter's named without `_total`, as the parser does)."""
    return [
        (sample.name, sample.labels, sample.value)
        for parsed in text_string_to_metric_families(text)
        if parsed.name == family.removesuffix("_total")
        for sample in parsed.samples
    ]


def state_lag() -> StateLag:
    return StateLag(
        records=[
            PartitionLag("storemon-worker", "store-status", 0, committed=10, end=12, lag=2),
            PartitionLag("storemon-worker", "store-status", 1, committed=None, end=3, lag=3),
        ],
        # Partition 0 two hours behind; 1 ahead of its last record (a late poll): 0;
        # 2 has accepted nothing yet, 3 has nothing produced: no lag in seconds for them.
        accepted_us={0: T0 - 2 * HOUR_US, 1: T0 + HOUR_US, 3: T0},
        produced_us={0: T0, 1: T0, 2: T0},
    )


def test_the_state_lag_in_seconds_is_produced_minus_accepted_where_both_are_known():
    assert state_lag().seconds_behind() == {0: 7200.0, 1: 0.0}


def test_every_reporter_family_is_rendered_with_its_samples():
    metrics = ReporterMetrics()
    metrics.reports.labels("complete").inc(2)
    metrics.outstanding.update({"r1": 3, "r2": 1})
    metrics.durations.observe(0.3)
    metrics.durations.observe(12.0)
    text = metrics.render(state_lag())
    assert {
        family for family in re.findall(r"^# TYPE (\S+) ", text, re.MULTILINE)
        if family.startswith("storemon_")
    } == set(names.REPORTER_METRICS)
    # Every outcome from 0 on.
    assert samples(text, names.REPORTER_REPORTS) == [
        (names.REPORTER_REPORTS, {"outcome": "complete"}, 2),
        (names.REPORTER_REPORTS, {"outcome": "failed"}, 0),
        (names.REPORTER_REPORTS, {"outcome": "skipped"}, 0),
    ]
    assert samples(text, names.REPORTER_REPORTS_GATHERING) == [
        (names.REPORTER_REPORTS_GATHERING, {}, 2)
    ]
    assert samples(text, names.REPORTER_PARTS_OUTSTANDING) == [
        (names.REPORTER_PARTS_OUTSTANDING, {}, 4)
    ]
    duration = names.REPORTER_REPORT_DURATION
    assert f'{duration}_bucket{{le="0.5"}} 1.0' in text
    assert f'{duration}_bucket{{le="+Inf"}} 2.0' in text
    assert f"{duration}_count 2.0" in text
    assert samples(text, names.REPORTER_KAFKA_UP) == [(names.REPORTER_KAFKA_UP, {}, 1)]
    assert samples(text, names.STATE_LAG_RECORDS) == [
        (names.STATE_LAG_RECORDS, {"topic": "store-status", "partition": "0"}, 2),
        (names.STATE_LAG_RECORDS, {"topic": "store-status", "partition": "1"}, 3),
    ]
    assert samples(text, names.STATE_LAG_SECONDS) == [
        (names.STATE_LAG_SECONDS, {"partition": "0"}, 7200.0),
        (names.STATE_LAG_SECONDS, {"partition": "1"}, 0.0),
    ]
    newest = names.STATE_NEWEST_POLL
    assert samples(text, newest) == [
        (newest, {"partition": "0"}, (T0 - 2 * HOUR_US) / US_PER_SECOND),
        (newest, {"partition": "1"}, (T0 + HOUR_US) / US_PER_SECOND),
        (newest, {"partition": "3"}, T0 / US_PER_SECOND),
    ]


def test_while_kafka_cannot_be_read_its_figures_are_left_out_and_the_rest_served():
    metrics = ReporterMetrics()
    metrics.outstanding["r1"] = 4
    metrics.reasked_parts.inc(2)
    text = metrics.render(None)
    assert samples(text, names.REPORTER_KAFKA_UP) == [(names.REPORTER_KAFKA_UP, {}, 0)]
    for family in (names.STATE_LAG_RECORDS, names.STATE_LAG_SECONDS, names.STATE_NEWEST_POLL):
        assert f"# TYPE {family} gauge" in text
        assert samples(text, family) == []
    assert samples(text, names.REPORTER_PARTS_OUTSTANDING) == [
        (names.REPORTER_PARTS_OUTSTANDING, {}, 4)
    ]
    assert samples(text, names.REPORTER_PARTS_REASKED) == [
        (names.REPORTER_PARTS_REASKED, {}, 2)
    ]
    assert samples(text, "process_resident_memory_bytes")
