"""Where the worker's consumer reads from after Faust seeks "to the committed offsets".

Faust seeks every assigned partition back to its committed offset after each recovery
and whenever its fetcher returned records while the flow was stopped, so that records
fetched but not processed are read again. aiokafka's `seek_to_committed` seeks only
partitions that have a committed offset above 0: a partition the group never committed
kept the position past the records fetched and dropped, and those were never read.
Seen with four workers starting together on a new deployment: a worker's store-timezones
partitions, taken over after the first worker had read one record of each, stayed at
their end until a new record came, whose commit then covered the 5,741 never applied
(report-tasks partitions showed the same). A partition without a committed offset is
read from its beginning, as `auto_offset_reset="earliest"` reads a new one.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

log = logging.getLogger(__name__)


def read_uncommitted_from_beginning(consumer: Any) -> None:
    """Make `consumer` (Faust's) seek partitions without a committed offset to their
    beginning whenever it seeks the others to their committed offsets."""
    seek_to_committed = consumer.seek_to_committed

    async def seek_to_committed_or_beginning() -> Mapping[Any, int | None]:
        committed: Mapping[Any, int | None] = await seek_to_committed()
        # aiokafka seeks neither None nor 0 (both: nothing of the partition committed).
        uncommitted = sorted(tp for tp, offset in committed.items() if not offset)
        if uncommitted:
            log.info("partitions without a committed offset read from their beginning: %s",
                     ", ".join(f"{tp.topic}[{tp.partition}]" for tp in uncommitted))
            # Faust's consumer has no seek_to_beginning of its own; its aiokafka thread has.
            await consumer._thread.seek_to_beginning(*uncommitted)
        return committed

    consumer.seek_to_committed = seek_to_committed_or_beginning
