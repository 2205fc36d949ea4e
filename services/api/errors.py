"""Errors as JSON `{"error": {"code", "message"}}`, whatever raised them; never a traceback."""

from __future__ import annotations

import logging

from aiohttp import web
from aiohttp.typedefs import Handler

from storemon.database import reports_db
from storemon.observability.health import error_response  # shared with the reporter

log = logging.getLogger("storemon.api")

#: Codes of the errors aiohttp itself raises (no route, wrong method, body too big).
_CODE_OF_STATUS = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


#: What a 503 for an unreachable database suggests waiting (Retry-After, seconds).
DATABASE_RETRY_AFTER_S = 5


class ApiError(Exception):
    def __init__(
        self, status: int, code: str, message: str, headers: dict[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError as exc:
        return error_response(exc.status, exc.code, exc.message, exc.headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {name: exc.headers[name] for name in ("Allow",) if name in exc.headers}
        message = exc.text if exc.status == 413 else exc.reason
        return error_response(
            exc.status, _CODE_OF_STATUS.get(exc.status, "http_error"), message or "", headers
        )
    except Exception as exc:
        if reports_db.is_unavailable(exc):
            log.warning("%s %s: database unreachable: %s", request.method, request.path, exc)
            return error_response(
                503,
                "database_unavailable",
                "the database cannot be reached; try again shortly",
                {"Retry-After": str(DATABASE_RETRY_AFTER_S)},
            )
        log.exception("%s %s failed", request.method, request.path)
        return error_response(500, "internal", "internal error (details are in the server log)")
