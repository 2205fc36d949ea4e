"""storemon.observability.prometheus: a registry per service instance with the process
figures, the exposition of its metrics and of families made for a scrape, and readings
of Kafka made at most so often whatever the scrapes."""

import prometheus_client
from prometheus_client.metrics_core import GaugeMetricFamily
from prometheus_client.parser import text_string_to_metric_families

from storemon.observability.prometheus import Cached, counter_family, exposition, registry


def samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """(sample name, sorted labels) -> value, of a text exposition (which must parse)."""
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def test_a_registry_has_the_process_gc_and_platform_figures_and_no_created_series():
    made = registry()
    prometheus_client.Counter("x_total", "X.", registry=made).inc()
    text = exposition(made)
    for name in (
        "process_resident_memory_bytes",
        "process_cpu_seconds_total",
        "process_open_fds",
        "python_gc_collections_total",
        "python_info",
    ):
        assert f"\n# TYPE {name} " in text, name
    assert samples(text)[("process_resident_memory_bytes", ())] > 0
    assert samples(text)[("x_total", ())] == 1
    assert "_created" not in text


def test_each_registry_is_apart_so_several_services_run_in_one_process():
    first, second = registry(), registry()
    for made in (first, second):  # the same name twice: no clash
        prometheus_client.Counter("x_total", "X.", registry=made)
    assert first is not prometheus_client.REGISTRY
    assert "x_total" not in exposition(prometheus_client.REGISTRY)


def test_families_made_for_a_scrape_follow_the_registrys():
    made = registry()
    counted = counter_family(
        "y_total", "Y.", ("topic", "outcome"), {("t", "b"): 2, ("t", "a"): 1}
    )
    text = exposition(made, [GaugeMetricFamily("z", "Z.", 3), counted])
    assert text.index("python_info") < text.index("# TYPE z gauge")
    assert [line for line in text.splitlines() if line.startswith("y_total")] == [
        'y_total{outcome="a",topic="t"} 1.0',  # in key order
        'y_total{outcome="b",topic="t"} 2.0',
    ]
    assert "# TYPE y_total counter" in text
    assert samples(text)[("z", ())] == 3
    one_label = counter_family("w", "W.", ("one",), {"v": 4})  # a str key: one label
    assert samples(exposition(made, [one_label]))[("w_total", (("one", "v"),))] == 4


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
