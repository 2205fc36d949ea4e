"""The Faust worker against a real broker: idempotence, ordering, eviction, crashes, scale-out."""

import json
import random
import urllib.request

import pytest
from confluent_kafka import Consumer, ConsumerGroupState
from confluent_kafka.admin import AdminClient

from storemon.inputs.values import HoursRow, Poll
from storemon.kafka.clients import make_producer
from storemon.kafka.offsets import end_offsets, read_range
from storemon.kafka.partitioning import partition_of
from storemon.kafka.topics import changelog_topic, ensure_topics, worker_app_id
from storemon.messages.polls import encode_partition_batch, encode_poll, encode_poll_batch
from storemon.messages.schedules import decode_schedule, encode_schedule
from storemon.messages.zones import encode_zone
from storemon.producer import PollProducer
from storemon.state.layout import (
    POLLS_TABLE,
    SCHEDULES_TABLE,
    ZONES_TABLE,
)
from storemon.state.retention import RETAINED_US
from storemon.timebase import format_timestamp, now_us

from .services import (
    ServiceProcess,
    StateProbe,
    changelog_history,
    expected_view,
    free_port,
    produce_polls,
    record_count,
    service_env,
    settings_for,
    wait_until,
    worker_lag,
)

HOUR_US = 3600 * 1_000_000
US_PER_DAY = 24 * HOUR_US
START_US = 1_674_000_000 * 1_000_000  # 2023-01-18, the Loop data's time


def hourly_polls(stores: int, hours: int, seed: int) -> list[Poll]:
    rng = random.Random(seed)
    return [
        Poll(
            f"store-{store:03d}",
            START_US + hour * HOUR_US + rng.randrange(0, 600) * 1_000_000,
            "active" if rng.random() < 0.9 else "inactive",
        )
        for store in range(stores)
        for hour in range(hours)
    ]


@pytest.fixture
def deployment(kafka_bootstrap, topic_prefix, tmp_path):
    """Settings, a way to start workers, and a state probe, for one fresh prefix."""
    settings = settings_for(kafka_bootstrap, topic_prefix)
    # A killed worker's partitions move once its group session expires: 10 s, not
    # Faust's 60 s, keeps the crash test short.
    env = service_env(kafka_bootstrap, topic_prefix, BROKER_SESSION_TIMEOUT="10")
    workers: list[ServiceProcess] = []
    probe = StateProbe(settings)

    def start_worker() -> ServiceProcess:
        worker = ServiceProcess(["worker"], env, tmp_path, f"worker-{len(workers)}")
        workers.append(worker)
        return worker

    yield settings, start_worker, probe
    for worker in workers:
        worker.stop()
    probe.close()


def state_equals(probe: StateProbe, expected: dict[str, dict[int, bool]]) -> bool:
    return probe.view().polls == expected


def test_shuffled_duplicated_events_give_the_state_of_sorted_deduplicated_ones(deployment):
    settings, start_worker, probe = deployment
    polls = hourly_polls(stores=40, hours=48, seed=1)
    replayed = polls + random.Random(2).sample(polls, 500)  # duplicates, same values
    random.Random(3).shuffle(replayed)
    # Same store and timestamp, different status: the one accepted last wins.
    flipped = [
        p._replace(status="inactive" if p.status == "active" else "active") for p in polls[:20]
    ]
    produce_polls(settings, [*replayed, *flipped])
    worker = start_worker()
    expected = expected_view([*polls, *flipped])
    assert sum(map(len, expected.values())) == len(polls)
    wait_until(lambda: state_equals(probe, expected), 120, "the worker's state", worker.log_tail)


def test_schedules_and_zones_are_kept_per_store_and_deleted_by_tombstones(deployment):
    settings, start_worker, probe = deployment
    produce_polls(settings, [])  # creates the topics
    producer = make_producer(settings)
    hours_topic, zones_topic = settings.topic("store-hours"), settings.topic("store-timezones")
    nine_to_five = [HoursRow("a", 0, 9 * HOUR_US, 17 * HOUR_US)]
    producer.produce(hours_topic, encode_schedule("a", nine_to_five), b"a")
    producer.produce(hours_topic, encode_schedule("b", []), b"b")
    producer.produce(hours_topic, None, b"b")  # deletes b's schedule: 24x7 again
    producer.produce(zones_topic, encode_zone("a", "America/New_York"), b"a")
    producer.produce(zones_topic, encode_zone("b", "Asia/Beirut"), b"b")
    producer.produce(zones_topic, encode_zone("b", "Europe/London"), b"b")
    assert producer.flush(30) == 0
    worker = start_worker()

    def settled() -> bool:
        view = probe.view()
        return view.zones == {"a": "America/New_York", "b": "Europe/London"} and set(
            view.schedules
        ) == {"a"}

    wait_until(settled, 120, "schedules and zones", worker.log_tail)
    assert decode_schedule(b"a", probe.view().schedules["a"]) == ("a", nine_to_five)


