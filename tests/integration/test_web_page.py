"""The web page (`GET /`, `GET /docs`) in a real headless Chromium (tests/integration/
browser.py: Debian's chromium driven by Selenium through chromium-driver).

Against the real stack (worker, reporter, API on a generated data set, tokens
configured): a report requested on the page is watched to Complete and downloaded
through the page, byte for byte `storemon report-csv` of the same files; the API's
error messages show; deleting needs the admin scope; a store is looked up in a report
and live; the operations view shows the consumer lag of /metrics; /docs lists every
operation of /openapi.json.

Against a stand-in API (a small aiohttp server in this process, the page's own routes
and scripted answers): the page reads the report's Server-Sent Events with the token,
in chunks split anywhere, and falls back to polling when the events route is missing.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import re
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from selenium.webdriver.common.by import By
from selenium.webdriver.support.ui import Select

from storemon.api import page
from storemon.api.errors import json_errors

from .browser import (
    chromium,
    element,
    page_state,
    type_into,
    use_token,
    visible_text,
    wait_for,
    wait_for_download,
)
from .services import free_port
from .stack import REPORT_DEADLINE_S, Stack

STORES = 40
READER, ADMIN = "page-reader-secret", "page-admin-secret"
TOKENS = f"reader:read:{READER},boss:admin:{ADMIN}"
#: Time for the page to show what the API answered (a page action is one or two requests).
SHOWN_S = 15


@pytest.fixture(scope="module")
def stack(kafka_bootstrap, postgres_dsn, tmp_path_factory) -> Iterator[Stack]:
    """The whole stack with tokens configured, the worker caught up."""
    worker_port = free_port()
    with Stack.running(
        kafka_bootstrap,
        postgres_dsn,
        tmp_path_factory.mktemp("web"),
        stores=STORES,
        seed=23,
        STOREMON_TOKENS=TOKENS,
        # The worker answers live store queries on its port, where the API asks.
        STOREMON_WORKER_METRICS_PORT=str(worker_port),
        STOREMON_WORKER_URLS=f"http://127.0.0.1:{worker_port}",
    ) as running:
        yield running


@pytest.fixture(scope="module")
def downloads(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("downloads")


@pytest.fixture(scope="module")
def browser(downloads: Path):
    driver = chromium(downloads)
    try:
        yield driver
    finally:
        driver.quit()


def call(stack: Stack, method: str, path: str, token: str | None, body: Any = None):
    """(status, decoded JSON) of an API request made directly, not through the page."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(stack.api_url + path, data=data, method=method)
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        request.add_header("Content-Type", "application/json")
    request.add_header("Accept", "application/json")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            payload = response.read()
            return response.status, json.loads(payload) if payload else None
    except urllib.error.HTTPError as error:
        return error.code, json.loads(error.read())


def open_page(driver, url: str, token: str) -> None:
    driver.get(url + "/")
    wait_for(driver, lambda d: d.execute_script("return !!window.storemon"), 10, "the scripts")
    use_token(driver, token)


def request_on_page(driver, *, as_of: str = "", store_ids: str = "") -> None:
    type_into(driver, "as-of", as_of)
    type_into(driver, "store-ids", store_ids)
    element(driver, "trigger").click()


def watched_until_final(driver) -> tuple[str, str]:
    """(report id, status) once the watched report is Complete or Failed."""
    status = wait_for(
        driver,
        lambda d: (
            element(d, "watch-status").get_attribute("data-status") in ("Complete", "Failed")
            and element(d, "watch-status").get_attribute("data-status")
        ),
        REPORT_DEADLINE_S + 10,
        "the page to show the report Complete",
    )
    return element(driver, "watch-id").text, status


def report_row(driver, report_id: str):
    rows = driver.find_elements(By.CSS_SELECTOR, f'tr[data-report-id="{report_id}"]')
    return rows[0] if rows else None


