"""The web page's routes (services/api/page.py), without Kafka or PostgreSQL: the pages
and their assets from the package, content types, caching, public with tokens
configured, and nothing served but the known files."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from importlib import resources

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer

from storemon.api import page
from storemon.api.auth import ROUTE_SCOPES, auth_middleware
from storemon.api.errors import json_errors
from storemon.config import SCOPE_READ, ApiToken

TOKENS = (ApiToken.from_secret("reader", [SCOPE_READ], "reader-secret"),)


@pytest.fixture
async def client() -> AsyncIterator[TestClient]:
    """The page's routes behind the API's own error and token middlewares, a token set."""
    app = web.Application(middlewares=[json_errors, auth_middleware(TOKENS)])
    page.add_routes(app)
    async with TestClient(TestServer(app)) as test_client:
        yield test_client


async def raw_get(client: TestClient, target: str) -> tuple[int, bytes]:
    """GET with the request target sent exactly as given (no client normalising it), with
    a valid token: what is not an asset answers 404 rather than 401."""
    reader, writer = await asyncio.open_connection(client.host, client.port)
    request = (
        f"GET {target} HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer reader-secret\r\n"
        "Connection: close\r\n\r\n"
    )
    try:
        writer.write(request.encode())
        await writer.drain()
        answer = await reader.read()
    finally:
        writer.close()
    head, _, body = answer.partition(b"\r\n\r\n")
    return int(head.split()[1]), body


def test_every_asset_and_page_ships_in_the_package():
    folder = resources.files(page.PAGE_PACKAGE).joinpath(page.PAGE_FOLDER)
    shipped = {entry.name for entry in folder.iterdir() if entry.is_file()}
    assert set(page.ASSETS) | set(page.PAGES.values()) <= shipped


def test_the_routes_are_public():
    for route in ("/", "/docs", "/static/{name}"):
        assert ROUTE_SCOPES[("GET", route)] is None


@pytest.mark.parametrize(("path", "marker"), [("/", b"Request a report"), ("/docs", b"docs.js")])
async def test_the_pages_are_html_revalidated_and_need_no_token(client, path, marker):
    response = await client.get(path)
    assert response.status == 200
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert response.headers["Cache-Control"] == "no-cache"
    assert "script-src 'self'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    body = await response.read()
    assert marker in body
    # Nothing from elsewhere: every script and style sheet is one of ours.
    assert not re.search(rb"(src|href)=\"(https?:)?//", body)
    again = await client.get(path, headers={"If-None-Match": response.headers["ETag"]})
    assert again.status == 304
    assert await again.read() == b""


async def test_the_pages_name_each_asset_with_its_digest(client):
    body = (await (await client.get("/")).read()).decode()
    named = dict(re.findall(r"/static/([\w.]+)\?v=(\w+)", body))
    assert {"app.js", "common.js", "style.css", "favicon.svg"} <= set(named)
    for name, digest in named.items():
        current = await client.get(f"/static/{name}", params={"v": digest})
        assert current.status == 200
        assert current.headers["Cache-Control"] == "public, max-age=31536000, immutable"
        assert current.headers["ETag"] == f'"{digest}"'
        # Without (or with another) digest: revalidated, never cached for long.
        for params in ({}, {"v": "old"}):
            other = await client.get(f"/static/{name}", params=params)
            assert other.status == 200
            assert other.headers["Cache-Control"] == "no-cache"


@pytest.mark.parametrize(
    ("name", "content_type"),
    [
        ("app.js", "text/javascript; charset=utf-8"),
        ("common.js", "text/javascript; charset=utf-8"),
        ("docs.js", "text/javascript; charset=utf-8"),
        ("style.css", "text/css; charset=utf-8"),
        ("favicon.svg", "image/svg+xml"),
    ],
)
async def test_assets_have_their_content_type_and_the_packaged_bytes(client, name, content_type):
    response = await client.get(f"/static/{name}")
    assert response.status == 200
    assert response.headers["Content-Type"] == content_type
    assert await response.read() == page.read_page_file(name)
    head = await client.head(f"/static/{name}")
    assert head.status == 200


@pytest.mark.parametrize(
    "name", ["nothing.js", "index.html", "docs.html", "APP.JS", "app.js.map", "...", "~"]
)
async def test_an_unknown_asset_is_a_json_404(client, name):
    response = await client.get(f"/static/{name}")
    assert response.status == 404
    assert (await response.json())["error"]["code"] == "not_found"


@pytest.mark.parametrize(
    "target",
    [
        "/static/../page.py",
        "/static/../app.py",
        "/static/..%2fpage.py",
        "/static/..%2Fapp.py",
        "/static/%2e%2e/%2e%2e/pyproject.toml",
        "/static/%2e%2e%2f%2e%2e%2fpyproject.toml",
        "/static/..\\page.py",
        "/static//etc/passwd",
        "/static/%2Fetc%2Fpasswd",
        "/static/page/app.js",
        "/static/",
        "/static/..",
        "/static/%2e%2e",
        "/static/.%2e/.%2e/page.py",
    ],
)
async def test_no_path_escapes_the_known_assets(client, target):
    status, body = await raw_get(client, target)
    # 404 (or 400 for a target the server will not parse), or a path normalised to the
    # page itself (/static/.. is /); never another file's content.
    assert status in (400, 404) or body == page.load_files()[1]["/"].body, (target, status)
    assert b"import" not in body and b"root:" not in body and b"[project]" not in body


def test_a_page_naming_an_unknown_asset_is_refused_when_loading(monkeypatch):
    real = page.read_page_file

    def read(name: str) -> bytes:
        if name == "index.html":
            return b'<script src="/static/missing.js"></script>'
        return real(name)

    monkeypatch.setattr(page, "read_page_file", read)
    with pytest.raises(ValueError, match=r"missing\.js"):
        page.load_files()
