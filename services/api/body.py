"""Reading request bodies within the size limit (STOREMON_MAX_BODY_BYTES)."""

from __future__ import annotations

from aiohttp import web

from storemon.api.context import SETTINGS
from storemon.api.errors import ApiError


def _too_large(limit: int, size: int | None) -> ApiError:
    size_text = "" if size is None else f" ({size} bytes)"
    return ApiError(
        413,
        "payload_too_large",
        f"the request body{size_text} is over the limit of {limit} bytes "
        "(STOREMON_MAX_BODY_BYTES); send it in smaller parts",
    )


async def read_body(request: web.Request) -> bytes:
    """The whole body, or 413 once it is known to be over the limit."""
    limit = request.app[SETTINGS].max_body_bytes
    if request.content_length is not None and request.content_length > limit:
        raise _too_large(limit, request.content_length)
    try:
        return await request.read()
    except web.HTTPRequestEntityTooLarge:  # a chunked body that grew too big
        raise _too_large(limit, None) from None
