"""The `report-tasks` codec: one part of a report, asked of the owner of one state partition.

Schema: schemas/report-task.schema.json.

A reporter plans a report as one task per state partition it needs and sends each
to that partition of `report-tasks`, which is co-partitioned with the input topics:
the worker that Faust assigned state partition p also consumes task partition p.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from storemon.messages import schemas
from storemon.messages.records import decode_valid, encode_json


class InvalidTask(ValueError):
    """A task value that breaks schemas/report-task.schema.json."""


@dataclass(frozen=True)
class ReportTask:
    """Compute `report_id`'s rows of state partition `partition` at `as_of_us`.

    `store_ids` None: every store of the partition; else only those (all of this partition).
    """

    report_id: str
    partition: int
    as_of_us: int
    store_ids: tuple[str, ...] | None = None

    def encode(self) -> bytes:
        """The record value (the key is the report id, the partition `partition`)."""
        value: dict[str, Any] = {
            "report_id": self.report_id,
            "partition": self.partition,
            "as_of_us": self.as_of_us,
        }
        if self.store_ids is not None:
            value["store_ids"] = list(self.store_ids)
        return encode_json(value)

    @classmethod
    def decode(cls, value: bytes | None) -> ReportTask:
        """A task from its record value; InvalidTask says what is wrong."""
        decoded = decode_valid(value, schemas.REPORT_TASK, InvalidTask)
        store_ids = decoded.get("store_ids")
        return cls(
            decoded["report_id"],
            decoded["partition"],
            decoded["as_of_us"],
            None if store_ids is None else tuple(store_ids),
        )
