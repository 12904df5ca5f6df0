"""The one redactor (client/redaction.py): a registered secret is masked in every form a server may echo it, and
credential-shaped text is masked whatever its value; ordinary text is left alone."""

from __future__ import annotations

import base64
import json
import logging
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from oneroster_pipeline.client.errors import OneRosterDataError
from oneroster_pipeline.client.redaction import MASK, Redactor, install_log_redaction, one_line, register

SECRET_CHARS = st.sampled_from("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-._~+/=!$&'()*,;:@ ")
PROSE = st.text(st.sampled_from("abcdefghij klmnop:;,.-_/()[]{}\"'<>=&?#\n"), max_size=60)


def encodings(secret: str, client_id: str = "client") -> list[str]:
    return [secret, quote(secret, safe=""), quote_plus(secret), json.dumps(secret)[1:-1],
            base64.b64encode(f"{client_id}:{secret}".encode()).decode()]


@given(secret=st.text(SECRET_CHARS, min_size=12, max_size=40).filter(lambda s: len(s.strip()) >= 12),
       before=PROSE, after=PROSE, form=st.integers(0, 4))
def test_a_registered_secret_is_masked_in_every_form(secret, before, after, form):
    redactor = Redactor()
    redactor.register(secret)
    redactor.register_basic("client", secret)
    shown = encodings(secret)[form]
    masked = redactor.redact(before + shown + after)
    assert shown not in masked and secret.strip() not in masked


@given(secret=st.text(st.sampled_from("abcdefghijklmnopqrstuvwxyz0123456789-_"), min_size=16, max_size=40),
       cut=st.integers(8, 15), prefix=PROSE)
def test_a_secret_cut_short_is_masked_by_its_fragment(secret, cut, prefix):
    fragment = secret[:cut]
    assume(not (fragment.isalpha() and fragment.islower()))  # a word of prose is left alone (the next test)
    redactor = Redactor()
    redactor.register(secret)
    masked = redactor.redact(f"{prefix} {fragment}")
    assert secret[:cut] not in masked and masked.endswith(MASK)


@pytest.mark.parametrize("text", [
    "Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.abc",
    "request had authorization=Basic Y2xpZW50OnNlY3JldA==",
    "grant_type=client_credentials&client_id=x&client_secret=never-seen-before",
    '{"access_token": "zzz-unregistered-123", "token_type": "bearer"}',
    "GET /x?oauth_signature=abc%2Bdef&oauth_nonce=1",
])
def test_credential_shaped_text_is_masked_whatever_its_value(text):
    masked = Redactor().redact(text)
    assert MASK in masked
    for value in ("eyJhbGci", "Y2xpZW50", "never-seen-before", "zzz-unregistered-123", "abc%2Bdef"):
        assert value not in masked


@pytest.mark.parametrize("text", [
    "invalid bearer token", "check ONEROSTER_CLIENT_SECRET and ONEROSTER_TOKEN_URL",
    "HTTP 401 from http://127.0.0.1:8080/ims/oneroster/rostering/v1p2/students?limit=100&offset=0",
    "basic authentication is not supported", "oneroster_pipeline/client/http.py line 12",
])
def test_ordinary_text_is_left_alone(text):
    redactor = Redactor()
    redactor.register("demo-secret", "http://127.0.0.1:9999/hooks/T000/B000/XXXXSECRETXXXX")
    assert redactor.redact(text) == text


def test_a_webhook_url_hides_its_path_but_not_the_host_every_error_names():
    redactor = Redactor()
    redactor.register("https://hooks.example.com/services/T000/B000/XXXXSECRETXXXX")
    masked = redactor.redact("POST https://hooks.example.com/services/T000/B000/XXXXSECRET failed; "
                             "GET https://hooks.example.com/status ok")
    assert "XXXXSECRET" not in masked and "https://hooks.example.com/status" in masked


def test_client_errors_and_log_records_pass_the_process_redactor(caplog):
    register("process-wide-secret-7788")
    error = OneRosterDataError("http://host/x", "the server said process-wide-secret-7788")
    assert "process-wide-secret-7788" not in str(error)
    install_log_redaction()
    with caplog.at_level(logging.WARNING):
        logging.getLogger("anything.at.all").warning("echo: %s", "process-wide-secret-7788")
    assert caplog.records and "process-wide-secret-7788" not in caplog.text and MASK in caplog.text


def test_an_error_told_in_one_line_is_redacted():
    """What the warehouse builds its errors from (a catalog or object store that echoes the connection string)."""
    register("catalog-password-4411")
    error = RuntimeError("connection to server failed:\n  password=catalog-password-4411\thost=10.0.0.5")
    told = one_line(error)
    assert told == f"connection to server failed: password={MASK} host=10.0.0.5"


def test_an_ordinary_word_a_secret_contains_is_not_masked_in_prose():
    redactor = Redactor()
    redactor.register("district-secret-value")
    assert redactor.redact("district dead (Dead Valley) skipped") == "district dead (Dead Valley) skipped"
    assert "secret-va" not in redactor.redact("title cut: district-secret-va")
    assert redactor.redact("the secret district-secret-value leaked") == "the secret *** leaked"
