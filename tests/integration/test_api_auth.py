"""Bearer tokens on a real `storemon api` process, against the real Kafka and PostgreSQL."""

from __future__ import annotations

from .api_process import JSON_TYPE, ONE_POLL, Answer, ApiStarter, call

INGEST_TOKEN = "ingest-s3cret"


def post_poll(url: str, token: bytes | str | None) -> Answer:
    return call(url, "POST", "/events", token=token, body=ONE_POLL, headers=JSON_TYPE)


def test_a_non_ascii_bearer_token_is_refused_not_a_server_error(api_process: ApiStarter):
    url = api_process(STOREMON_INGEST_TOKEN=INGEST_TOKEN)
    for token in ("jéton".encode(), "\N{SNOWMAN}".encode(), b"\xff\xfe"):
        answer = post_poll(url, token)
        assert answer.status == 401, (token, answer.body)
    assert post_poll(url, INGEST_TOKEN).json()["accepted"] == 1


def test_a_non_ascii_configured_token_is_compared_as_utf8(api_process: ApiStarter):
    url = api_process(STOREMON_INGEST_TOKEN="clé-secrète")
    answer = post_poll(url, "clé-secrète")
    assert answer.status == 200, answer.body
