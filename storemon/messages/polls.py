"""The `store-status` codec: one poll, a batch of one store's polls, or a partition batch
(polls of many stores of one partition).

Schemas: schemas/status-observation.schema.json, schemas/status-batch.schema.json and
schemas/status-partition-batch.schema.json (a poll is a "poll" on the wire).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from storemon.inputs.values import TOO_FAR_AHEAD, Poll, RowError, parse_poll, parse_store_id
from storemon.messages.records import UNKNOWN_FIELD, check_key, json_object
from storemon.timebase import US_PER_DAY, format_timestamp, now_us

#: Polls from further in the future than this are a clock or producer bug: one of
#: them would become every report's as_of and push all real polls out of the window.
MAX_FUTURE_US = US_PER_DAY

POLL_FIELDS = frozenset({"store_id", "timestamp_utc", "status"})
BATCH_FIELDS = frozenset({"store_id", "observations"})
PARTITION_BATCH_FIELDS = frozenset({"partition", "polls"})

#: Most polls one batch record may carry (~60 bytes each, well inside Kafka's 1 MB).
MAX_BATCH_POLLS = 1000
#: Most polls one partition batch may carry (~100 bytes each with their store_id).
MAX_PARTITION_BATCH_POLLS = 2000



def poll_from_record(record: Mapping[str, object], received_at_us: int) -> Poll:
    """A poll given as a mapping (JSON object, CSV row), fully checked."""
    if not record.keys() <= POLL_FIELDS:
        raise RowError(sorted(record.keys() - POLL_FIELDS)[0], UNKNOWN_FIELD)
    poll = parse_poll(record)
    if poll.timestamp_us > received_at_us + MAX_FUTURE_US:
        raise RowError("timestamp_utc", TOO_FAR_AHEAD)
    return poll


@dataclass
class PollBatch:
    """One `store-status` record: one store's polls, in record order (the later wins)."""

    store_id: str
    polls: list[Poll] = field(default_factory=list)
    #: Entries of a batch that failed their checks, each with its raw JSON.
    rejected: list[tuple[RowError, str]] = field(default_factory=list)


@dataclass
class PartitionPolls:
    """A `store-status` record's polls, by store, in record order (the later wins)."""

    by_store: dict[str, list[Poll]] = field(default_factory=dict)
    #: Entries that failed their checks, each with its raw JSON.
    rejected: list[tuple[RowError, str]] = field(default_factory=list)

    def count(self) -> int:
        return sum(len(polls) for polls in self.by_store.values())


def decode_status(key: bytes | None, value: bytes | None) -> PartitionPolls:
    """Any `store-status` record, checked: one poll, a store's batch, or a partition
    batch. A record wrong as a whole raises RowError; a bad entry of a batch is rejected
    on its own (field `<list>.<index>.<field>`) and the others kept. Where each store
    belongs is for the caller to check (a partition batch's stores are not keyed)."""
    record = json_object(value)
    if "partition" not in record and "polls" not in record:
        batch = decode_polls(key, value, record)
        return PartitionPolls({batch.store_id: batch.polls} if batch.polls else {},
                              batch.rejected)
    unknown = set(record) - PARTITION_BATCH_FIELDS
    if unknown:
        raise RowError(sorted(unknown)[0], UNKNOWN_FIELD)
    if key is not None:
        raise RowError("key", "a partition batch has no key (it names its partition)")
    partition = record.get("partition")
    if not isinstance(partition, int) or isinstance(partition, bool) or partition < 0:
        raise RowError("partition", "must be the record's partition number")
    entries = record.get("polls")
    if not isinstance(entries, list) or not entries:
        raise RowError("polls", "must be a non-empty list of {store_id, timestamp_utc, status}")
    if len(entries) > MAX_PARTITION_BATCH_POLLS:
        raise RowError("polls", f"more than {MAX_PARTITION_BATCH_POLLS} polls in one record")
    received_at_us = now_us()
    polls = PartitionPolls()
    for position, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise RowError("", "must be an object {store_id, timestamp_utc, status}")
            poll = poll_from_record(entry, received_at_us)
        except RowError as exc:
            where = f"polls.{position}" + (f".{exc.field}" if exc.field else "")
            polls.rejected.append((RowError(where, exc.reason), json.dumps(entry)))
            continue
        polls.by_store.setdefault(poll.store_id, []).append(poll)
    return polls


def decode_polls(
    key: bytes | None, value: bytes | None, record: dict[str, object] | None = None
) -> PollBatch:
    """A `store-status` record, one poll or a batch of one store's, checked.

    A record that is wrong as a whole raises RowError; in a batch, each bad entry
    is rejected on its own (field `observations.<index>.<field>`) and the others kept.
    """
    record = json_object(value) if record is None else record
    received_at_us = now_us()
    if "observations" not in record:
        poll = poll_from_record(record, received_at_us)
        check_key(key, poll.store_id)
        return PollBatch(poll.store_id, [poll])
    unknown = set(record) - BATCH_FIELDS
    if unknown:
        raise RowError(sorted(unknown)[0], UNKNOWN_FIELD)
    store_id = parse_store_id(record.get("store_id"))
    check_key(key, store_id)
    entries = record["observations"]
    if not isinstance(entries, list) or not entries:
        raise RowError("observations", "must be a non-empty list of {timestamp_utc, status}")
    if len(entries) > MAX_BATCH_POLLS:
        raise RowError("observations", f"more than {MAX_BATCH_POLLS} polls in one record")
    batch = PollBatch(store_id)
    for position, entry in enumerate(entries):
        try:
            if not isinstance(entry, dict):
                raise RowError("", "must be an object {timestamp_utc, status}")
            if "store_id" in entry:
                raise RowError("store_id", "belongs to the batch, not to its entries")
            batch.polls.append(
                poll_from_record({"store_id": store_id, **entry}, received_at_us)
            )
        except RowError as exc:
            where = f"observations.{position}" + (f".{exc.field}" if exc.field else "")
            batch.rejected.append((RowError(where, exc.reason), json.dumps(entry)))
    return batch


def encode_poll(poll: Poll) -> bytes:
    """The canonical `store-status` value (schemas/status-observation.schema.json)."""
    return json.dumps(
        {
            "store_id": poll.store_id,
            "timestamp_utc": format_timestamp(poll.timestamp_us),
            "status": poll.status,
        },
        separators=(",", ":"),
    ).encode()


def encode_poll_batch(store_id: str, polls: Iterable[tuple[str, bool]]) -> bytes:
    """A batch `store-status` value of (ISO-8601 UTC timestamp, active) pairs.

    Formatted by hand: the loader encodes millions of polls, and json.dumps per
    poll would halve its throughput. Timestamps are ISO-8601 text, safe in JSON.
    """
    entries = ",".join(
        f'{{"timestamp_utc":"{stamp}","status":"{"active" if active else "inactive"}"}}'
        for stamp, active in polls
    )
    return f'{{"store_id":{json.dumps(store_id)},"observations":[{entries}]}}'.encode()




def encode_partition_batch(partition: int, polls: Iterable[tuple[str, str, bool]]) -> bytes:
    """A partition batch `store-status` value of (store_id, ISO-8601 UTC timestamp, active)
    polls, all of `partition`. Formatted by hand, as `encode_poll_batch`."""
    entries = ",".join(
        f'{{"store_id":{json.dumps(store_id)},"timestamp_utc":"{stamp}",'
        f'"status":"{"active" if active else "inactive"}"}}'
        for store_id, stamp, active in polls
    )
    return f'{{"partition":{int(partition)},"polls":[{entries}]}}'.encode()
