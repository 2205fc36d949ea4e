"""deploy/monitoring: Prometheus scrapes what the services serve, and the Grafana dashboard
asks only for metrics the code emits, through the provisioning docker-compose mounts."""

import json
import math
import re
from pathlib import Path

import pytest
import yaml

from storemon.api.metrics import KafkaFigures, Metrics, ReportFigures
from storemon.api.owners import PartitionState
from storemon.config import (
    DEFAULT_API_PORT,
    DEFAULT_REPORTER_METRICS_PORT,
    DEFAULT_WORKER_METRICS_PORT,
)
from storemon.database.reports_db import DurationBucket
from storemon.ingest.worker_metrics import WorkerMetrics
from storemon.kafka.lag import PartitionLag
from storemon.observability import metric_names
from storemon.reporter.metrics import ReporterMetrics

REPO = Path(__file__).resolve().parents[3]
MONITORING = REPO / "deploy" / "monitoring"
#: storemon's own, and prometheus_client's figures of each process.
METRIC_NAME = re.compile(r"\b(?:storemon|process|python)_[a-z0-9_]+")
HISTOGRAM_SAMPLES = ("_bucket", "_sum", "_count")


@pytest.fixture(scope="module")
def prometheus() -> dict:
    return yaml.safe_load((MONITORING / "prometheus.yml").read_text())


@pytest.fixture(scope="module")
def dashboard() -> dict:
    return json.loads((MONITORING / "grafana-dashboard.json").read_text())


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((REPO / "docker-compose.yml").read_text())


def scrape_targets(prometheus: dict) -> dict[str, list[str]]:
    """`host:port/path` of every target, by job."""
    return {
        job["job_name"]: [
            f"{target}{job.get('metrics_path', '/metrics')}"
            for static in job["static_configs"]
            for target in static["targets"]
        ]
        for job in prometheus["scrape_configs"]
    }


def test_prometheus_scrapes_the_api_the_worker_and_the_reporter_on_their_default_ports(
    prometheus,
):
    targets = scrape_targets(prometheus)
    assert targets["storemon-api"] == [f"127.0.0.1:{DEFAULT_API_PORT}/metrics"]
    assert targets["storemon-worker"] == [f"127.0.0.1:{DEFAULT_WORKER_METRICS_PORT}/metrics"]
    assert targets["storemon-reporter"] == [f"127.0.0.1:{DEFAULT_REPORTER_METRICS_PORT}/metrics"]


def expressions(dashboard: dict) -> list[str]:
    return [
        target["expr"]
        for panel in dashboard["panels"]
        for target in panel.get("targets", [])
    ]


def family(sample_name: str, families: set[str]) -> str:
    """The family of a sample name (a histogram's `_bucket` -> the histogram)."""
    for suffix in HISTOGRAM_SAMPLES:
        if sample_name.removesuffix(suffix) in families:
            return sample_name.removesuffix(suffix)
    return sample_name


