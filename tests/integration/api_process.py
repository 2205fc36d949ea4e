"""Plain HTTP calls to a real `storemon api` process (the `api_process` fixture)."""

from __future__ import annotations

import http.client
import json
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

ONE_POLL = b'[{"store_id":"s1","timestamp_utc":"2023-01-25T18:00:00Z","status":"active"}]'
JSON_TYPE = {"Content-Type": "application/json"}

ApiStarter = Callable[..., str]


@dataclass(frozen=True)
class Answer:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def call(
    url: str,
    method: str,
    path: str,
    *,
    token: bytes | str | None = None,
    body: bytes | None = None,
    headers: dict[str, str | bytes] | None = None,
) -> Answer:
    """One request with http.client, which sends header bytes as given (non-ASCII included)."""
    address = urlsplit(url)
    connection = http.client.HTTPConnection(address.hostname, address.port, timeout=30)
    all_headers: dict[str, str | bytes] = dict(headers or {})
    if token is not None:
        token_bytes = token.encode() if isinstance(token, str) else token
        all_headers["Authorization"] = b"Bearer " + token_bytes
    try:
        connection.request(method, path, body=body, headers=all_headers)
        response = connection.getresponse()
        return Answer(response.status, dict(response.getheaders()), response.read())
    finally:
        connection.close()