def test_a_report_requested_on_the_page_completes_live_and_downloads_the_offline_csv(
    stack, browser, downloads
):
    open_page(browser, stack.api_url, READER)
    request_on_page(browser)
    # It is shown Running first, then Complete, from the report's event stream.
    wait_for(browser, lambda d: element(d, "watch-id").text, SHOWN_S, "the report's id")
    report_id, status = watched_until_final(browser)
    assert status == "Complete", page_state(browser)
    assert element(browser, "watch-via").text == "live: events"
    details = element(browser, "watch-details").text
    assert f"Rows\n{STORES}" in details, details
    assert "As of\n2023-01-25 18:1" in details, details

    name = f"storemon-report-{report_id}.csv"
    element(browser, "watch-download").click()
    assert wait_for_download(downloads, name, 30) == stack.expected_csv

    # The list shows it too, with its rows and duration, and downloads it the same way.
    row = wait_for(
        browser,
        lambda d: (
            (found := report_row(d, report_id)) is not None
            and found.get_attribute("data-status") == "Complete"
            and found
        ),
        SHOWN_S,
        "the report in the list",
    )
    assert row.find_element(By.CSS_SELECTOR, "td.rows").text == str(STORES)
    assert re.search(r"\d+(\.\d+)? (ms|s)", row.text), row.text
    (downloads / name).unlink()
    row.find_element(By.CSS_SELECTOR, "button.download").click()
    assert wait_for_download(downloads, name, 30) == stack.expected_csv


def test_the_apis_error_message_is_shown(stack, browser):
    status, answer = call(stack, "POST", "/trigger_report", READER, {"as_of": "yesterday"})
    assert status == 400
    message = answer["error"]["message"]
    open_page(browser, stack.api_url, READER)
    request_on_page(browser, as_of="yesterday")
    shown = wait_for(
        browser, lambda d: visible_text(d, "trigger-error"), SHOWN_S, "the error message"
    )
    assert shown == message
    # A store id the API refuses (CSV injection): its message too.
    request_on_page(browser, store_ids="=cmd")
    wait_for(
        browser,
        lambda d: "store_ids" in visible_text(d, "trigger-error"),
        SHOWN_S,
        "the store_ids message",
    )


def test_without_a_token_the_page_shows_the_401_message(stack, browser):
    status, answer = call(stack, "GET", "/reports", None)
    assert status == 401
    open_page(browser, stack.api_url, "")
    shown = wait_for(
        browser, lambda d: visible_text(d, "reports-error"), SHOWN_S, "the 401 message"
    )
    assert shown == answer["error"]["message"]
    # The page and /metrics need none: the operations view shows.
    wait_for(browser, lambda d: element(d, "ops").is_displayed(), SHOWN_S, "the operations view")


def test_deleting_a_report_needs_the_admin_scope(stack, browser):
    status, answer = call(
        stack, "POST", "/trigger_report", READER, {"as_of": "2023-01-24T12:00:00Z"}
    )
    assert status == 202
    report_id = answer["report_id"]
    status, refused = call(stack, "DELETE", f"/reports/{report_id}", READER)
    assert status == 403

    def delete_on_page() -> None:
        element(browser, "reports-refresh").click()
        row = wait_for(
            browser,
            lambda d: (
                (found := report_row(d, report_id)) is not None
                and found.get_attribute("data-status") == "Complete"
                and found
            ),
            REPORT_DEADLINE_S,
            "the report Complete in the list",
        )
        button = row.find_element(By.CSS_SELECTOR, "button.danger")
        button.click()  # arms it
        assert button.text == "Confirm delete"
        button.click()

    open_page(browser, stack.api_url, READER)
    delete_on_page()
    shown = wait_for(
        browser, lambda d: visible_text(d, "reports-error"), SHOWN_S, "the 403 message"
    )
    assert shown == refused["error"]["message"]
    assert "admin" in shown

    use_token(browser, ADMIN)
    delete_on_page()
    wait_for(browser, lambda d: report_row(d, report_id) is None, SHOWN_S, "the row to go")
    assert call(stack, "GET", f"/get_report?report_id={report_id}", ADMIN)[0] == 404


