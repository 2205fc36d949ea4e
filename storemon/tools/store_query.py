"""`storemon store ID`: one store, live, through the API (GET /stores/{id}[/polls]).

Standard library only: a command that asks one question should start fast.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from storemon.config import Settings
from storemon.uptime.engine import REPORT_COLUMNS

TIMEOUT_S = 10.0


class ApiCallError(Exception):
    """The API answered with an error, or could not be reached: one line saying which."""


def get_json(settings: Settings, path: str) -> dict[str, Any]:
    """The API's JSON answer to GET `path` (which carries its own query string)."""
    url = settings.client_api_url() + path
    headers = {"Accept": "application/json"}
    if settings.api_token:
        headers["Authorization"] = f"Bearer {settings.api_token}"
    request = urllib.request.Request(url, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=TIMEOUT_S) as response:
            return dict(json.load(response))
    except urllib.error.HTTPError as exc:
        try:
            message = json.load(exc)["error"]["message"]
        except (ValueError, KeyError, TypeError):
            message = exc.reason
        retry = exc.headers.get("Retry-After")
        hint = f" (try again in {retry} s)" if retry else ""
        raise ApiCallError(f"{url}: HTTP {exc.code}: {message}{hint}") from None
    except (urllib.error.URLError, OSError) as exc:
        raise ApiCallError(f"{url}: {getattr(exc, 'reason', exc)}") from None


def store_path(store_id: str, as_of: str | None) -> str:
    path = f"/stores/{urllib.parse.quote(store_id, safe='')}"
    return path + (f"?{urllib.parse.urlencode({'as_of': as_of})}" if as_of else "")


def polls(
    settings: Settings, store_id: str, since: str | None, until: str | None
) -> Iterator[dict[str, str]]:
    """Every poll the store's owner holds in [since, until), page after page."""
    query = {name: value for name, value in (("since", since), ("until", until)) if value}
    path: str | None = f"{store_path(store_id, None)}/polls"
    if query:
        path += f"?{urllib.parse.urlencode(query)}"
    while path is not None:
        page = get_json(settings, path)
        yield from page["polls"]
        path = page["next"]


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
