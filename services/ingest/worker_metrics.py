"""The worker's `GET /metrics` (prometheus_client's text format): what it accepted and
rejected, the size of the state of the partitions it owns, and the process's memory,
CPU and GC.

Counters are this process's own since it started; with several workers, sum
them. State figures cover only the partitions this worker holds now, so the
sum over workers is the whole state.
"""

from __future__ import annotations

import re
from collections import Counter

from prometheus_client.metrics_core import GaugeMetricFamily

from storemon.inputs.values import RowError
from storemon.messages.records import UNKNOWN_FIELD
from storemon.observability import metric_names as names
from storemon.observability import prometheus
from storemon.observability.prometheus import counter_family

#: `observations.17.status` -> `observations.status`: one label value per field, not per entry.
_ENTRY_INDEX = re.compile(r"\.\d+")


class WorkerMetrics:
    """Counted in plain Counters, made into prometheus_client families at scrape time:
    the ingest path counts, and a prometheus_client child's labels() costs ~10x more."""

    def __init__(self) -> None:
        #: This worker's own (the process, GC and platform collectors).
        self.registry = prometheus.registry()
        #: (topic, "accepted" / "rejected" / "routed") -> polls, schedules or zones
        self.events: Counter[tuple[str, str]] = Counter()
        #: (topic, field blamed) -> rejections
        self.rejections: Counter[tuple[str, str]] = Counter()
        #: table -> changelog records skipped for breaking the state layout
        self.skipped_state_records: Counter[str] = Counter()
        #: "computed" / "skipped" / "failed" / "invalid" -> report tasks answered
        self.report_parts: Counter[str] = Counter()

    def accepted(self, topic: str, count: int = 1) -> None:
        self.events[(topic, "accepted")] += count

    def routed(self, topic: str) -> None:
        """A record found on another partition than its key's, sent on to that one."""
        self.events[(topic, "routed")] += 1

    def skipped_state_record(self, table: str) -> None:
        self.skipped_state_records[table] += 1

    def rejected(self, topic: str, error: RowError) -> None:
        self.events[(topic, "rejected")] += 1
        # A producer's unknown field names are unbounded: one label value for them all.
        if error.reason == UNKNOWN_FIELD:
            field = "(unknown field)"
        else:
            field = _ENTRY_INDEX.sub("", error.field) or "(record)"
        self.rejections[(topic, field)] += 1

    def render(self, stores: int, polls: int, greatest_event_time_us: int | None) -> str:
        """The exposition, given the stores and polls held here (kept current as the
        state changes: a scrape scans nothing)."""
        families = [
            counter_family(
                names.WORKER_EVENTS,
                "Records (polls: batch entries) consumed.",
                ("topic", "outcome"),
                self.events,
            ),
            counter_family(
                names.WORKER_REJECTED,
                "Rejections sent to the dead-letter topic.",
                ("topic", "field"),
                self.rejections,
            ),
            counter_family(
                names.WORKER_STATE_RECORDS_SKIPPED,
                "Changelog records skipped while recovering: they break the state layout.",
                ("table",),
                self.skipped_state_records,
            ),
            counter_family(
                names.WORKER_REPORT_PARTS,
                "Report tasks answered: parts computed and stored, skipped (report ended or"
                " part stored already), failed, or invalid.",
                ("outcome",),
                self.report_parts,
            ),
            GaugeMetricFamily(
                names.WORKER_STORES, "Stores with polls in this worker's state.", stores
            ),
            GaugeMetricFamily(names.WORKER_POLLS, "Polls in this worker's state.", polls),
        ]
        if greatest_event_time_us is not None:
            families.append(
                GaugeMetricFamily(
                    names.WORKER_GREATEST_EVENT_TIME,
                    "Greatest poll time seen on this worker's partitions (Unix seconds).",
                    greatest_event_time_us / 1e6,
                )
            )
        return prometheus.exposition(self.registry, families)
