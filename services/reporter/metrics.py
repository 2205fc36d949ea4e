"""The reporter's `GET /metrics` (Prometheus text): the reports it ended.

Counters are this process's own since it started; with several reporters, sum them.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from aiohttp import web

from storemon.observability import metric_names as names
from storemon.observability import prometheus
from storemon.observability.prometheus import family_by_label


class ReporterMetrics:
    def __init__(self) -> None:
        #: "complete" / "failed" / "skipped" -> reports this process ended or passed over
        self.reports: Counter[str] = Counter()

    def render(self) -> str:
        lines: list[str] = []
        family_by_label(
            lines,
            names.REPORTER_REPORTS,
            "counter",
            "Report requests handled, by outcome.",
            "outcome",
            self.reports,
        )
        return "\n".join(lines) + "\n"


@asynccontextmanager
async def serving(metrics: ReporterMetrics, host: str, port: int) -> AsyncIterator[None]:
    """Serve `metrics` at http://host:port/metrics for the time of the `async with`."""

    async def serve_metrics(request: web.Request) -> web.Response:
        return web.Response(
            body=metrics.render().encode(), headers={"Content-Type": prometheus.CONTENT_TYPE}
        )

    app = web.Application()
    app.router.add_get("/metrics", serve_metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    try:
        await web.TCPSite(runner, host, port).start()
        yield
    finally:
        await runner.cleanup()
