"""storemon.observability.health: the readiness answer the API and the reporter share."""

import json

from storemon.observability.health import kafka_check, readiness


def test_ready_when_every_check_is_ok():
    answer = readiness({"postgres": "ok", "kafka": "ok", "consumer": "ok"})
    assert answer.status == 200
    assert json.loads(answer.body) == {
        "status": "ready",
        "checks": {"postgres": "ok", "kafka": "ok", "consumer": "ok"},
    }


def test_not_ready_names_each_check_that_failed():
    answer = readiness({"postgres": "ok", "kafka": "ok", "consumer": "not in group g (yet)"})
    assert answer.status == 503
    body = json.loads(answer.body)
    assert body["error"] == {"code": "not_ready", "message": "consumer not in group g (yet)"}
    assert body["checks"]["consumer"] == "not in group g (yet)"


async def test_the_kafka_check_says_when_the_topic_is_missing():
    async def missing(topic: str, timeout: float) -> bool:
        return False

    assert await kafka_check(missing, "report-requests") == "topic report-requests missing"
