"""What `storemon store ID` prints of a live store answer (GET /stores/{id}) for people."""

from __future__ import annotations

from typing import Any

from storemon.uptime.engine import REPORT_COLUMNS


def describe(answer: dict[str, Any]) -> str:
    """The answer of GET /stores/{id} for people."""
    latest = answer["latest_poll"]
    lines = [
        f"store {answer['store_id']} (partition {answer['partition']}, "
        f"served by {answer['served_by']})",
        f"as of {answer['as_of']}: local time {answer['local_time']} in {answer['timezone']}"
        + ("" if answer["timezone_given"] else " (no zone given: the default)"),
        "in business hours: " + ("yes" if answer["in_business_hours"] else "no")
        + ("" if answer["business_hours_given"] else " (no hours given: open 24x7)"),
        "latest poll: "
        + ("none" if latest is None else f"{latest['timestamp_utc']} {latest['status']}"),
    ]
    figures = answer["figures"]
    if figures is None:
        lines.append("no poll in the 8 days before as_of: not in a report")
        return "\n".join(lines)
    headers = ("last hour (min)", "last day (h)", "last week (h)")
    lines.append(f"{'':<10}" + "".join(f"{header:>17}" for header in headers))
    for kind, columns in (("uptime", REPORT_COLUMNS[1:4]), ("downtime", REPORT_COLUMNS[4:7])):
        lines.append(f"{kind:<10}" + "".join(f"{figures[c]:>17.2f}" for c in columns))
    return "\n".join(lines)