def test_the_dashboard_is_importable_and_every_panel_queries_prometheus(dashboard):
    assert isinstance(dashboard["schemaVersion"], int) and dashboard["title"]
    assert dashboard["uid"] and dashboard["id"] is None  # importable anywhere
    (datasource,) = dashboard["templating"]["list"]
    assert (datasource["type"], datasource["query"]) == ("datasource", "prometheus")
    panels = [panel for panel in dashboard["panels"] if panel["type"] != "row"]
    assert panels
    ids = [panel["id"] for panel in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in panels:
        assert panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel
        assert panel["targets"], panel["title"]
        ref_ids = [target["refId"] for target in panel["targets"]]
        assert len(ref_ids) == len(set(ref_ids)), panel["title"]
        for target in panel["targets"]:
            assert METRIC_NAME.search(target["expr"]), target["expr"]


def test_every_metric_the_dashboard_asks_for_is_one_the_code_emits(dashboard):
    emitted = {
        *metric_names.API_METRICS,
        *metric_names.WORKER_METRICS,
        *metric_names.REPORTER_METRICS,
        *metric_names.PROCESS_METRICS,
    }
    used = {
        family(name, emitted)
        for expr in expressions(dashboard)
        for name in METRIC_NAME.findall(expr)
    }
    assert used <= emitted, sorted(used - emitted)
    # What the operations issue asks the dashboard to show.
    assert {
        metric_names.CONSUMER_LAG,
        metric_names.REPORT_DURATION,
        metric_names.REPORTS,
        metric_names.EVENTS,
        metric_names.WORKER_EVENTS,
        metric_names.WORKER_STORES,
        metric_names.WORKER_POLLS,
        metric_names.STATE_LAG_SECONDS,
        metric_names.HTTP_REQUEST_DURATION,
        *metric_names.PROCESS_METRICS,
    } <= used


def test_report_latency_panels_are_quantiles_of_the_report_duration_histogram(dashboard):
    latency = [expr for expr in expressions(dashboard) if metric_names.REPORT_DURATION in expr]
    quantiles = {re.match(r"histogram_quantile\((0\.\d+),", expr).group(1) for expr in latency}
    assert quantiles == {"0.5", "0.99"}
    assert all(f"{metric_names.REPORT_DURATION}_bucket[" in expr for expr in latency)


def test_http_latency_panels_are_quantiles_of_the_request_duration_histogram_per_route(
    dashboard,
):
    duration = metric_names.HTTP_REQUEST_DURATION
    latency = [expr for expr in expressions(dashboard) if duration in expr]
    quantiles = {re.match(r"histogram_quantile\((0\.\d+),", expr).group(1) for expr in latency}
    assert quantiles == {"0.5", "0.99"}
    # Summed over API replicas (each counts its own requests), kept apart by route.
    assert all(f"sum by (route, le) (rate({duration}_bucket[" in expr for expr in latency)


def rendered_families(text: str) -> dict[str, str]:
    """storemon's metric families -> their # TYPE (prometheus_client's own, process_* and
    python_*, left out)."""
    return dict(re.findall(r"^# TYPE (storemon_\S+) (\S+)$", text, flags=re.MULTILINE))


def test_the_api_serves_every_api_metric_in_the_list_and_its_histogram_is_cumulative():
    buckets = [
        DurationBucket(0.5, 2, 0.6),
        DurationBucket(1.0, 0, 0.0),
        DurationBucket(2.5, 1, 2.0),
        DurationBucket(math.inf, 1, 700.0),
    ]
    lag = [PartitionLag("storemon-worker", "store-status", 0, committed=5, end=12, lag=7,
                        lag_seconds=3.5)]
    reports = ReportFigures({"Running": 1, "Complete": 4, "Failed": 0}, buckets)
    state = {0: PartitionState(stores=10, polls=1850, newest_poll_us=1_674_670_000_000_000)}
    text = Metrics().render(reports, KafkaFigures(lag, dead_letters=3), state)
    assert set(rendered_families(text)) == set(metric_names.API_METRICS)
    assert rendered_families(text)[metric_names.REPORT_DURATION] == "histogram"
    duration = metric_names.REPORT_DURATION
    assert [line for line in text.splitlines() if line.startswith(duration)] == [
        f'{duration}_bucket{{le="0.5"}} 2.0',
        f'{duration}_bucket{{le="1.0"}} 2.0',
        f'{duration}_bucket{{le="2.5"}} 3.0',
        f'{duration}_bucket{{le="+Inf"}} 4.0',
        f"{duration}_count 4.0",
        f"{duration}_sum 702.6",
    ]
    # prometheus_client writes labels in name order.
    lag_labels = 'group="storemon-worker",partition="0",topic="store-status"'
    assert f"{metric_names.CONSUMER_LAG}{{{lag_labels}}} 7.0" in text
    assert f"{metric_names.CONSUMER_LAG_SECONDS}{{{lag_labels}}} 3.5" in text
    assert f"{metric_names.DEAD_LETTERS} 3.0" in text
    assert f'{metric_names.STATE_POLLS}{{partition="0"}} 1850.0' in text
    assert rendered_families(text)[metric_names.HTTP_REQUEST_DURATION] == "histogram"


def test_compose_runs_prometheus_and_grafana_on_request_with_these_files(compose):
    services = compose["services"]
    mounts = {}
    for name in ("prometheus", "grafana"):
        service = services[name]
        assert service["profiles"] == ["monitoring"], name
        # prometheus.yml's targets are loopback addresses: the host's published ports.
        assert service["network_mode"] == "host", name
        for volume in service["volumes"]:
            source, target, *_ = volume.split(":")
            assert (REPO / source).is_file(), volume
            mounts[target] = REPO / source
    assert mounts["/etc/prometheus/prometheus.yml"] == MONITORING / "prometheus.yml"
    assert services["api"]["ports"] == [f"127.0.0.1:{DEFAULT_API_PORT}:{DEFAULT_API_PORT}"]
    assert "127.0.0.1:9101:9101" in services["worker"]["ports"]
    # On the host's network, they listen on its loopback only.
    assert "--web.listen-address=127.0.0.1:9090" in services["prometheus"]["command"]
    assert services["grafana"]["environment"]["GF_SERVER_HTTP_ADDR"] == "127.0.0.1"
    # Grafana's provisioning: the datasource, and a dashboard folder holding the JSON.
    datasource_file = mounts["/etc/grafana/provisioning/datasources/storemon.yml"]
    (datasource,) = yaml.safe_load(datasource_file.read_text())["datasources"]
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://127.0.0.1:9090"  # Prometheus's own default port
    dashboards_file = mounts["/etc/grafana/provisioning/dashboards/storemon.yml"]
    (provider,) = yaml.safe_load(dashboards_file.read_text())["providers"]
    dashboard_json = MONITORING / "grafana-dashboard.json"
    dashboard_mounts = [target for target, source in mounts.items() if source == dashboard_json]
    assert [str(Path(target).parent) for target in dashboard_mounts] == [
        provider["options"]["path"]
    ]


def test_the_reporter_serves_every_reporter_metric_in_the_list():
    metrics = ReporterMetrics()
    metrics.reports.labels("complete").inc(3)
    text = metrics.render(None)
    assert set(rendered_families(text)) == set(metric_names.REPORTER_METRICS)
    assert f'{metric_names.REPORTER_REPORTS}{{outcome="complete"}} 3.0' in text


def test_the_worker_serves_every_worker_metric_in_the_list():
    text = WorkerMetrics().render(stores=1, polls=2, greatest_event_time_us=3_000_000)
    assert set(rendered_families(text)) == set(metric_names.WORKER_METRICS)
