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


READER, FEEDER, ADMIN = "reader-secret-1", "feeder-secret-2", "admin-secret-3"
TOKENS = f"reader:read:{READER},feeder:ingest:{FEEDER},boss:admin:{ADMIN}"
NO_REPORT = "0" * 32
#: (method, path, body, the scope it needs)
PROTECTED = [
    ("POST", "/trigger_report", b"", "read"),
    ("GET", "/trigger_report", None, "read"),
    ("GET", f"/get_report?report_id={NO_REPORT}", None, "read"),
    ("GET", "/reports", None, "read"),
    ("GET", f"/reports/{NO_REPORT}.csv", None, "read"),
    ("DELETE", f"/reports/{NO_REPORT}", None, "admin"),
    ("POST", "/events", ONE_POLL, "ingest"),
]
#: Every configured secret and its scopes (admin includes the others).
SCOPES_OF = {READER: {"read"}, FEEDER: {"ingest"}, ADMIN: {"admin"}, INGEST_TOKEN: {"ingest"}}


def request(url: str, method: str, path: str, body: bytes | None, **kwargs) -> Answer:
    headers = {**JSON_TYPE, **kwargs.pop("headers", {})}
    return call(url, method, path, body=body, headers=headers, **kwargs)


def test_every_protected_route_answers_401_without_a_valid_token_and_403_without_its_scope(
    api_process: ApiStarter, tmp_path
):
    url = api_process(STOREMON_TOKENS=TOKENS, STOREMON_INGEST_TOKEN=INGEST_TOKEN)
    for method, path, body, scope in PROTECTED:
        where = f"{method} {path}"
        refusals = [
            request(url, method, path, body),
            request(url, method, path, body, headers={"Authorization": f"Basic {READER}"}),
            request(url, method, path, body, headers={"Authorization": "Bearer"}),
            request(url, method, path, body, token="not-a-token"),
            request(url, method, path, body, token=READER[:-1]),
        ]
        for answer in refusals:
            assert answer.status == 401, (where, answer.body)
            assert answer.json()["error"]["code"] == "unauthorized"
            assert answer.headers["WWW-Authenticate"].startswith("Bearer"), where
        for secret, scopes in SCOPES_OF.items():
            answer = request(url, method, path, body, token=secret)
            if scope in scopes or "admin" in scopes:
                assert answer.status not in (401, 403), (where, answer.body)
                continue
            assert answer.status == 403, (where, answer.body)
            assert answer.json()["required_scope"] == scope
            assert repr(scope) in answer.json()["error"]["message"]
            assert 'error="insufficient_scope"' in answer.headers["WWW-Authenticate"]
    # The legacy ingest token is an ingest token only.
    answer = request(url, "GET", "/reports", None, token=INGEST_TOKEN)
    assert answer.status == 403


def test_health_readiness_metrics_and_the_document_need_no_token(api_process: ApiStarter):
    url = api_process(STOREMON_TOKENS=TOKENS)
    for path in ("/healthz", "/readyz", "/metrics", "/openapi.json"):
        assert call(url, "GET", path).status == 200, path
    # An unknown route needs a token before it is told there is none.
    assert call(url, "GET", "/nowhere").status == 401
    assert call(url, "GET", "/nowhere", token=READER).status == 404


def test_without_any_token_the_api_is_open_and_says_so(api_process: ApiStarter, tmp_path):
    url = api_process()
    assert request(url, "POST", "/trigger_report", b"").status == 202
    assert request(url, "POST", "/events", ONE_POLL).status == 200
    assert request(url, "DELETE", f"/reports/{NO_REPORT}", None).status == 404
    log = (tmp_path / "api-0.log").read_text()
    assert "no API token configured: every route is open" in log


def test_the_log_names_tokens_but_never_their_secrets(api_process: ApiStarter, tmp_path):
    url = api_process(STOREMON_TOKENS=TOKENS, STOREMON_INGEST_TOKEN=INGEST_TOKEN)
    request(url, "GET", "/reports", None, token="wrong")
    log = (tmp_path / "api-0.log").read_text()
    assert "reader (read)" in log and "boss (admin)" in log
    assert not [secret for secret in (READER, FEEDER, ADMIN, INGEST_TOKEN) if secret in log]
