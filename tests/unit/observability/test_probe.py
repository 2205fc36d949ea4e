"""`storemon health` (storemon/observability/probe.py) against real local HTTP servers."""

from __future__ import annotations

import dataclasses
import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager

from ports import free_port

from storemon.config import Settings
from storemon.observability.probe import probe


class _Health(http.server.BaseHTTPRequestHandler):
    status = 200

    def do_GET(self) -> None:  # the standard library's name for it
        self.send_response(self.status if self.path == "/healthz" else 404)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@contextmanager
def serving(status: int) -> Iterator[int]:
    handler = type("Handler", (_Health,), {"status": status})
    server = http.server.HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def settings(api: int, reporter: int, worker: int) -> Settings:
    return dataclasses.replace(
        Settings.from_env(), api_port=api, reporter_metrics_port=reporter,
        worker_metrics_port=worker,
    )


def test_the_service_listening_on_its_port_is_found_whichever_it_is():
    with serving(200) as port:
        result = probe(settings(free_port(), port, 0))
    assert result.healthy
    assert result.detail == f"reporter answers http://127.0.0.1:{port}/healthz"


def test_nothing_answering_or_an_error_status_is_unhealthy_and_says_what_each_port_did():
    with serving(503) as port:
        closed = free_port()
        result = probe(settings(closed, 0, port))
    assert not result.healthy
    assert f"api http://127.0.0.1:{closed}/healthz: " in result.detail
    assert f"worker http://127.0.0.1:{port}/healthz: HTTP 503" in result.detail
