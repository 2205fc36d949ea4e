"""The layout of the worker's per-store state: tables, keys, values, and checks of a record.

The Faust worker (services/ingest/worker.py) writes three tables; each is
backed by a compacted changelog topic, which is the durable form of the state.
The reporter reads the same changelogs to take a snapshot, so the layout
(table names, key encoding, value encoding) is defined once, here.

Polls are kept per store and UTC day: the key is
`b"<store_id> <day number since the epoch>"` and the value that day's polls,
sorted by time, each 9 bytes (the timestamp in µs as a big-endian int64, then
`a`ctive or `i`nactive). Why per day: a changelog record stays small (an
hourly-polled store's day is ~24 polls, ~216 bytes; never the store's whole
week), while a batch of a store's polls costs one table write per day it
touches instead of one per poll, which is what lets one Faust worker keep up
with bulk loads. A poll replayed or received twice lands on the same entry
(idempotent, the later accepted value wins), a late poll lands in its day, and
eviction drops whole days. store_id cannot contain white space (schemas/), so
the space separates the two parts of a key unambiguously.
"""


from __future__ import annotations

import logging
import struct

import numpy as np

from storemon.inputs.values import RowError, parse_store_id, validate_timezone
from storemon.messages.schedules import decode_schedule

log = logging.getLogger(__name__)


POLLS_TABLE = "polls"
SCHEDULES_TABLE = "schedules"
ZONES_TABLE = "zones"
TABLES = (POLLS_TABLE, SCHEDULES_TABLE, ZONES_TABLE)
#: One key per state partition (its number in ASCII), in that partition's changelog
#: partition: the newest poll time the partition has accepted, 8 bytes big-endian µs.
#: What a report's default `as_of` is taken from, without reading any poll.
NEWEST_POLL_TABLE = "newest_poll"

ACTIVE = b"a"
INACTIVE = b"i"


#: One poll inside a day value: timestamp µs (big-endian int64), status byte.
POLL_DTYPE = np.dtype([("timestamp_us", ">i8"), ("status", "S1")])
POLL_BYTES = POLL_DTYPE.itemsize



def poll_day_key(store_id: str, day: int) -> bytes:
    return f"{store_id} {day}".encode()


class StateRecordError(ValueError):
    """A changelog record that breaks the layout: every reader skips it, logs and counts it.

    Nothing storemon writes breaks it, but anyone who can write to a changelog can,
    and one such record must not stop every reader of the state.
    """


def split_poll_day_key(key: bytes | None) -> tuple[str, int]:
    """(store_id, UTC day) of an polls key; StateRecordError if it is not one."""
    try:
        store_id, _, day = (key or b"").decode().rpartition(" ")
        parse_store_id(store_id)
        return store_id, int(day)
    except (UnicodeDecodeError, ValueError):  # RowError is a ValueError
        raise StateRecordError(f"key {_shown(key)} is not '<store_id> <UTC day>'") from None


def check_day_value(value: bytes) -> None:
    """StateRecordError unless `value` is a day value (see encode_day)."""
    if not value or len(value) % POLL_BYTES:
        raise StateRecordError(f"value of {len(value)} bytes is not a whole number of polls")
    # Every status byte (the 9th of each poll) with a and i taken out: nothing may be left.
    if value[POLL_BYTES - 1 :: POLL_BYTES].translate(None, ACTIVE + INACTIVE):
        raise StateRecordError("value holds a status other than a or i")


def check_record(table: str, key: bytes | None, value: bytes | None) -> None:
    """StateRecordError unless (key, value) is a record the worker could have written."""
    if table == POLLS_TABLE:
        split_poll_day_key(key)
        if value is not None:
            check_day_value(value)
        return
    try:
        parse_store_id((key or b"").decode())
        if value is None:
            return
        if table == SCHEDULES_TABLE:
            decode_schedule(key, value)
        else:
            validate_timezone(value.decode())
    except (UnicodeDecodeError, RowError) as exc:
        raise StateRecordError(f"{table} record of {_shown(key)}: {exc}") from None


def _shown(key: bytes | None) -> str:
    return repr(key) if key is None or len(key) <= 100 else f"{key[:100]!r}..."


#: One poll as struct packs it: the same 9 bytes as POLL_DTYPE (a day holds a few dozen
#: polls, where struct is several times quicker than numpy's per-call cost).
_POLL = struct.Struct(">q1s")


def decode_day(value: bytes) -> dict[int, bytes]:
    """A day value as {timestamp µs: status byte}, in time order."""
    return dict(_POLL.iter_unpack(value))


def encode_day(polls: dict[int, bytes]) -> bytes:
    """The day value of {timestamp µs: status byte}: sorted by time, 9 bytes a poll."""
    return b"".join(_POLL.pack(stamp, status) for stamp, status in sorted(polls.items()))


def latest_timestamp_us(value: bytes) -> int:
    """The last (greatest) poll time of a non-empty day value."""
    latest: int = _POLL.unpack_from(value, len(value) - POLL_BYTES)[0]
    return latest


def newest_poll_key(partition: int) -> bytes:
    return str(partition).encode()


def encode_newest_poll(timestamp_us: int) -> bytes:
    return timestamp_us.to_bytes(8, "big", signed=True)


def decode_newest_poll(value: bytes) -> int:
    """The time of a newest_poll value; StateRecordError if it is not 8 bytes."""
    if len(value) != 8:
        raise StateRecordError(f"newest_poll value of {len(value)} bytes, not 8")
    return int.from_bytes(value, "big", signed=True)
