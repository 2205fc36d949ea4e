"""The `report-requests` codec: what the API asks reporters for.

Schema: schemas/report-request.schema.json.

The API encodes a request with `ReportRequest.encode`; a reporter decodes it with
`ReportRequest.decode`, which checks it against the schema and the same value
rules, so both sides agree on what a valid request is.
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

from storemon.inputs.values import RowError, parse_timestamp
from storemon.messages import schemas
from storemon.messages.polls import MAX_FUTURE_US
from storemon.messages.records import NotJson, decode_json, encode_json
from storemon.timebase import format_timestamp, now_us

#: as_of may not be earlier than this (PostgreSQL would store year 1 as -infinity)...
EARLIEST_AS_OF_US = 946_684_800_000_000  # 2000-01-01 00:00:00 UTC
#: ...nor later than this after now (polls further ahead are refused too).
MAX_AS_OF_AHEAD_US = MAX_FUTURE_US

REPORT_ID_RE = re.compile(r"[0-9a-f]{32}")


def new_report_id() -> str:
    """A new report id: 128 random bits, so ids cannot be guessed."""
    return secrets.token_hex(16)


def is_report_id(text: str) -> bool:
    """Whether `text` is a report id: 128 bits as 32 lower-case hex characters."""
    return REPORT_ID_RE.fullmatch(text) is not None


def parse_as_of(value: object) -> int:
    """A requested `as_of` (a report's, or a live store query's) as epoch µs; RowError
    (field "as_of") for one that is not a timestamp or lies outside the allowed range."""
    try:
        as_of_us = parse_timestamp(value)
    except RowError as exc:
        raise RowError("as_of", exc.reason) from None
    latest_us = now_us() + MAX_AS_OF_AHEAD_US
    if not EARLIEST_AS_OF_US <= as_of_us <= latest_us:
        raise RowError(
            "as_of",
            f"must be between {format_timestamp(EARLIEST_AS_OF_US)} and a day from now"
            f" ({format_timestamp(latest_us)})",
        )
    return as_of_us


class InvalidRequest(ValueError):
    """A report request that breaks schemas/report-request.schema.json.

    `report_id` is the request's id when it has a valid one (so its report can be
    failed with the reason), else None.
    """

    def __init__(self, report_id: str | None, reason: str) -> None:
        super().__init__(reason)
        self.report_id = report_id
        self.reason = reason


@dataclass(frozen=True)
class ReportRequest:
    """One report request: `as_of` None means the newest poll; `store_ids` None, every store."""

    report_id: str
    requested_at_us: int
    as_of_us: int | None = None
    store_ids: tuple[str, ...] | None = None

    def parameters(self) -> dict[str, Any]:
        """What was asked, as the reports table records it (`as_of`, `store_ids` when given)."""
        asked: dict[str, Any] = {}
        if self.as_of_us is not None:
            asked["as_of"] = format_timestamp(self.as_of_us)
        if self.store_ids is not None:
            asked["store_ids"] = list(self.store_ids)
        return asked

    def encode(self) -> bytes:
        """The record value on `report-requests` (the key is the report id)."""
        value = {
            "report_id": self.report_id,
            "requested_at": format_timestamp(self.requested_at_us),
            **self.parameters(),
        }
        return encode_json(value)

    @classmethod
    def decode(cls, value: bytes | None) -> ReportRequest:
        """A request from its record value; InvalidRequest says what is wrong."""
        try:
            decoded: Any = decode_json(value)
        except NotJson as exc:
            raise InvalidRequest(None, str(exc)) from None
        report_id = decoded.get("report_id") if isinstance(decoded, dict) else None
        if not (isinstance(report_id, str) and is_report_id(report_id)):
            report_id = None
        errors = schemas.schema_errors(schemas.REPORT_REQUEST, decoded)
        if errors or report_id is None:
            raise InvalidRequest(report_id, "; ".join(errors) or "report_id: invalid")
        try:
            requested_at_us = parse_timestamp(decoded["requested_at"])
        except RowError as exc:
            raise InvalidRequest(report_id, f"requested_at: {exc.reason}") from None
        as_of = decoded.get("as_of")
        try:
            as_of_us = None if as_of is None else parse_timestamp(as_of)
        except RowError as exc:
            raise InvalidRequest(report_id, f"as_of: {exc.reason}") from None
        store_ids = decoded.get("store_ids")
        return cls(
            report_id,
            requested_at_us,
            as_of_us,
            None if store_ids is None else tuple(store_ids),
        )
