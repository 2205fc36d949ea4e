"""The metric families storemon serves to Prometheus: one list for the code that
emits them, the Grafana dashboard (deploy/monitoring/) and the test that checks
the dashboard asks only for metrics that exist.

Names are those of the exposition: counters end in `_total` (prometheus_client adds
it to a counter's name, and takes it off one given with it); a histogram's samples add
`_bucket`, `_sum` and `_count` to its name.
"""

from __future__ import annotations

# The API, GET /metrics (STOREMON_API_PORT). Figures read from Kafka or PostgreSQL
# (lag, reports) are the same on every API replica; counters are per process.
HTTP_REQUESTS = "storemon_http_requests_total"
#: A histogram, per route.
HTTP_REQUEST_DURATION = "storemon_http_request_duration_seconds"
EVENTS = "storemon_events_total"
REPORTS = "storemon_reports"
REPORT_DURATION = "storemon_report_duration_seconds"
KAFKA_UP = "storemon_kafka_up"
DATABASE_UP = "storemon_database_up"
CONSUMER_LAG = "storemon_consumer_lag"
CONSUMER_LAG_SECONDS = "storemon_consumer_lag_seconds"
DEAD_LETTERS = "storemon_dead_letters_total"
STATE_STORES = "storemon_state_stores"
STATE_POLLS = "storemon_state_polls"
STATE_GREATEST_POLL = "storemon_state_greatest_poll_seconds"

API_METRICS = (
    HTTP_REQUESTS,
    HTTP_REQUEST_DURATION,
    EVENTS,
    REPORTS,
    REPORT_DURATION,
    KAFKA_UP,
    DATABASE_UP,
    CONSUMER_LAG,
    CONSUMER_LAG_SECONDS,
    DEAD_LETTERS,
    STATE_STORES,
    STATE_POLLS,
    STATE_GREATEST_POLL,
)

# The Faust worker, GET /metrics on port 9101: figures of the partitions it owns.
WORKER_EVENTS = "storemon_worker_events_total"
WORKER_REJECTED = "storemon_worker_rejected_total"
WORKER_STORES = "storemon_worker_stores"
WORKER_POLLS = "storemon_worker_polls"
WORKER_GREATEST_EVENT_TIME = "storemon_worker_greatest_event_time_seconds"
WORKER_STATE_RECORDS_SKIPPED = "storemon_worker_state_records_skipped_total"
WORKER_REPORT_PARTS = "storemon_worker_report_parts_total"

WORKER_METRICS = (
    WORKER_EVENTS,
    WORKER_REJECTED,
    WORKER_STORES,
    WORKER_POLLS,
    WORKER_GREATEST_EVENT_TIME,
    WORKER_STATE_RECORDS_SKIPPED,
    WORKER_REPORT_PARTS,
)

# The reporter, GET /metrics on STOREMON_REPORTER_METRICS_PORT (9102). Its own work, per
# process (sum over reporters):
REPORTER_REPORTS = "storemon_reporter_reports_total"
REPORTER_REPORTS_GATHERING = "storemon_reporter_reports_gathering"
REPORTER_PARTS_OUTSTANDING = "storemon_reporter_parts_outstanding"
REPORTER_PARTS_REASKED = "storemon_reporter_parts_reasked_total"
REPORTER_REPORT_DURATION = "storemon_reporter_report_duration_seconds"
# and how far each state partition's owner is behind, read from Kafka: the same on every
# reporter (take the max, not the sum).
REPORTER_KAFKA_UP = "storemon_reporter_kafka_up"
STATE_LAG_RECORDS = "storemon_state_lag_records"
STATE_LAG_SECONDS = "storemon_state_lag_seconds"
STATE_NEWEST_POLL = "storemon_state_newest_poll_seconds"

REPORTER_METRICS = (
    REPORTER_REPORTS,
    REPORTER_REPORTS_GATHERING,
    REPORTER_PARTS_OUTSTANDING,
    REPORTER_PARTS_REASKED,
    REPORTER_REPORT_DURATION,
    REPORTER_KAFKA_UP,
    STATE_LAG_RECORDS,
    STATE_LAG_SECONDS,
    STATE_NEWEST_POLL,
)

# Every service's /metrics also has prometheus_client's figures of its process
# (ProcessCollector, GCCollector, PlatformCollector); among them:
PROCESS_RESIDENT_MEMORY = "process_resident_memory_bytes"
PROCESS_CPU = "process_cpu_seconds_total"
PYTHON_GC_COLLECTIONS = "python_gc_collections_total"

PROCESS_METRICS = (
    PROCESS_RESIDENT_MEMORY,
    PROCESS_CPU,
    PYTHON_GC_COLLECTIONS,
)
