"""Headless Chromium for the web page's tests and screenshots: Debian's `chromium` driven
by Selenium through Debian's `chromium-driver` (deploy/test-tools.sh installs both).

Selenium rather than Playwright: Debian ships the driver built from the same source as
the browser, so the two always match, whereas each Playwright release is made for one
Chromium build of its own (which it would download, and which cannot be fetched here) and
only tolerates others; and Selenium is a small pure-Python package where Playwright
brings a Node.js runtime. Selenium Manager (which would look for and download drivers)
is never asked: the browser and the driver are given by path.
"""

from __future__ import annotations

import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By
from selenium.webdriver.remote.webelement import WebElement
from selenium.webdriver.support.ui import WebDriverWait

CHROMIUM = os.environ.get("STOREMON_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("STOREMON_CHROMEDRIVER", "/usr/bin/chromedriver")
INSTALL_HINT = "run ./deploy/test-tools.sh (Debian's chromium and chromium-driver)"

T = TypeVar("T")


def chromium(download_dir: Path, *, width: int = 1280, height: int = 1000) -> webdriver.Chrome:
    """A headless Chromium whose downloads land in `download_dir`."""
    for path in (CHROMIUM, CHROMEDRIVER):
        assert os.access(path, os.X_OK), f"{path} missing: {INSTALL_HINT}"
    os.environ.setdefault("SE_AVOID_STATS", "true")
    download_dir.mkdir(parents=True, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",  # CI runs as root, where Chromium's sandbox cannot start
        "--disable-dev-shm-usage",
        "--disable-gpu",
        "--no-first-run",
        "--disable-extensions",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--disable-features=Translate,MediaRouter,OptimizationHints",
        "--force-device-scale-factor=1",
        "--lang=en-US",
        f"--window-size={width},{height}",
    ):
        options.add_argument(argument)
    options.add_experimental_option(
        "prefs",
        {
            "download.default_directory": str(download_dir),
            "download.prompt_for_download": False,
            "download.directory_upgrade": True,
            "safebrowsing.enabled": False,
        },
    )
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    service = Service(executable_path=CHROMEDRIVER)
    driver = webdriver.Chrome(options=options, service=service)
    driver.execute_cdp_cmd(
        "Browser.setDownloadBehavior",
        {"behavior": "allow", "downloadPath": str(download_dir), "eventsEnabled": False},
    )
    return driver


def wait_for(
    driver: webdriver.Chrome, condition: Callable[[webdriver.Chrome], T], timeout: float, what: str
) -> T:
    """Poll the page (every 0.1 s) until `condition` returns something truthy."""

    def attempt(d: webdriver.Chrome) -> Any:
        try:
            return condition(d)
        except StaleElementReferenceException:
            return False  # the page replaced the element meanwhile: look again

    try:
        result: T = WebDriverWait(driver, timeout, poll_frequency=0.1).until(attempt)
    except TimeoutException:
        detail = page_state(driver)
        raise AssertionError(f"timed out after {timeout} s waiting for {what}\n{detail}") from None
    return result


def page_state(driver: webdriver.Chrome) -> str:
    """What the page shows now, and what its console said: for a failing test's message."""
    try:
        text = driver.find_element(By.TAG_NAME, "body").text
    except Exception as exc:  # the page may be gone
        text = f"(no page: {exc})"
    try:
        console = "\n".join(str(entry) for entry in driver.get_log("browser"))
    except Exception:
        console = ""
    return f"--- page at {driver.current_url}\n{text[:4000]}\n--- console\n{console[:2000]}"


def element(driver: webdriver.Chrome, element_id: str) -> WebElement:
    return driver.find_element(By.ID, element_id)


def visible_text(driver: webdriver.Chrome, element_id: str) -> str:
    """The element's text if it is shown, else ""."""
    found = element(driver, element_id)
    return found.text if found.is_displayed() else ""


def type_into(driver: webdriver.Chrome, element_id: str, text: str) -> None:
    field = element(driver, element_id)
    field.clear()
    if text:
        field.send_keys(text)


def use_token(driver: webdriver.Chrome, token: str) -> None:
    """Give the page's token field this token ("" forgets it)."""
    if token:
        type_into(driver, "token", token)
        element(driver, "token-save").click()
    else:
        element(driver, "token-clear").click()
    want = "token set" if token else "no token"
    wait_for(driver, lambda d: want in element(d, "token-state").text, 5, f"the page to say {want}")


def wait_for_download(directory: Path, name: str, timeout: float) -> bytes:
    """The bytes of `name` once Chromium finished saving it in `directory`."""
    path = directory / name
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        partial = list(directory.glob("*.crdownload"))
        if path.exists() and not partial:
            return path.read_bytes()
        time.sleep(0.1)
    raise AssertionError(f"no download {name} in {timeout} s: {sorted(directory.iterdir())}")


def save_element_png(driver: webdriver.Chrome, found: WebElement, path: Path) -> None:
    """A PNG of the element whole, however tall (beyond the window too)."""
    box = driver.execute_script(
        "const r = arguments[0].getBoundingClientRect();"
        "return [r.left + window.scrollX, r.top + window.scrollY, r.width, r.height];",
        found,
    )
    left, top, width, height = (round(value) for value in box)
    shot = driver.execute_cdp_cmd(
        "Page.captureScreenshot",
        {
            "format": "png",
            "captureBeyondViewport": True,
            "clip": {"x": left, "y": top, "width": width, "height": height, "scale": 1},
        },
    )
    path.write_bytes(base64.b64decode(shot["data"]))
