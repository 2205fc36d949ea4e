"""Workers started together on a new deployment whose inputs are already loaded.

The first worker reads a little of every partition before the others join; the group
has committed nothing yet. Faust then seeks back "to the committed offsets", which
aiokafka does only for partitions with one: the records a worker had fetched and
dropped while its flow was stopped were skipped, and its store-timezones partitions
stayed at their end (about 2 deployments in 5 before services/ingest/positions.py).
Fresh topics and schema per deployment; nothing here stops a server.
"""

import pytest

from ..services import StateProbe
from ..stack import Stack, data_arguments, store_ids_in

pytestmark = pytest.mark.integration

STORES = 2_000
WORKERS = 4


@pytest.mark.parametrize("seed", [41, 42])
def test_workers_starting_together_apply_every_loaded_record(
    kafka_bootstrap, postgres_dsn, tmp_path, seed
):
    stack = Stack.create(kafka_bootstrap, postgres_dsn, tmp_path, stores=STORES, seed=seed)
    probe = StateProbe(stack.settings)
    try:
        stack.storemon("load", "--no-progress", *data_arguments(stack.data))
        for number in range(1, WORKERS + 1):
            stack.start(f"worker-{number}", "worker")
        stack.wait_for_worker()  # every input partition consumed to its end
        state = probe.view()
        assert set(state.zones) == store_ids_in(stack.data.timezones_path)
        assert set(state.schedules) == store_ids_in(stack.data.hours_path)
        assert set(state.poll_days) == store_ids_in(stack.data.status_path)
    finally:
        probe.close()
        stack.close()
