"""Webhook signatures and allowed callback URLs (storemon/webhooks.py), no services."""

from __future__ import annotations

import pytest

from storemon.webhooks import BadSignature, callback_problem, retry_pause_s, sign, verify

SECRET = "s3cret"
BODY = b'{"report_id": "00", "status": "Complete"}'


def test_a_signature_holds_for_its_body_and_secret_only():
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    verify(SECRET, BODY, header, now=1_700_000_010)
    for secret, body in [("other", BODY), (SECRET, BODY + b" ")]:
        with pytest.raises(BadSignature, match="does not match"):
            verify(secret, body, header, now=1_700_000_010)


def test_an_old_signature_is_a_replay():
    header = sign(SECRET, BODY, timestamp=1_700_000_000)
    with pytest.raises(BadSignature, match="older than 300 s"):
        verify(SECRET, BODY, header, now=1_700_000_301)
    # The timestamp is signed: moving it forward breaks the signature.
    forged = header.replace("t=1700000000", "t=1700000300")
    with pytest.raises(BadSignature, match="does not match"):
        verify(SECRET, BODY, forged, now=1_700_000_301)


def test_a_malformed_header_is_refused():
    with pytest.raises(BadSignature, match="no t=<seconds>"):
        verify(SECRET, BODY, "sha256=abc")


@pytest.mark.parametrize(
    ("url", "allowed", "problem"),
    [
        ("https://hooks.example.com/x", ("hooks.example.com",), None),
        ("https://HOOKS.example.com:8443/x", ("hooks.example.com",), None),
        ("https://a.hooks.example.com/x", ("*.hooks.example.com",), None),
        ("https://evilhooks.example.com/x", ("*.hooks.example.com",), "does not allow"),
        ("https://hooks.example.com.evil.net/x", ("hooks.example.com",), "does not allow"),
        ("http://10.0.0.1/x", ("hooks.example.com",), "does not allow"),
        ("https://hooks.example.com/x", (), "no host is allowed"),
        ("file:///etc/passwd", ("hooks.example.com",), "http:// or https://"),
        ("https://u:p@hooks.example.com/x", ("hooks.example.com",), "user or password"),
        ("https://hooks.example.com:99999/x", ("hooks.example.com",), "is not a URL"),
        ("https://hooks.example.com/" + "x" * 2000, ("hooks.example.com",), "longer than"),
    ],
)
def test_only_allowed_hosts_may_be_called_back(url, allowed, problem):
    found = callback_problem(url, allowed)
    assert found is None if problem is None else problem in found


def test_retries_double_up_to_a_minute():
    assert [retry_pause_s(n) for n in range(1, 9)] == [1, 2, 4, 8, 16, 32, 60, 60]
