"""Each service's /metrics through prometheus_client: the API's request durations as a
histogram per route, the process and GC figures everywhere, and a source that cannot be
read left out with its `*_up` gauge 0."""

from collections.abc import Callable

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families

from storemon.api.metrics import (
    HTTP_DURATION_BUCKETS_S,
    KafkaFigures,
    Metrics,
    ReportFigures,
    counting_middleware,
)
from storemon.api.owners import PartitionState
from storemon.database.reports_db import DurationBucket
from storemon.ingest.worker_metrics import WorkerMetrics
from storemon.kafka.lag import PartitionLag
from storemon.observability import metric_names as names
from storemon.observability.prometheus import CONTENT_TYPE
from storemon.reporter.metrics import ReporterMetrics

DURATION = names.HTTP_REQUEST_DURATION


def families(text: str) -> dict[str, list[tuple[str, dict[str, str], float]]]:
    """Family name (a counter's without `_total`, as the parser names it) -> its samples."""
    return {
        family.name: [(sample.name, sample.labels, sample.value) for sample in family.samples]
        for family in text_string_to_metric_families(text)
    }


def buckets(text: str, route: str) -> list[tuple[str, float]]:
    """(le, count) of the request duration histogram of `route`, in exposition order."""
    return [
        (labels["le"], value)
        for name, labels, value in families(text)[DURATION]
        if name == f"{DURATION}_bucket" and labels["route"] == route
    ]


async def test_the_apis_request_durations_are_a_histogram_per_route_growing_with_requests():
    metrics = Metrics()

    async def answer(request: web.Request) -> web.Response:
        return web.Response(text="ok")

    async def serve_metrics(request: web.Request) -> web.Response:
        text = metrics.render(None, None, {})
        return web.Response(body=text.encode(), headers={"Content-Type": CONTENT_TYPE})

    app = web.Application(middlewares=[counting_middleware(metrics)])
    app.router.add_get("/stores/{store_id}", answer)
    app.router.add_get("/metrics", serve_metrics)
    async with TestClient(TestServer(app)) as client:
        for store_id in ("s1", "s2"):
            assert (await client.get(f"/stores/{store_id}")).status == 200
        assert (await client.get("/nowhere")).status == 404
        first = await client.get("/metrics")
        assert first.headers["Content-Type"] == CONTENT_TYPE
        before = buckets(await first.text(), "/stores/{store_id}")
        await client.get("/stores/s3")
        after_text = await (await client.get("/metrics")).text()
    after = buckets(after_text, "/stores/{store_id}")
    bounds = [*(repr(float(bound)) for bound in HTTP_DURATION_BUCKETS_S), "+Inf"]
    assert [le for le, _ in before] == [le for le, _ in after] == bounds
    counts = [count for _, count in after]
    assert counts == sorted(counts)  # cumulative
    assert before[-1] == ("+Inf", 2) and after[-1] == ("+Inf", 3)
    assert all(later >= earlier for (_, earlier), (_, later) in zip(before, after, strict=True))
    samples = families(after_text)
    assert (f"{DURATION}_count", {"route": "/stores/{store_id}"}, 3) in samples[DURATION]
    assert buckets(after_text, "(unmatched)")[-1] == ("+Inf", 1)
    assert (
        names.HTTP_REQUESTS,
        {"method": "GET", "route": "/stores/{store_id}", "status": "200"},
        3,
    ) in samples[names.HTTP_REQUESTS.removesuffix("_total")]


def test_each_api_instance_counts_apart():
    one, other = Metrics(), Metrics()
    one.requests.labels("GET", "/x", "200").inc()
    assert 'route="/x"' in one.render(None, None, {})
    assert 'route="/x"' not in other.render(None, None, {})


def api_exposition() -> str:
    return Metrics().render(None, None, {})


def worker_exposition() -> str:
    return WorkerMetrics().render(0, 0, None)


def reporter_exposition() -> str:
    return ReporterMetrics().render(None)


@pytest.mark.parametrize("exposition", [api_exposition, worker_exposition, reporter_exposition])
def test_every_service_serves_its_process_and_gc_figures(exposition: Callable[[], str]):
    text = exposition()
    for name in names.PROCESS_METRICS:
        assert f"\n# TYPE {name} " in text, name
    served = families(text)
    ((_, _, resident),) = served[names.PROCESS_RESIDENT_MEMORY]
    assert resident > 0
    collections = served[names.PYTHON_GC_COLLECTIONS.removesuffix("_total")]
    assert {labels["generation"] for _, labels, _ in collections} == {"0", "1", "2"}


def test_the_api_leaves_out_what_postgresql_or_kafka_would_give_while_they_are_away():
    reports = ReportFigures({"Complete": 1}, [DurationBucket(float("inf"), 1, 2.0)])
    lag = [PartitionLag("g", "store-status", 0, committed=1, end=3, lag=2, lag_seconds=1.0)]
    state = {0: PartitionState(stores=1, polls=2, newest_poll_us=None)}
    up = families(Metrics().render(reports, KafkaFigures(lag, dead_letters=5), state))
    down = families(Metrics().render(None, None, state))
    read_from_sources = {
        names.REPORTS,
        names.REPORT_DURATION,
        names.DEAD_LETTERS.removesuffix("_total"),
    }
    assert read_from_sources <= set(up)
    assert not read_from_sources & set(down)
    for gauge in (names.DATABASE_UP, names.KAFKA_UP):
        assert up[gauge] == [(gauge, {}, 1)] and down[gauge] == [(gauge, {}, 0)]
    for gauge in (names.CONSUMER_LAG, names.CONSUMER_LAG_SECONDS):
        assert up[gauge] and down[gauge] == []
    # What neither gives is still served.
    assert down[names.STATE_POLLS] == [(names.STATE_POLLS, {"partition": "0"}, 2)]
    assert [labels["outcome"] for _, labels, _ in down[names.EVENTS.removesuffix("_total")]] == [
        "accepted",
        "rejected",
    ]


def test_the_worker_leaves_out_its_newest_poll_time_until_it_has_one():
    assert names.WORKER_GREATEST_EVENT_TIME not in families(WorkerMetrics().render(1, 2, None))
    served = families(WorkerMetrics().render(1, 2, 1_700_000_000_500_000))
    assert served[names.WORKER_GREATEST_EVENT_TIME] == [
        (names.WORKER_GREATEST_EVENT_TIME, {}, 1_700_000_000.5)
    ]
