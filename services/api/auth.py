"""Bearer tokens with scopes: which route needs which, checked by one middleware.

Tokens come from the settings (STOREMON_TOKENS, STOREMON_TOKENS_FILE, and
STOREMON_INGEST_TOKEN as an `ingest` token). With none, the API is open, as a
local `storemon up` needs. With any, every route but the public ones needs
`Authorization: Bearer <token>`: none, a malformed one or an unknown one answers
401 with `WWW-Authenticate: Bearer`; a known token without the route's scope, 403
naming that scope. `admin` includes `read` and `ingest`.

Public: health, readiness, the OpenAPI document, and /metrics, which Prometheus
scrapes without a token and which holds counts and consumer lag, never store data.
"""

from __future__ import annotations

import hashlib
import hmac
import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from storemon.api.errors import error_response
from storemon.config import SCOPE_ADMIN, SCOPE_INGEST, SCOPE_READ, ApiToken

log = logging.getLogger("storemon.api")

#: The scope each route needs, by method and path as routed; None: public.
#: tests/unit/test_auth.py checks this against the live routes and schemas/openapi.json.
ROUTE_SCOPES: dict[tuple[str, str], str | None] = {
    ("POST", "/trigger_report"): SCOPE_READ,
    ("GET", "/trigger_report"): SCOPE_READ,
    ("GET", "/get_report"): SCOPE_READ,
    ("GET", "/reports"): SCOPE_READ,
    ("GET", "/reports/{report_id}.csv"): SCOPE_READ,
    ("GET", "/reports/{report_id}/events"): SCOPE_READ,
    ("GET", "/reports/{report_id}/rows"): SCOPE_READ,
    ("DELETE", "/reports/{report_id}"): SCOPE_ADMIN,
    ("POST", "/events"): SCOPE_INGEST,
    ("GET", "/stores/{store_id}"): SCOPE_READ,
    ("GET", "/stores/{store_id}/polls"): SCOPE_READ,
    ("GET", "/healthz"): None,
    ("GET", "/readyz"): None,
    ("GET", "/metrics"): None,
    ("GET", "/openapi.json"): None,
    # The web page (services/api/page.py): what it shows comes from routes that check.
    ("GET", "/"): None,
    ("GET", "/docs"): None,
    ("GET", "/static/{name}"): None,
}
REALM = 'Bearer realm="storemon"'


def _route_key(request: web.Request) -> tuple[str, str] | None:
    """(method, path as routed) of the request's route; None when no route matched."""
    resource = request.match_info.route.resource
    if resource is None:
        return None
    # aiohttp answers HEAD with a GET route's handler: the same data, the same scope.
    method = "GET" if request.method == "HEAD" else request.method
    return method, resource.canonical


def _bearer_digest(request: web.Request) -> bytes | None:
    """The SHA-256 of the request's bearer token, or None if it gives none."""
    scheme, _, given = request.headers.get("Authorization", "").partition(" ")
    given = given.strip()
    if scheme.lower() != "bearer" or not given:
        return None
    # aiohttp decodes header bytes that are not UTF-8 with surrogateescape: this gives
    # them back unchanged, so any byte string is compared, never refused with a 500.
    return hashlib.sha256(given.encode("utf-8", "surrogateescape")).digest()


def find_token(digest: bytes, tokens: tuple[ApiToken, ...]) -> ApiToken | None:
    """The token whose secret has this digest. Every token is compared, in constant time
    each, so the time taken does not tell which one matched, or how nearly."""
    matches = [token for token in tokens if hmac.compare_digest(digest, token.secret_sha256)]
    return matches[0] if matches else None


def _unauthorized(scope: str | None, invalid: bool) -> web.Response:
    needs = f"a token with scope {scope!r}" if scope else "a token"
    challenge = f'{REALM}, error="invalid_token"' if invalid else REALM
    return error_response(
        401,
        "unauthorized",
        f"this route needs 'Authorization: Bearer <token>', {needs}",
        {"WWW-Authenticate": challenge},
    )


def auth_middleware(tokens: tuple[ApiToken, ...]) -> web.middleware:
    """The middleware checking `tokens`; without any, every request passes."""

    @web.middleware
    async def check_token(request: web.Request, handler: Handler) -> web.StreamResponse:
        if not tokens:
            return await handler(request)
        key = _route_key(request)
        # An unknown route or method needs some valid token before it is told so (404, 405).
        scope = ROUTE_SCOPES.get(key) if key is not None else None
        if key in ROUTE_SCOPES and scope is None:
            return await handler(request)
        digest = _bearer_digest(request)
        token = None if digest is None else find_token(digest, tokens)
        if token is None:
            return _unauthorized(scope, invalid=digest is not None)
        if scope is not None and not token.allows(scope):
            route = f"{key[0]} {key[1]}" if key else request.path
            return error_response(
                403,
                "forbidden",
                f"{route} needs a token with scope {scope!r}; this one has "
                f"{', '.join(sorted(token.scopes))}",
                {"WWW-Authenticate": f'{REALM}, error="insufficient_scope", scope="{scope}"'},
                required_scope=scope,
            )
        return await handler(request)

    return check_token


def log_configuration(tokens: tuple[ApiToken, ...]) -> None:
    """Say at start whether the API is open, and which tokens it knows (never a secret)."""
    if not tokens:
        log.warning(
            "no API token configured: every route is open to whoever reaches the API "
            "(set STOREMON_TOKENS or STOREMON_TOKENS_FILE)"
        )
        return
    log.info(
        "API tokens: %s",
        ", ".join(f"{token.name} ({'+'.join(sorted(token.scopes))})" for token in tokens),
    )