def test_a_store_is_looked_up_in_a_report_and_live(stack, browser):
    rows = list(csv.DictReader(io.StringIO(stack.expected_csv.decode())))
    store = rows[len(rows) // 2]
    open_page(browser, stack.api_url, READER)
    request_on_page(browser)
    report_id, status = watched_until_final(browser)
    assert status == "Complete"
    # The report just made is offered (and chosen) once the list shows it.
    wait_for(
        browser,
        lambda d: (
            report_id
            in [o.get_attribute("value") for o in Select(element(d, "lookup-report")).options]
        ),
        SHOWN_S,
        "the report to be offered",
    )
    Select(element(browser, "lookup-report")).select_by_value(report_id)
    type_into(browser, "lookup-store", store["store_id"])
    element(browser, "lookup-in-report").click()
    wait_for(
        browser,
        lambda d: (
            element(d, "lookup-result").get_attribute("data-source") == "report"
            and element(d, "lookup-result").is_displayed()
        ),
        SHOWN_S,
        "the store's row",
    )

    def shown_figures() -> dict[str, float]:
        return {
            cell.get_attribute("data-field"): float(cell.text)
            for cell in browser.find_elements(By.CSS_SELECTOR, "#lookup-figures td[data-field]")
        }

    expected = {field: float(value) for field, value in store.items() if field != "store_id"}
    assert shown_figures() == expected
    assert store["store_id"] in element(browser, "lookup-title").text

    # Live: the worker owning the store answers, at the current time (no poll in the 8
    # days before it: the generated polls are of January 2023, so no figures) ...
    def live_answer() -> str:
        element(browser, "lookup-live").click()
        wait_for(
            browser,
            lambda d: (
                element(d, "lookup-result").get_attribute("data-source") == "live"
                and element(d, "lookup-result").is_displayed()
            ),
            SHOWN_S,
            "the live answer",
        )
        assert element(browser, "lookup-title").text == f"Store {store['store_id']}, live"
        return element(browser, "lookup-details").text

    details = live_answer()
    assert "Latest poll\n2023-01-25" in details, details
    assert "Partition\n" in details and "Answered by\n" in details, details
    assert element(browser, "lookup-no-figures").is_displayed()
    # ... and as of the report's as_of: the report's row.
    summary = call(stack, "GET", f"/get_report?report_id={report_id}", READER)[1]
    type_into(browser, "lookup-as-of", summary["as_of"])
    details = live_answer()
    assert f"As of\n{summary['as_of'][:10]}" in details, details
    assert shown_figures() == expected

    # An unknown store: the API's 404 message.
    type_into(browser, "lookup-store", "no-such-store")
    element(browser, "lookup-live").click()
    status, answer = call(stack, "GET", "/stores/no-such-store", READER)
    assert status == 404
    shown = wait_for(browser, lambda d: visible_text(d, "lookup-error"), SHOWN_S, "the 404 message")
    assert shown == answer["error"]["message"]


def test_the_operations_view_shows_the_consumer_lag_of_metrics(stack, browser):
    open_page(browser, stack.api_url, READER)
    with urllib.request.urlopen(stack.api_url + "/metrics", timeout=30) as response:
        metrics = response.read().decode()
    served = {
        (group, topic, partition)
        for group, partition, topic in re.findall(  # labels in name order
            r'^storemon_consumer_lag\{group="([^"]+)",partition="(\d+)",topic="([^"]+)"\}',
            metrics,
            re.MULTILINE,
        )
    }
    prefix = stack.settings.topic_prefix
    assert {group for group, _, _ in served} == {
        f"{prefix}storemon-worker",
        f"{prefix}storemon-reporter",
    }
    element(browser, "ops-refresh").click()

    def lag_rows() -> set[tuple[str, str, str]]:
        cells = [
            [cell.text for cell in row.find_elements(By.TAG_NAME, "td")]
            for row in browser.find_elements(By.CSS_SELECTOR, "#ops-lag tbody tr:not(.subtotal)")
        ]
        return {(group, topic, partition) for group, topic, partition, _ in cells}

    wait_for(browser, lambda d: lag_rows() == served, SHOWN_S, "every group's partitions")
    tiles = element(browser, "ops-tiles").text
    assert "Kafka reachable\nyes" in tiles and "Database reachable\nyes" in tiles, tiles
    assert "Dead letters" in tiles and "records in store-status-dlq" in tiles, tiles
    # The state's size, gathered by the API from the partitions' owner: every store of
    # the report (all of the data's polls are within its week).
    held = sum(int(float(count)) for count in re.findall(
        r'^storemon_state_stores\{partition="\d+"\} (\S+)$', metrics, re.MULTILINE))
    assert held == stack.expected_csv.count(b"\n") - 1
    wait_for(browser, lambda d: "Stores held (per partition" in element(browser, "ops-state").text,
             SHOWN_S, "the state's figures")


def test_the_docs_page_lists_every_operation_of_the_openapi_document(stack, browser):
    with urllib.request.urlopen(stack.api_url + "/openapi.json", timeout=30) as response:
        document = json.loads(response.read())
    documented = {
        (method, path)
        for path, operations in document["paths"].items()
        for method in operations
        if method in {"get", "put", "post", "delete", "patch", "head", "options"}
    }
    browser.get(stack.api_url + "/docs")
    wait_for(
        browser,
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-rendered"),
        SHOWN_S,
        "the document to be rendered",
    )
    shown = {
        (article.get_attribute("data-method"), article.get_attribute("data-path"))
        for article in browser.find_elements(By.CSS_SELECTOR, "article.operation[data-path]")
    }
    assert shown == documented
    for path in document["paths"]:
        assert browser.find_elements(By.XPATH, f'//code[@class="path"][text()="{path}"]'), path
    trigger = browser.find_element(By.ID, "op-post-trigger_report")
    assert "Request a report" in trigger.text and "token scope read" in trigger.text
    assert "as_of" in trigger.text and "202" in trigger.text


# --- Against a stand-in API: the event stream, read in chunks, and the fallback ---------

EVENTS_ID = "a" * 32
POLLED_ID = "b" * 32


class StandInApi:
    """The page's routes and scripted answers of the routes it calls, on a thread."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str, str]] = []  # (path_qs, Authorization, Accept)
        self.next_ids: list[str] = []
        self.polls = 0
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)

    def _status(self, report_id: str, status: str) -> dict[str, Any]:
        if status != "Complete":
            return {"report_id": report_id, "status": status}
        return {
            "report_id": report_id,
            "status": "Complete",
            "rows": 3,
            "as_of": "2023-01-25T18:13:22.479220Z",
            "requested_at": "2024-05-01T10:00:00.000000Z",
            "finished_at": "2024-05-01T10:00:01.250000Z",
            "download_url": f"/reports/{report_id}.csv",
        }

    def app(self) -> web.Application:
        @web.middleware
        async def record(request: web.Request, handler):
            self.requests.append(
                (
                    request.path_qs,
                    request.headers.get("Authorization", ""),
                    request.headers.get("Accept", ""),
                )
            )
            return await handler(request)

        async def trigger(request: web.Request) -> web.Response:
            report_id = self.next_ids.pop(0)
            return web.json_response(
                {"report_id": report_id, "status": "Running", "status_url": "..."}, status=202
            )

        async def events(request: web.Request) -> web.StreamResponse:
            report_id = request.match_info["report_id"]
            if report_id != EVENTS_ID:
                raise web.HTTPNotFound()  # as if the route were not there
            response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
            await response.prepare(request)
            running = json.dumps(self._status(report_id, "Running"))
            complete = json.dumps(self._status(report_id, "Complete"))
            # CRLF line ends, a keep-alive comment, and chunks split inside a line and
            # between the two characters of a CRLF.
            for chunk in (
                f"event: status\r\ndata: {running}\r\n\r\n",
                ": keep-alive\r\n\r\n",
                "event: sta",
                f"tus\r\ndata: {complete[:20]}",
                f"{complete[20:]}\r",
                "\n\r\n",
            ):
                await response.write(chunk.encode())
                await asyncio.sleep(0.3)
            await response.write_eof()
            return response

        async def get_report(request: web.Request) -> web.Response:
            self.polls += 1
            status = "Complete" if self.polls >= 3 else "Running"
            return web.json_response(self._status(request.query["report_id"], status))

        async def reports(request: web.Request) -> web.Response:
            return web.json_response({"reports": []})

        async def metrics(request: web.Request) -> web.Response:
            return web.Response(text="storemon_kafka_up 1\nstoremon_database_up 1\n")

        app = web.Application(middlewares=[json_errors, record])
        page.add_routes(app)
        app.router.add_post("/trigger_report", trigger)
        app.router.add_get("/reports/{report_id}/events", events)
        app.router.add_get("/get_report", get_report)
        app.router.add_get("/reports", reports)
        app.router.add_get("/metrics", metrics)
        return app

    def __enter__(self) -> StandInApi:
        self._thread.start()
        self._runner = web.AppRunner(self.app())
        asyncio.run_coroutine_threadsafe(self._start(), self._loop).result(10)
        return self

    async def _start(self) -> None:
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    def __exit__(self, *exc_info: object) -> None:
        asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def test_the_page_reads_the_event_stream_and_else_polls_with_the_token(browser):
    with StandInApi() as api:
        open_page(browser, api.url, "stand-in-token")
        api.next_ids[:] = [EVENTS_ID, POLLED_ID]
        request_on_page(browser)
        assert watched_until_final(browser) == (EVENTS_ID, "Complete")
        assert element(browser, "watch-via").text == "live: events"
        assert "Duration\n1.25 s" in element(browser, "watch-details").text
        (events,) = [r for r in api.requests if r[0] == f"/reports/{EVENTS_ID}/events"]
        assert events[1:] == ("Bearer stand-in-token", "text/event-stream")
        assert not [r for r in api.requests if r[0].startswith("/get_report")]

        request_on_page(browser)
        assert watched_until_final(browser) == (POLLED_ID, "Complete")
        assert element(browser, "watch-via").text == "polling every 0.5 s"
        polls = [r for r in api.requests if r[0] == f"/get_report?report_id={POLLED_ID}"]
        assert len(polls) == 3
        assert {r[1:] for r in polls} == {("Bearer stand-in-token", "application/json")}
        trigger = [r for r in api.requests if r[0] == "/trigger_report"]
        assert {r[1] for r in trigger} == {"Bearer stand-in-token"}


def test_the_pages_parsers(browser):
    with StandInApi() as api:
        open_page(browser, api.url, "")
        events = browser.execute_script(
            """
            const seen = [];
            const parser = window.storemon.eventStreamParser((e) => seen.push(e));
            for (const chunk of arguments[0]) parser.push(chunk);
            parser.end();
            return seen;
            """,
            [
                "\ufeffdata: a\r",
                "\ndata: b\n\n: comment\n",
                "event: x\ndata\n\nid: 7\ndata:  two spaces\n\n",
                "data: no blank line at the end",
            ],
        )
        assert events == [
            {"event": "message", "data": "a\nb", "id": ""},
            {"event": "x", "data": "", "id": ""},
            {"event": "message", "data": " two spaces", "id": "7"},
        ]
        parsed = browser.execute_script(
            """
            const m = window.storemon.parseMetrics(arguments[0]);
            return {samples: m.samples.map((s) => [s.name, s.labels, String(s.value)]),
                    p50: window.storemon.quantile(m, "d", 0.5), type: m.types["d"]};
            """,
            "# HELP d A histogram.\n# TYPE d histogram\n"
            'd_bucket{le="1.0"} 2\nd_bucket{le="2.0"} 4\nd_bucket{le="+Inf"} 4\n'
            'lag{group="g\\"q\\\\",topic="t",partition="0"} 5 1700000000000\n',
        )
        assert parsed["type"] == "histogram"
        assert parsed["p50"] == 1.0
        assert parsed["samples"][2] == ["d_bucket", {"le": "+Inf"}, "4"]
        labels = {"group": 'g"q\\', "topic": "t", "partition": "0"}
        assert parsed["samples"][3] == ["lag", labels, "5"]
