"""The worker's `GET /metrics` (Prometheus text): what it accepted and rejected, and
the size of the state of the partitions it owns.

Counters are this process's own since it started; with several workers, sum
them. State figures cover only the partitions this worker holds now, so the
sum over workers is the whole state.
"""

from __future__ import annotations

import re
from collections import Counter

from storemon.inputs.values import RowError
from storemon.messages.records import UNKNOWN_FIELD
from storemon.observability import metric_names as names
from storemon.observability.prometheus import family, family_by_label, labels

#: `observations.17.status` -> `observations.status`: one label value per field, not per entry.
_ENTRY_INDEX = re.compile(r"\.\d+")


class WorkerMetrics:
    def __init__(self) -> None:
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
        lines: list[str] = []
        family(lines, names.WORKER_EVENTS, "counter", "Records (polls: batch entries) consumed.")
        for (topic, outcome), count in sorted(self.events.items()):
            lines.append(f"{names.WORKER_EVENTS}{labels(topic=topic, outcome=outcome)} {count}")
        family(lines, names.WORKER_REJECTED, "counter", "Rejections sent to the dead-letter topic.")
        for (topic, field), count in sorted(self.rejections.items()):
            lines.append(f"{names.WORKER_REJECTED}{labels(topic=topic, field=field)} {count}")
        family_by_label(
            lines,
            names.WORKER_STATE_RECORDS_SKIPPED,
            "counter",
            "Changelog records skipped while recovering: they break the state layout.",
            "table",
            self.skipped_state_records,
        )
        family_by_label(
            lines,
            names.WORKER_REPORT_PARTS,
            "counter",
            "Report tasks answered: parts computed and stored, skipped (report ended or"
            " part stored already), failed, or invalid.",
            "outcome",
            self.report_parts,
        )
        family(lines, names.WORKER_STORES, "gauge", "Stores with polls in this worker's state.")
        lines.append(f"{names.WORKER_STORES} {stores}")
        family(lines, names.WORKER_POLLS, "gauge", "Polls in this worker's state.")
        lines.append(f"{names.WORKER_POLLS} {polls}")
        if greatest_event_time_us is not None:
            family(
                lines,
                names.WORKER_GREATEST_EVENT_TIME,
                "gauge",
                "Greatest poll time seen on this worker's partitions (Unix seconds).",
            )
            lines.append(f"{names.WORKER_GREATEST_EVENT_TIME} {greatest_event_time_us / 1e6:.6f}")
        return "\n".join(lines) + "\n"
