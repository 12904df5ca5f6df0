"""Each auth mode against the demo provider over real HTTP: tokens, expiry mid-sync, signatures, clear 401s."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
import requests

from oneroster_pipeline.client.errors import OneRosterHTTPError
from oneroster_pipeline.client.sources import open_source

from .client_fixtures import SECRETS, api_requests, concat, expected_student_ids, serve, settings_for


def pull_ids(settings) -> list[str]:
    with open_source(settings) as source:
        return concat(source.student_batches()).column("sourced_id").to_pylist()


def token_requests(provider) -> list:
    return [e for e in provider.request_log if e.path.endswith("/oauth2/token")]


@pytest.mark.parametrize("auth", ["oauth2", "oauth1", "bearer", "none"])
@pytest.mark.parametrize("version", ["1.1", "1.2"])
def test_every_auth_mode_pulls_every_student(auth, version):
    with serve(auth=auth) as provider:
        assert pull_ids(settings_for(provider, version)) == expected_student_ids(provider)
        assert all(e.status == 200 for e in provider.request_log)


def test_oauth2_token_is_fetched_once_with_basic_credentials_and_cached():
    with serve(auth="oauth2") as provider, open_source(settings_for(provider)) as source:
        list(source.org_batches())
        list(source.student_batches())
        assert len(token_requests(provider)) == 1 and source.session.auth.tokens_fetched == 1
        assert source.session.auth.credential_style == "basic"
        assert len(api_requests(provider)) > 2


def test_oauth2_token_expiring_mid_sync_is_refreshed_and_nothing_is_lost():
    # one page in flight: the request for page n + 1 leaves before page n is handed over, so expiring after
    # pages 0 and 1 makes the requests for pages 1 and 3 meet a 401
    with serve(auth="oauth2") as provider, open_source(settings_for(provider, max_concurrency=1)) as source:
        ids = []
        for n, batch in enumerate(source.student_batches()):
            ids += batch.column("sourced_id").to_pylist()
            if n in (0, 1):
                provider.expire_tokens()  # every issued token now answers 401
        assert sorted(ids) == expected_student_ids(provider)  # exactly once each
        assert [e.status for e in api_requests(provider)].count(401) == 2
        assert len(token_requests(provider)) == 3
        assert source.reports["students"].complete


def test_oauth2_short_token_lifetime_is_refreshed_before_it_expires():
    with serve(auth="oauth2", token_lifetime=1) as provider, \
            open_source(settings_for(provider, max_concurrency=1)) as source:
        ids = []
        for batch in source.student_batches():
            ids += batch.column("sourced_id").to_pylist()
            time.sleep(0.5)
        assert sorted(ids) == expected_student_ids(provider)
        assert 401 not in [e.status for e in provider.request_log]  # refreshed ahead of expiry, not after a 401
        assert len(token_requests(provider)) >= 2


class _FormOnlyTokenEndpoint(BaseHTTPRequestHandler):
    """A real token endpoint that refuses HTTP Basic (400) and relays form credentials to the demo provider's."""

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.seen.append("basic" if self.headers.get("Authorization") else "form")
        if self.headers.get("Authorization"):
            status, payload = 400, b'{"error": "invalid_request", "error_description": "use form credentials"}'
        else:
            relayed = requests.post(self.server.upstream, data=body, timeout=5,
                                    headers={"Content-Type": "application/x-www-form-urlencoded"})
            status, payload = relayed.status_code, relayed.content
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args):
        pass


def test_oauth2_falls_back_to_form_credentials_and_remembers_it():
    with serve(auth="oauth2") as provider:
        server = ThreadingHTTPServer(("127.0.0.1", 0), _FormOnlyTokenEndpoint)
        server.upstream, server.seen = provider.token_url, []
        threading.Thread(target=server.serve_forever, daemon=True).start()
        try:
            token_url = f"http://127.0.0.1:{server.server_address[1]}/oauth2/token"
            with open_source(settings_for(provider, token_url=token_url)) as source:
                list(source.org_batches())
                provider.expire_tokens()
                list(source.org_batches())
                assert source.session.auth.credential_style == "form"
            assert server.seen == ["basic", "form", "form"]  # Basic tried once, then form remembered
        finally:
            server.shutdown()
            server.server_close()


def test_oauth2_wrong_secret_is_a_clear_error_without_the_secret():
    with serve(auth="oauth2") as provider:
        settings = settings_for(provider, client_secret="wrong-" + SECRETS[0])
        with pytest.raises(OneRosterHTTPError) as info, open_source(settings) as source:
            list(source.org_batches())
        message = str(info.value)
        assert info.value.status == 401 and "token request" in message and "invalid_client" in message
        assert provider.token_url in message and "ONEROSTER_CLIENT_SECRET" in message
        assert SECRETS[0] not in message and "wrong-" not in message
        assert [e.status for e in token_requests(provider)] == [401, 401]  # Basic, then form, then give up
        assert not api_requests(provider)


def test_session_cookie_from_the_token_response_reaches_every_request():
    with serve(auth="oauth2", persona="aeries") as provider, open_source(settings_for(provider)) as source:
        assert len(list(source.org_batches())) >= 1
        provider.expire_tokens()  # a new token (and cookie) mid-pull
        assert sorted(concat(source.student_batches()).column("sourced_id").to_pylist()) == \
            expected_student_ids(provider)


@pytest.mark.parametrize("method", ["HMAC-SHA256", "HMAC-SHA1"])
def test_oauth1_signs_paging_and_filter_parameters(method):
    with serve(auth="oauth1") as provider:
        changed = provider.district.student_ids()[5:8]
        since = datetime.now(timezone.utc) - timedelta(seconds=2)
        for sid in changed:
            provider.district.update_student(sid, givenName="Zoë")
        settings = settings_for(provider, "1.1", oauth1_signature_method=method)
        with open_source(settings) as source:
            delta = concat(source.student_batches(modified_since=since))
            assert sorted(delta.column("sourced_id").to_pylist()) == sorted(changed)
            assert set(delta.column("given_name").to_pylist()) == {"Zoë"}
            assert sorted(concat(source.student_batches()).column("sourced_id").to_pylist()) == \
                expected_student_ids(provider)
        queries = [e.query for e in api_requests(provider)]
        assert any("filter" in q for q in queries) and any(q.get("offset") not in (None, "0") for q in queries)
        assert all(e.status == 200 for e in provider.request_log)


def test_oauth1_wrong_secret_gives_a_clear_401():
    with serve(auth="oauth1") as provider:
        settings = settings_for(provider, "1.1", client_secret="not-the-" + SECRETS[0])
        with pytest.raises(OneRosterHTTPError) as info, open_source(settings) as source:
            list(source.student_batches())
        message = str(info.value)
        assert info.value.status == 401 and info.value.code_minor == "unauthorisedrequest"
        assert provider.base_url("1.1") + "/students" in message and "ONEROSTER_CLIENT_SECRET" in message
        assert "signature" in message and SECRETS[0] not in message and "oauth_signature" not in message


def test_wrong_bearer_token_gives_a_clear_401_without_the_token():
    with serve(auth="bearer") as provider:
        settings = settings_for(provider, access_token="stale-" + SECRETS[1])
        with pytest.raises(OneRosterHTTPError) as info, open_source(settings) as source:
            list(source.org_batches())
        assert info.value.status == 401 and "invalid bearer token" in str(info.value)
        assert SECRETS[1] not in str(info.value) and SECRETS[1] not in repr(source.session.auth)
        assert len(api_requests(provider)) == 1  # a static token is not retried
