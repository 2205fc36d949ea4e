"""Screenshots of the web page for the README, made with the browser of its tests.

    deploy/local/stack.sh start          # Kafka and PostgreSQL (or set the two variables)
    .venv/bin/python -m tests.integration.screenshots [OUT_DIR]   # default docs/images

Runs a whole stack on a small generated data set (as tests/integration/test_web_page.py
does, on the servers of KAFKA_BOOTSTRAP_SERVERS and DATABASE_URL, else deploy/local's),
requests reports on the page, and saves PNGs of its parts: web-request.png (a report
watched to Complete), web-reports.png (the list), web-lookup.png (a store in a report),
web-operations.png (the figures of /metrics) and web-docs.png (/docs). About 20 s.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
IMAGES = REPO / "docs" / "images"
WIDTH = 1000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", nargs="?", type=Path, default=IMAGES, help="where the PNGs go")
    out: Path = parser.parse_args(argv).out
    # tests/integration/services.py imports tests/ports.py as pytest would find it.
    sys.path.insert(0, str(REPO / "tests"))
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    from storemon.config import (
        DEFAULT_DATABASE_URL,
        DEFAULT_KAFKA_BOOTSTRAP,
        state_dir_from_env,
        with_local_passfile,
    )

    from .browser import chromium, element, save_element_png, type_into, wait_for
    from .stack import Stack, data_arguments
    from .test_web_page import request_on_page, watched_until_final

    kafka = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or DEFAULT_KAFKA_BOOTSTRAP
    database = with_local_passfile(
        os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL, state_dir_from_env()
    )
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="storemon-screenshots-") as scratch:
        workdir = Path(scratch)
        stack = Stack.create(kafka, database, workdir, stores=30, seed=5)
        stack.storemon("load", "--no-progress", *data_arguments(stack.data))
        driver = None
        try:
            stack.start_services()
            driver = chromium(workdir / "downloads", width=WIDTH, height=900)
            driver.get(stack.api_url + "/")
            wait_for(driver, lambda d: element(d, "token-state").text, 10, "the page")
            # Two reports: one of a few stores at an earlier time, then one of every store.
            some = [line.split(",")[0] for line in stack.expected_csv.decode().splitlines()[1:4]]
            request_on_page(driver, as_of="2023-01-24T12:00:00Z", store_ids=", ".join(some))
            watched_until_final(driver)
            request_on_page(driver)
            report_id, _ = watched_until_final(driver)
            type_into(driver, "as-of", "")
            type_into(driver, "store-ids", "")
            wait_for(
                driver,
                lambda d: d.find_elements(
                    By.CSS_SELECTOR, f'tr[data-report-id="{report_id}"][data-status="Complete"]'
                ),
                15,
                "the list",
            )
            Select(element(driver, "lookup-report")).select_by_value(report_id)
            type_into(driver, "lookup-store", some[1])
            element(driver, "lookup-in-report").click()
            wait_for(driver, lambda d: element(d, "lookup-result").is_displayed(), 15, "lookup")
            loads = element(driver, "ops").get_attribute("data-loads")
            element(driver, "ops-refresh").click()
            wait_for(
                driver,
                lambda d: element(d, "ops").get_attribute("data-loads") != loads,
                15,
                "the operations view to refresh",
            )
            # The pictures last: capturing beyond the window upsets the page's layout.
            for section, name in (
                ("request", "web-request.png"),
                ("reports", "web-reports.png"),
                ("lookup", "web-lookup.png"),
                ("operations", "web-operations.png"),
            ):
                save_element_png(driver, element(driver, section), out / name)

            driver.set_window_size(WIDTH, 640)
            driver.get(stack.api_url + "/docs")
            wait_for(
                driver,
                lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-rendered"),
                15,
                "the docs",
            )
            driver.save_screenshot(str(out / "web-docs.png"))
        finally:
            if driver is not None:
                driver.quit()
            stack.close()
    for image in sorted(out.glob("web-*.png")):
        print(
            f"{image.relative_to(REPO) if image.is_relative_to(REPO) else image}: "
            f"{image.stat().st_size // 1024} KiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
