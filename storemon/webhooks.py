"""Webhooks: a report's ending POSTed to the URL its trigger gave, signed.

The body is the report's `report-events` event (schemas/report-event.schema.json).
The header `X-Storemon-Signature: t=<unix seconds>,v1=<hex>` carries HMAC-SHA256,
keyed with STOREMON_WEBHOOK_SECRET, of `<t>.<body>`: a receiver recomputes it
(`verify`) and refuses a signature older than a few minutes, so a captured request
cannot be replayed later. Only URLs whose host STOREMON_WEBHOOK_ALLOWED_HOSTS names are
accepted at trigger time: the API never sends requests to arbitrary addresses.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from urllib.parse import urlsplit

SIGNATURE_HEADER = "X-Storemon-Signature"
#: How old a signature a receiver accepts (`verify`'s default).
DEFAULT_TOLERANCE_S = 300
MAX_URL_CHARS = 2000


class BadSignature(ValueError):
    """A webhook request whose signature does not hold."""


def _digest(secret: str, timestamp: int, body: bytes) -> str:
    signed = str(timestamp).encode() + b"." + body
    return hmac.new(secret.encode(), signed, hashlib.sha256).hexdigest()


def sign(secret: str, body: bytes, timestamp: int | None = None) -> str:
    """The signature header's value for `body`, now (or at `timestamp`)."""
    moment = int(time.time()) if timestamp is None else timestamp
    return f"t={moment},v1={_digest(secret, moment, body)}"


def verify(
    secret: str, body: bytes, header: str, tolerance_s: int = DEFAULT_TOLERANCE_S,
    now: float | None = None,
) -> None:
    """BadSignature unless `header` signs `body` with `secret` within `tolerance_s`."""
    fields = dict(part.split("=", 1) for part in header.split(",") if "=" in part)
    try:
        timestamp = int(fields["t"])
        given = fields["v1"]
    except (KeyError, ValueError):
        raise BadSignature("no t=<seconds>,v1=<hex> signature") from None
    if abs((time.time() if now is None else now) - timestamp) > tolerance_s:
        raise BadSignature(f"signed {timestamp}: older than {tolerance_s} s (a replay?)")
    if not hmac.compare_digest(given, _digest(secret, timestamp, body)):
        raise BadSignature("signature does not match")


def callback_problem(url: str, allowed_hosts: tuple[str, ...]) -> str | None:
    """Why `url` may not be a webhook's (None: it may): an http(s) URL without user info,
    whose host is one of `allowed_hosts` (`*.example.com` allows its subdomains)."""
    if len(url) > MAX_URL_CHARS:
        return f"is longer than {MAX_URL_CHARS} characters"
    try:
        parts = urlsplit(url)
        port_ok = parts.port is None or 0 < parts.port < 65536
    except ValueError:
        return "is not a URL"
    if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok:
        return "must be an http:// or https:// URL"
    if parts.username is not None or parts.password is not None:
        return "must not carry a user or password"
    host = parts.hostname.lower()
    for allowed in allowed_hosts:
        if (allowed.startswith("*.") and host.endswith(allowed[1:])) or host == allowed:
            return None
    if not allowed_hosts:
        return "is not accepted: no host is allowed (STOREMON_WEBHOOK_ALLOWED_HOSTS)"
    return f"has host {host!r}, which STOREMON_WEBHOOK_ALLOWED_HOSTS does not allow"


def retry_pause_s(attempts: int) -> float:
    """The pause after `attempts` failed attempts: 1, 2, 4, ... up to 60 seconds."""
    return float(min(60, 2 ** max(0, attempts - 1)))