def test_four_weeks_of_polls_leave_only_what_reports_of_the_last_eight_days_need(deployment):
    settings, start_worker, probe = deployment
    polls = hourly_polls(stores=12, hours=28 * 24, seed=4)
    produce_polls(settings, sorted(polls, key=lambda p: p.timestamp_us))
    worker = start_worker()
    newest = {
        store: max(p.timestamp_us for p in polls if p.store_id == store)
        for store in {p.store_id for p in polls}
    }
    retained = expected_view(p for p in polls if p.timestamp_us >= newest[p.store_id] - RETAINED_US)

    def evicted() -> bool:
        held = probe.view().polls
        # Eviction drops whole UTC days once they are wholly behind a store's own
        # horizon: its last 16 days are kept, nothing older than 17 days is.
        return all(
            set(retained[store].items()) <= set(held.get(store, {}).items())
            and min(held[store]) >= newest[store] - RETAINED_US - US_PER_DAY
            for store in retained
        )

    wait_until(evicted, 180, "state to hold exactly the last 16 days", worker.log_tail)
    held_count = probe.view().poll_count()
    assert held_count < len(polls) * 0.7, "older polls were not evicted"


def test_one_poll_far_newer_than_the_rest_evicts_no_other_store(deployment):
    """Hardening issue, item 1: eviction counted back from a partition's newest poll let
    one poll dated today wipe a year-old data set's other stores out of that partition."""
    settings, start_worker, probe = deployment
    polls = hourly_polls(stores=16, hours=8 * 24, seed=7)
    today = Poll("store-000", now_us(), "active")
    produce_polls(settings, [*polls, today])
    worker = start_worker()
    # store-000's own old polls are behind its own new horizon; every other store
    # keeps all of its polls, whichever partition it shares with store-000.
    expected = expected_view(p for p in polls if p.store_id != "store-000")
    expected["store-000"] = {today.timestamp_us: True}
    wait_until(lambda: state_equals(probe, expected), 120, "every store's polls", worker.log_tail)


def _changelog_partitions_of(settings, table: str, key: bytes) -> set[int]:
    topic = changelog_topic(settings, table)
    return {
        message.partition()
        for message in read_range(settings, topic, {}, end_offsets(settings, topic))
        if message.key() == key
    }


def test_records_on_another_partition_than_their_keys_go_to_their_keys_partition(deployment):
    """Item 2: a producer with another partitioner must not split a store's state."""
    settings, start_worker, probe = deployment
    ensure_topics(settings)
    store = "wrong-partition-store"
    owner = partition_of(store.encode(), settings.topic_partitions)
    elsewhere = (owner + 1) % settings.topic_partitions
    poll = Poll(store, START_US, "inactive")
    producer = make_producer(settings)
    for topic, value in (
        ("store-status", encode_poll(poll)),
        ("store-hours", encode_schedule(store, [])),
        ("store-timezones", encode_zone(store, "Asia/Tokyo")),
    ):
        producer.produce(settings.topic(topic), value, store.encode(), partition=elsewhere)
    assert producer.flush(30) == 0
    worker = start_worker()

    def settled() -> bool:
        view = probe.view()
        return (
            view.polls == expected_view([poll])
            and view.zones == {store: "Asia/Tokyo"}
            and store in view.schedules
        )

    wait_until(settled, 120, "the store's state", worker.log_tail)
    key = store.encode()
    assert _changelog_partitions_of(settings, POLLS_TABLE, f"{store} 19375".encode()) == {
        owner
    }
    assert _changelog_partitions_of(settings, SCHEDULES_TABLE, key) == {owner}
    assert _changelog_partitions_of(settings, ZONES_TABLE, key) == {owner}
    status_topic = settings.topic("store-status")
    routed = [
        message.partition()
        for message in read_range(settings, status_topic, {}, end_offsets(settings, status_topic))
    ]
    assert sorted(routed) == sorted([elsewhere, owner]), "sent on once, to its key's partition"


