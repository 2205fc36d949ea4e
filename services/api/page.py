"""The web page for the people who ask for reports: `GET /`, `GET /docs` and their assets.

Plain HTML, CSS and JavaScript, no build step, shipped inside the package
(`storemon.api`'s folder `page/`, read with importlib.resources) and nothing fetched from
elsewhere. The page uses only the API's public routes, with the same bearer tokens as
any client: these routes are public (auth.ROUTE_SCOPES), and what the page shows comes
from routes that check the token.

The files are read once, when the routes are added. Assets are served only by their
known names (never a path built from the request), each with its content type. The pages
name each asset with `?v=<digest of its content>`: an asset asked for with its current
digest is cached for a year (immutable), anything else revalidated; the pages themselves
are always revalidated (`no-cache`, ETag), so a new version shows at the next load.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from importlib import resources

from aiohttp import web

from storemon.api.errors import ApiError

#: The package and folder the page's files ship in (pyproject.toml's package-data).
PAGE_PACKAGE = "storemon.api"
PAGE_FOLDER = "page"

#: The assets served under /static/, by name: their content types.
ASSETS: dict[str, str] = {
    "app.js": "text/javascript; charset=utf-8",
    "docs.js": "text/javascript; charset=utf-8",
    "common.js": "text/javascript; charset=utf-8",
    "style.css": "text/css; charset=utf-8",
    "favicon.svg": "image/svg+xml",
}
#: The pages, by route: their files.
PAGES: dict[str, str] = {"/": "index.html", "/docs": "docs.html"}
HTML_TYPE = "text/html; charset=utf-8"

#: Scripts and styles from this origin only (no inline code), requests to this origin only.
CONTENT_SECURITY_POLICY = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
REVALIDATE = "no-cache"
IMMUTABLE = "public, max-age=31536000, immutable"

_ASSET_REFERENCE = re.compile(r"/static/([A-Za-z0-9_.-]+)")


@dataclass(frozen=True)
class PageFile:
    body: bytes
    content_type: str
    etag: str

    @classmethod
    def of(cls, body: bytes, content_type: str) -> PageFile:
        return cls(body, content_type, hashlib.sha256(body).hexdigest()[:20])


def read_page_file(name: str) -> bytes:
    """One of the page's files, as shipped in the package."""
    return resources.files(PAGE_PACKAGE).joinpath(PAGE_FOLDER, name).read_bytes()


def load_files() -> tuple[dict[str, PageFile], dict[str, PageFile]]:
    """(assets by name, pages by route), each page naming its assets with their digest."""
    assets = {name: PageFile.of(read_page_file(name), kind) for name, kind in ASSETS.items()}

    def versioned(match: re.Match[str]) -> str:
        asset = assets.get(match.group(1))
        if asset is None:
            raise ValueError(f"a page names /static/{match.group(1)}, which is not an asset")
        return f"/static/{match.group(1)}?v={asset.etag}"

    pages = {
        route: PageFile.of(
            _ASSET_REFERENCE.sub(versioned, read_page_file(name).decode("utf-8")).encode(),
            HTML_TYPE,
        )
        for route, name in PAGES.items()
    }
    return assets, pages


def _answer(request: web.Request, file: PageFile, cache_control: str) -> web.Response:
    headers = {
        **SECURITY_HEADERS,
        "Cache-Control": cache_control,
        "ETag": f'"{file.etag}"',
    }
    if any(tag.value == file.etag for tag in request.if_none_match or ()):
        return web.Response(status=304, headers=headers)
    return web.Response(body=file.body, headers={**headers, "Content-Type": file.content_type})


def add_routes(app: web.Application) -> None:
    """`GET /`, `GET /docs` and `GET /static/{name}` (HEAD too), all public."""
    assets, pages = load_files()

    def page_handler(route: str) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def page(request: web.Request) -> web.Response:
            return _answer(request, pages[route], REVALIDATE)

        return page

    async def static(request: web.Request) -> web.Response:
        name = request.match_info["name"]
        asset = assets.get(name)
        if asset is None:
            raise ApiError(404, "not_found", f"no asset {name!r}")
        current = request.query.get("v") == asset.etag
        return _answer(request, asset, IMMUTABLE if current else REVALIDATE)

    for route in PAGES:
        app.router.add_get(route, page_handler(route))
    app.router.add_get("/static/{name}", static)
