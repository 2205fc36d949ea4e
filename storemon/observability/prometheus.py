"""Prometheus text exposition (format 0.0.4), shared by every service's /metrics."""

from __future__ import annotations

from collections.abc import Mapping

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def family(lines: list[str], name: str, kind: str, help_text: str) -> None:
    """Start a metric family: its HELP and TYPE lines."""
    lines.append(f"# HELP {name} {help_text}")
    lines.append(f"# TYPE {name} {kind}")


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def labels(**pairs: str) -> str:
    """`{name="value",...}`, values escaped; empty when there are none."""
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs.items()) + "}"


def family_by_label(
    lines: list[str], name: str, kind: str, help_text: str, label: str, values: Mapping[str, int]
) -> None:
    """A family of one sample per value of one label, in label order."""
    family(lines, name, kind, help_text)
    for value, count in sorted(values.items()):
        lines.append(f"{name}{labels(**{label: value})} {count}")