def _metrics_text(port: int) -> str | None:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as answer:
            return answer.read().decode()
    except OSError:
        return None


def test_changelog_records_that_break_the_layout_are_skipped_by_every_reader(
    kafka_bootstrap, topic_prefix, tmp_path
):
    """Item 3: one bad changelog record stopped the state readers and a restarted worker."""
    settings = settings_for(kafka_bootstrap, topic_prefix)
    port = free_port()
    env = service_env(kafka_bootstrap, topic_prefix, STOREMON_WORKER_METRICS_PORT=str(port))
    first = Poll("s1", START_US, "active")
    produce_polls(settings, [first])
    probe = StateProbe(settings)
    worker = ServiceProcess(["worker"], env, tmp_path, "worker-1")
    try:
        wait_until(
            lambda: probe.view().polls == expected_view([first]),
            120,
            "the first poll",
            worker.log_tail,
        )
        worker.stop()
        # What storemon never writes, but anyone who can write a changelog can.
        day = START_US // US_PER_DAY
        bad = {
            POLLS_TABLE: [(b"garbage", b"x"), (f"s1 {day}".encode(), b"not 9 bytes")],
            SCHEDULES_TABLE: [(b"s1", b"{not json")],
            ZONES_TABLE: [(b"s1", b"Not/AZone")],
        }
        producer = make_producer(settings)
        for table, records in bad.items():
            for key, value in records:
                producer.produce(changelog_topic(settings, table), value, key, partition=0)
        assert producer.flush(30) == 0
        view = probe.view()  # raised ValueError ("invalid literal for int()") before
        assert sum(probe.reader.skipped.values()) == 4
        assert view.zones == {} and view.schedules == {}
        assert view.polls == expected_view([first]), "a skipped record changes nothing"

        worker = ServiceProcess(["worker"], env, tmp_path, "worker-2")
        text = wait_until(
            lambda: (m := _metrics_text(port)) and 'skipped_total{table="polls"}' in m and m,
            120,
            "the restarted worker's /metrics after recovery",
            worker.log_tail,
        )
        assert (
            'storemon_worker_state_records_skipped_total{table="polls"} 2' in text
        ), text
        # The worker skipped the bad value as the probe did: a new poll of that day joins
        # the day's last good value.
        second = Poll("s1", START_US + HOUR_US, "inactive")
        produce_polls(settings, [second])
        wait_until(
            lambda: probe.view().polls == expected_view([first, second]),
            120,
            "the day rewritten",
            worker.log_tail,
        )
        assert worker.process.poll() is None, worker.log_tail()
        assert "skipped state record" in worker.log_path.read_text()
    finally:
        worker.stop()
        probe.close()


def test_a_worker_killed_mid_stream_recovers_without_loss_or_doubles(deployment):
    settings, start_worker, probe = deployment
    polls = hourly_polls(stores=200, hours=8 * 24, seed=5)  # 38,400 polls
    produce_polls(settings, polls)
    expected = expected_view(polls)
    first = start_worker()
    wait_until(
        lambda: probe.view().poll_count() >= 3_000,
        120,
        "the first worker to make progress",
        first.log_tail,
    )
    first.kill()
    assert probe.view().polls != expected, "the kill came too late to test anything"
    second = start_worker()

    def what_differs() -> str:
        """Lost polls and a stuck partition look alike from outside: say which it is, and
        for a lost poll whether its day's changelog ever held it."""
        held = probe.view().polls
        missing = [
            (store_id, stamp)
            for store_id, stamps in expected.items()
            for stamp in stamps.keys() - held.get(store_id, {}).keys()
        ]
        return (
            f"polls missing from state: {len(missing)}; worker group lag: {worker_lag(settings)}\n"
            + "".join(changelog_history(settings, *lost) for lost in missing[:3])
            + first.log_tail()
            + second.log_tail()
        )

    wait_until(
        lambda: state_equals(probe, expected),
        240,
        "the restarted worker to catch up",
        what_differs,
    )
    assert probe.view().poll_count() == len(polls)


