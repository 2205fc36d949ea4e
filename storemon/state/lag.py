"""How far each state partition's owner is behind its input: in records (the worker
group's consumer lag) and in event time (the newest poll produced to the partition
against the newest poll its owner accepted). Read by the reporter's /metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

from storemon.config import Settings
from storemon.kafka.lag import PartitionLag, consumer_lag
from storemon.kafka.topics import worker_app_id
from storemon.state.newest import NewestPollReader
from storemon.timebase import US_PER_SECOND


@dataclass(frozen=True)
class StateLag:
    #: The worker group's consumer lag on each input topic partition.
    records: list[PartitionLag]
    #: State partition -> the newest poll time its owner accepted (µs).
    accepted_us: dict[int, int]
    #: State partition -> the newest valid poll time of the last `store-status` record (µs).
    produced_us: dict[int, int]

    def seconds_behind(self) -> dict[int, float]:
        """Partition -> event-time seconds its state lacks: the newest poll produced minus
        the newest accepted, at least 0; only partitions where both are known."""
        return {
            partition: max(0.0, (produced - self.accepted_us[partition]) / US_PER_SECOND)
            for partition, produced in self.produced_us.items()
            if partition in self.accepted_us
        }


def read_state_lag(settings: Settings, reader: NewestPollReader, timeout: float) -> StateLag:
    """The figures now (blocking; KafkaException or TimeoutError while Kafka is away)."""
    return StateLag(
        consumer_lag(settings, timeout, only={worker_app_id(settings)}),
        reader.by_partition(timeout),
        reader.produced_by_partition(timeout),
    )
