"""The demo provider's auth modes, each accepting a correct request and rejecting wrong ones, over real HTTP."""

from __future__ import annotations

import time

import pytest
import requests
from oauthlib.oauth1 import SIGNATURE_HMAC_SHA1, SIGNATURE_HMAC_SHA256
from requests_oauthlib import OAuth1

from oneroster_pipeline.demo.auth import CORE_SCOPE, ROSTER_SCOPE
from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

SHAPE = DistrictShape(schools=3, students=60, seed=5)


def serve(**settings) -> DemoProvider:
    return DemoProvider(SHAPE, DemoSettings(**settings))


def code_minor(response: requests.Response) -> str:
    return response.json()["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"]


def token(provider: DemoProvider, **form) -> requests.Response:
    return requests.post(provider.token_url, data={"grant_type": "client_credentials", **form},
                         auth=("demo-client", "demo-secret") if "client_id" not in form else None, timeout=10)


def students(provider: DemoProvider, version: str = "1.2", **kwargs) -> requests.Response:
    return requests.get(provider.base_url(version) + "/students", timeout=10, **kwargs)


def bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def assert_unauthorised(response: requests.Response) -> None:
    assert response.status_code == 401, response.text
    assert code_minor(response) == "unauthorisedrequest"


def test_none_needs_nothing():
    with serve(auth="none") as provider:
        assert students(provider).status_code == 200


def test_static_bearer():
    with serve(auth="bearer", bearer_token="s3cret") as provider:
        assert students(provider, headers=bearer("s3cret")).status_code == 200
        assert_unauthorised(students(provider, headers=bearer("wrong")))
        response = students(provider)
        assert_unauthorised(response)
        assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_oauth2_client_credentials_basic_and_form():
    with serve(auth="oauth2", token_lifetime=600) as provider:
        issued = token(provider)
        assert issued.status_code == 200
        payload = issued.json()
        assert payload["token_type"] == "bearer" and payload["expires_in"] == 600
        assert set(payload["scope"].split()) == {CORE_SCOPE, ROSTER_SCOPE}
        assert students(provider, headers=bearer(payload["access_token"])).status_code == 200
        assert students(provider, "1.1", headers=bearer(payload["access_token"])).status_code == 200
        by_form = token(provider, client_id="demo-client", client_secret="demo-secret")
        assert students(provider, headers=bearer(by_form.json()["access_token"])).status_code == 200
        assert [e.path for e in provider.request_log][:1] == ["/oauth2/token"]


def test_oauth2_rejections():
    with serve(auth="oauth2") as provider:
        wrong = requests.post(provider.token_url, data={"grant_type": "client_credentials"},
                              auth=("demo-client", "nope"), timeout=10)
        assert wrong.status_code == 401 and wrong.json() == {"error": "invalid_client"}
        grant = requests.post(provider.token_url, data={"grant_type": "password"}, auth=("demo-client", "demo-secret"),
                              timeout=10)
        assert grant.status_code == 400 and grant.json()["error"] == "unsupported_grant_type"
        assert_unauthorised(students(provider))
        assert_unauthorised(students(provider, headers=bearer("made-up")))
        assert_unauthorised(students(provider, auth=("demo-client", "demo-secret")))  # Basic is not enough


def test_oauth2_tokens_expire_mid_sync():
    with serve(auth="oauth2", token_lifetime=1) as provider:
        first = token(provider).json()["access_token"]
        assert students(provider, headers=bearer(first)).status_code == 200
        provider.expire_tokens()
        assert_unauthorised(students(provider, headers=bearer(first)))
        second = token(provider).json()["access_token"]
        assert students(provider, headers=bearer(second)).status_code == 200
        time.sleep(1.1)
        assert_unauthorised(students(provider, headers=bearer(second)))


def test_oauth2_scope_limits_school_students_on_1_2():
    with serve(auth="oauth2", scopes=(CORE_SCOPE,)) as provider:
        core = token(provider).json()
        assert core["scope"] == CORE_SCOPE
        school = provider.district.school_ids()[0]
        assert students(provider, headers=bearer(core["access_token"])).status_code == 200
        nested = requests.get(f"{provider.base_url('1.2')}/schools/{school}/students",
                              headers=bearer(core["access_token"]), timeout=10)
        assert nested.status_code == 403 and code_minor(nested) == "forbidden"
        assert token(provider, scope=ROSTER_SCOPE).json() == {"error": "invalid_scope"}


@pytest.mark.parametrize("method", [SIGNATURE_HMAC_SHA256, SIGNATURE_HMAC_SHA1])
def test_oauth1_signed_requests_with_query_parameters(method):
    with serve(auth="oauth1") as provider:
        signer = OAuth1("demo-client", client_secret="demo-secret", signature_method=method)
        params = {"filter": "familyName~'O'Brien' OR status='active'", "limit": "5", "offset": "1"}
        response = students(provider, "1.1", params=params, auth=signer)
        assert response.status_code == 200, response.text
        assert response.json()["users"]
        assert students(provider, "1.2", auth=signer).status_code == 200


def test_oauth1_rejects_bad_secret_unsigned_and_replayed():
    with serve(auth="oauth1") as provider:
        wrong = OAuth1("demo-client", client_secret="not-the-secret", signature_method=SIGNATURE_HMAC_SHA256)
        assert_unauthorised(students(provider, "1.1", auth=wrong))
        stranger = OAuth1("someone-else", client_secret="demo-secret", signature_method=SIGNATURE_HMAC_SHA256)
        assert_unauthorised(students(provider, "1.1", auth=stranger))
        assert_unauthorised(students(provider, "1.1"))
        signer = OAuth1("demo-client", client_secret="demo-secret", signature_method=SIGNATURE_HMAC_SHA256)
        prepared = requests.Request("GET", provider.base_url("1.1") + "/orgs", params={"limit": "2"},
                                    auth=signer).prepare()
        with requests.Session() as session:
            assert session.send(prepared, timeout=10).status_code == 200
            assert_unauthorised(session.send(prepared, timeout=10))  # same nonce and timestamp again
        tampered = requests.Request("GET", provider.base_url("1.1") + "/orgs", params={"limit": "2"},
                                    auth=signer).prepare()
        tampered.url = tampered.url.replace("limit=2", "limit=3")
        with requests.Session() as session:
            assert_unauthorised(session.send(tampered, timeout=10))
