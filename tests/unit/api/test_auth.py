"""API tokens: how they are configured, and that routes, scopes and OpenAPI agree."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from storemon.api.app import create_app
from storemon.api.auth import ROUTE_SCOPES, find_token
from storemon.config import (
    INGEST_TOKEN_NAME,
    SCOPE_ADMIN,
    SCOPE_INGEST,
    SCOPE_READ,
    ApiToken,
    Settings,
    SettingsError,
)
from storemon.messages.schemas import openapi_document

pytestmark = pytest.mark.usefixtures("default_settings_environment")


def digest(secret: str) -> bytes:
    return hashlib.sha256(secret.encode()).digest()


def test_every_live_route_has_a_scope_or_is_public():
    app = create_app(Settings.from_env())
    live = {
        (route.method, route.resource.canonical)
        for route in app.router.routes()
        if route.method != "HEAD" and route.resource is not None
    }
    assert live == set(ROUTE_SCOPES)


def test_the_openapi_document_names_each_operations_scope():
    openapi = openapi_document()
    scheme = openapi["components"]["securitySchemes"]["bearerToken"]
    assert (scheme["type"], scheme["scheme"]) == ("http", "bearer")
    for (method, path), scope in ROUTE_SCOPES.items():
        operation = openapi["paths"][path][method.lower()]
        if scope is None:
            assert operation["security"] == [], (method, path)
            continue
        assert operation["security"] == [{"bearerToken": [scope]}], (method, path)
        for status, response in (("401", "Unauthorized"), ("403", "Forbidden")):
            assert operation["responses"][status] == {"$ref": f"#/components/responses/{response}"}


def test_tokens_come_from_the_variable_and_the_file(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("STOREMON_TOKENS", "reader:read:r-secret, boss:admin+read:a:b:c")
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("# one per line\n\nfeeder:ingest:f,with,commas\n")
    monkeypatch.setenv("STOREMON_TOKENS_FILE", str(tokens_file))
    tokens = Settings.from_env().tokens()
    assert [(t.name, t.scopes, t.secret_sha256) for t in tokens] == [
        ("reader", {SCOPE_READ}, digest("r-secret")),
        ("boss", {SCOPE_ADMIN, SCOPE_READ}, digest("a:b:c")),
        ("feeder", {SCOPE_INGEST}, digest("f,with,commas")),
    ]


def test_the_ingest_token_stays_an_ingest_token(monkeypatch, tmp_path: Path):
    monkeypatch.setenv("STOREMON_INGEST_TOKEN", "legacy")
    (token,) = Settings.from_env().tokens()
    assert (token.name, token.scopes, token.secret_sha256) == (
        INGEST_TOKEN_NAME,
        {SCOPE_INGEST},
        digest("legacy"),
    )
    monkeypatch.delenv("STOREMON_INGEST_TOKEN")
    secret_file = tmp_path / "ingest-token"
    secret_file.write_text("from-a-file\n")
    monkeypatch.setenv("STOREMON_INGEST_TOKEN_FILE", str(secret_file))
    (token,) = Settings.from_env().tokens()
    assert token.secret_sha256 == digest("from-a-file")
    monkeypatch.setenv("STOREMON_INGEST_TOKEN", "legacy")
    with pytest.raises(SettingsError, match="both set"):
        Settings.from_env()


def test_no_token_configured_means_none():
    assert Settings.from_env().tokens() == ()


@pytest.mark.parametrize(
    ("variable", "value", "where"),
    [
        ("STOREMON_TOKENS", "reader:read", "STOREMON_TOKENS entry 1"),
        ("STOREMON_TOKENS", "ok:read:x,reader:write:hunter2", "STOREMON_TOKENS entry 2"),
        ("STOREMON_TOKENS", ":read:hunter2", "STOREMON_TOKENS entry 1"),
        ("STOREMON_TOKENS", "a b:read:hunter2", "STOREMON_TOKENS entry 1"),
        ("STOREMON_TOKENS", "reader::hunter2", "STOREMON_TOKENS entry 1"),
    ],
)
def test_a_malformed_token_is_named_by_place_never_shown(monkeypatch, variable, value, where):
    monkeypatch.setenv(variable, value)
    with pytest.raises(SettingsError) as error:
        Settings.from_env()
    message = str(error.value)
    assert message.startswith(f"{where} is invalid: must be name:scope[+scope...]:secret")
    assert "hunter2" not in message


def test_a_malformed_line_of_the_tokens_file_is_named(monkeypatch, tmp_path: Path):
    tokens_file = tmp_path / "tokens"
    tokens_file.write_text("ok:read:x\n\nbad-line-hunter2\n")
    monkeypatch.setenv("STOREMON_TOKENS_FILE", str(tokens_file))
    with pytest.raises(SettingsError, match=r"^STOREMON_TOKENS_FILE line 3 is invalid") as error:
        Settings.from_env()
    assert "hunter2" not in str(error.value)
    monkeypatch.setenv("STOREMON_TOKENS_FILE", str(tmp_path / "missing"))
    with pytest.raises(SettingsError, match=r"STOREMON_TOKENS_FILE=.* cannot be read"):
        Settings.from_env()


def test_names_and_secrets_must_be_distinct(monkeypatch):
    monkeypatch.setenv("STOREMON_TOKENS", "a:read:one,a:admin:two")
    with pytest.raises(SettingsError, match="name 'a' is given twice"):
        Settings.from_env()
    monkeypatch.setenv("STOREMON_TOKENS", "a:read:same")
    monkeypatch.setenv("STOREMON_INGEST_TOKEN", "same")
    with pytest.raises(SettingsError, match="same secret"):
        Settings.from_env()


def test_admin_includes_read_and_ingest_which_are_independent():
    scopes = {"admin": SCOPE_ADMIN, "reader": SCOPE_READ, "feeder": SCOPE_INGEST}
    admin, reader, feeder = (ApiToken.from_secret(n, [s], n) for n, s in scopes.items())
    assert all(admin.allows(scope) for scope in (SCOPE_ADMIN, SCOPE_READ, SCOPE_INGEST))
    assert [reader.allows(s) for s in (SCOPE_ADMIN, SCOPE_READ, SCOPE_INGEST)] == [0, 1, 0]
    assert [feeder.allows(s) for s in (SCOPE_ADMIN, SCOPE_READ, SCOPE_INGEST)] == [0, 0, 1]


def test_find_token_returns_the_match_and_never_shows_a_secret():
    tokens = tuple(ApiToken.from_secret(f"t{i}", [SCOPE_READ], f"secret-{i}") for i in range(3))
    assert find_token(digest("secret-2"), tokens) is tokens[2]
    assert find_token(digest("secret-"), tokens) is None
    assert find_token(digest("secret-1"), ()) is None
    shown = repr(tokens)
    assert "secret" not in shown and tokens[0].secret_sha256.hex() not in shown