def _members_partitions(settings) -> list[set[int]] | None:
    admin = AdminClient({"bootstrap.servers": settings.kafka_bootstrap_servers})
    group = worker_app_id(settings)
    description = admin.describe_consumer_groups([group])[group].result(10)
    if description.state != ConsumerGroupState.STABLE:
        return None
    status_topic = settings.topic("store-status")
    return [
        {tp.partition for tp in member.assignment.topic_partitions if tp.topic == status_topic}
        for member in description.members
    ]


def test_two_workers_share_the_partitions_and_together_hold_every_store(deployment):
    settings, start_worker, probe = deployment
    produce_polls(settings, [])
    one, two = start_worker(), start_worker()
    shares = wait_until(
        lambda: (s := _members_partitions(settings)) and len(s) == 2 and all(s) and s,
        120,
        "two workers in a stable group, each with partitions",
        lambda: one.log_tail() + two.log_tail(),
    )
    assert shares[0].isdisjoint(shares[1])
    assert shares[0] | shares[1] == set(range(settings.topic_partitions))
    polls = hourly_polls(stores=100, hours=24, seed=6)
    produce_polls(settings, polls)
    wait_until(
        lambda: state_equals(probe, expected_view(polls)),
        120,
        "both workers to absorb every store",
        lambda: one.log_tail() + two.log_tail(),
    )


def test_records_the_worker_cannot_accept_go_to_the_dead_letter_topic(deployment):
    settings, start_worker, probe = deployment
    good = Poll("ok-store", START_US, "active")
    produce_polls(settings, [good])
    producer = make_producer(settings)
    status_topic = settings.topic("store-status")
    bad = {
        b"\xff\xfe garbage": b"s1",
        b'["a", "list"]': b"s2",
        b'{"store_id": "s3", "status": "active"}': b"s3",
        b'{"store_id": "s4", "status": "up", "timestamp_utc": "2023-01-18T00:00:00Z"}': b"s4",
        b'{"store_id": "s5", "status": "active", "timestamp_utc": "2023-01-18T00:00:00Z"}': (
            b"someone-else"
        ),
        b'{"store_id": "s6", "status": "active", "timestamp_utc": "2999-01-01T00:00:00Z"}': b"s6",
    }
    for value, key in bad.items():
        producer.produce(status_topic, value, key)
    assert producer.flush(30) == 0
    worker = start_worker()
    wait_until(
        lambda: probe.view().polls == expected_view([good]),
        120,
        "the good record",
        worker.log_tail,
    )

    consumer = Consumer(
        {
            "bootstrap.servers": settings.kafka_bootstrap_servers,
            "group.id": f"{settings.topic_prefix}dlq-check",
            "auto.offset.reset": "earliest",
        }
    )
    consumer.subscribe([settings.topic("store-status-dlq")])
    received: dict[bytes, dict] = {}

    def all_dead_letters() -> bool:
        for message in consumer.consume(100, timeout=0.5):
            assert message.error() is None
            received[message.key()] = json.loads(message.value())
        return len(received) == len(bad)

    try:
        wait_until(all_dead_letters, 60, "a dead letter per bad record", worker.log_tail)
    finally:
        consumer.close()
    reasons = {key: (letter["field"], letter["reason"]) for key, letter in received.items()}
    assert reasons[b"s1"][0] == "value" and "not JSON" in reasons[b"s1"][1]
    assert reasons[b"s2"] == ("value", "expected a JSON object, got list")
    assert reasons[b"s3"] == ("timestamp_utc", "is required")
    assert reasons[b"s4"][0] == "status"
    assert reasons[b"someone-else"][0] == "key"
    assert reasons[b"s6"] == ("timestamp_utc", "more than a day in the future")
    for letter in received.values():
        assert letter["source"].startswith(status_topic)
        assert letter["raw"] and letter["rejected_at"]


def test_a_batch_keeps_its_good_polls_and_the_worker_counts_them_on_metrics(
    kafka_bootstrap, topic_prefix, tmp_path
):
    settings = settings_for(kafka_bootstrap, topic_prefix)
    port = free_port()
    env = service_env(kafka_bootstrap, topic_prefix, STOREMON_WORKER_METRICS_PORT=str(port))
    first, second = "2023-01-18T00:00:00Z", "2023-01-18T01:00:00Z"
    batch = encode_poll_batch("b1", [(first, True), (second, True)])
    # The same poll again, corrected (the later entry wins), and one entry that is wrong.
    corrected = json.dumps(
        {
            "store_id": "b1",
            "observations": [
                {"timestamp_utc": first, "status": "inactive"},
                {"timestamp_utc": second, "status": "up"},
            ],
        }
    ).encode()
    ensure_topics(settings)
    producer = make_producer(settings)
    for value in (batch, corrected):
        producer.produce(settings.topic("store-status"), value, b"b1")
    assert producer.flush(30) == 0
    probe = StateProbe(settings)
    worker = ServiceProcess(["worker"], env, tmp_path, "worker")
    try:
        expected = {"b1": {1_674_000_000_000_000: False, 1_674_003_600_000_000: True}}
        wait_until(
            lambda: probe.view().polls == expected, 120, "the batch", worker.log_tail
        )

        def metrics() -> str | None:
            try:
                url = f"http://127.0.0.1:{port}/metrics"
                with urllib.request.urlopen(url, timeout=5) as answer:
                    return answer.read().decode()
            except OSError:
                return None

        status_topic = settings.topic("store-status")
        text = wait_until(
            lambda: (m := metrics()) and "storemon_worker_polls 2" in m and m,
            60,
            "the worker's /metrics",
            worker.log_tail,
        )
        # prometheus_client writes labels in name order, values as floats.
        events = "storemon_worker_events_total"
        assert f'{events}{{outcome="accepted",topic="{status_topic}"}} 3.0' in text
        assert f'{events}{{outcome="rejected",topic="{status_topic}"}} 1.0' in text
        assert (
            'storemon_worker_rejected_total{field="observations.status",'
            f'topic="{status_topic}"}} 1.0' in text
        )
        assert "storemon_worker_stores 1.0" in text
        assert "storemon_worker_greatest_event_time_seconds 1.6740036e+09" in text
    finally:
        worker.stop()
        probe.close()


def test_partition_batches_give_the_state_of_the_same_polls_sent_one_by_one(deployment):
    """Polls of many stores travel as partition batches (storemon.producer); the worker
    holds what the same polls sent one a record (the test above's way) give."""
    settings, start_worker, probe = deployment
    ensure_topics(settings)
    polls = hourly_polls(stores=60, hours=30, seed=7)
    random.Random(8).shuffle(polls)  # single polls of random stores, as pollers send them
    flipped = [p._replace(status="inactive" if p.status == "active" else "active")
               for p in polls[:25]]
    with PollProducer(settings, batch_polls=97) as producer:
        for poll in [*polls, *flipped]:
            producer.send(poll)
        delivery = producer.flush()
    assert (delivery.confirmed, delivery.failed) == (len(polls) + len(flipped), 0)
    # Far fewer records than polls: that is the point.
    status_topic = settings.topic("store-status")
    assert record_count(settings, [status_topic]) < len(polls) / 50
    worker = start_worker()
    expected = expected_view([*polls, *flipped])
    wait_until(lambda: state_equals(probe, expected), 120, "the worker's state", worker.log_tail)


def test_a_partition_batch_entry_of_another_partition_is_sent_there_never_applied_here(
    deployment,
):
    settings, start_worker, probe = deployment
    ensure_topics(settings)
    here = "store-000"
    partition = partition_of(here.encode(), settings.topic_partitions)
    stranger = next(f"store-{n:03d}" for n in range(1, 100)
                    if partition_of(f"store-{n:03d}".encode(), settings.topic_partitions)
                    != partition)
    first, second = START_US, START_US + HOUR_US
    batch = encode_partition_batch(partition, [
        (here, format_timestamp(first), True),
        (stranger, format_timestamp(second), False),
        ("=bad", format_timestamp(second), True),  # a bad entry: dead-lettered alone
    ])
    producer = make_producer(settings)
    producer.produce(settings.topic("store-status"), batch, partition=partition)
    assert producer.flush(30) == 0
    worker = start_worker()
    expected = expected_view([Poll(here, first, "active"), Poll(stranger, second, "inactive")])
    wait_until(lambda: state_equals(probe, expected), 120, "both stores' state",
               worker.log_tail)
    owner = partition_of(stranger.encode(), settings.topic_partitions)
    assert _changelog_partitions_of(settings, POLLS_TABLE, f"{stranger} 19375".encode()) == {
        owner
    }, "the stranger's poll is held only in its own partition"
    dlq = settings.topic("store-status-dlq")
    dead = [
        json.loads(message.value())
        for message in read_range(settings, dlq, {}, end_offsets(settings, dlq))
    ]
    assert [d["field"] for d in dead] == ["polls.2.store_id"]
