"""The demo provider's fault knobs: periodic 429 / HTML 503, latency, and one-off `faults.fail_next` variants."""

from __future__ import annotations

import json
import time

import pytest
import requests

from oneroster_pipeline.demo.district import DistrictShape
from oneroster_pipeline.demo.server import DemoProvider, DemoSettings

SHAPE = DistrictShape(schools=2, students=40, seed=3)


@pytest.fixture
def provider():
    with DemoProvider(SHAPE, DemoSettings(auth="none")) as running:
        yield running


def orgs(provider: DemoProvider) -> requests.Response:
    return requests.get(provider.base_url("1.2") + "/orgs", timeout=10)


def code_minor(response: requests.Response) -> str:
    return response.json()["imsx_CodeMinor"]["imsx_codeMinorField"][0]["imsx_codeMinorFieldValue"]


def test_every_nth_request_is_rate_limited():
    with DemoProvider(SHAPE, DemoSettings(auth="none", rate_limit_every=3, retry_after=7)) as provider:
        statuses = [orgs(provider) for _ in range(7)]
        assert [r.status_code for r in statuses] == [200, 200, 429, 200, 200, 429, 200]
        limited = statuses[2]
        assert limited.headers["Retry-After"] == "7" and code_minor(limited) == "server_busy"
        assert [e.status for e in provider.request_log] == [r.status_code for r in statuses]


def test_every_nth_request_is_an_html_503():
    with DemoProvider(SHAPE, DemoSettings(auth="none", error_5xx_every=2)) as provider:
        ok, failed = orgs(provider), orgs(provider)
        assert ok.status_code == 200 and failed.status_code == 503
        assert failed.headers["Content-Type"].startswith("text/html") and "<html>" in failed.text
        with pytest.raises(json.JSONDecodeError):
            failed.json()


def test_token_endpoint_is_not_subject_to_faults():
    with DemoProvider(SHAPE, DemoSettings(rate_limit_every=1, error_5xx_every=1)) as provider:
        provider.faults.fail_next(1, status=500, body="imsx")
        issued = requests.post(provider.token_url, data={"grant_type": "client_credentials"},
                               auth=("demo-client", "demo-secret"), timeout=10)
        assert issued.status_code == 200
        headers = {"Authorization": f"Bearer {issued.json()['access_token']}"}
        api = requests.get(provider.base_url("1.1") + "/orgs", headers=headers, timeout=10)
        assert api.status_code == 500 and code_minor(api) == "internal_server_error"  # the queued fault, not a 429
        assert requests.get(provider.base_url("1.1") + "/orgs", headers=headers, timeout=10).status_code == 429


def test_latency():
    with DemoProvider(SHAPE, DemoSettings(auth="none", latency_ms=150)) as provider:
        started = time.perf_counter()
        assert orgs(provider).status_code == 200
        assert time.perf_counter() - started >= 0.15


def test_fail_next_html_then_recovers(provider):
    provider.faults.fail_next(2, status=502, body="html", retry_after=3)
    first, second, third = orgs(provider), orgs(provider), orgs(provider)
    assert (first.status_code, second.status_code, third.status_code) == (502, 502, 200)
    assert first.headers["Retry-After"] == "3" and "502 Bad Gateway" in first.text
    assert "orgs" in third.json()


@pytest.mark.parametrize("status,minor", [(429, "server_busy"), (503, "server_busy"), (500, "internal_server_error"),
                                          (403, "forbidden")])
def test_fail_next_imsx(provider, status, minor):
    provider.faults.fail_next(status=status, body="imsx")
    response = orgs(provider)
    assert response.status_code == status and code_minor(response) == minor
    assert "Retry-After" not in response.headers


def test_fail_next_broken_success_bodies(provider):
    provider.faults.fail_next(1, status=200, body="malformed_json")
    provider.faults.fail_next(1, status=200, body="no_envelope")
    provider.faults.fail_next(1, status=200, body="empty")
    malformed, no_envelope, empty = orgs(provider), orgs(provider), orgs(provider)
    assert malformed.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        malformed.json()
    assert no_envelope.status_code == 200 and "orgs" not in no_envelope.json() and "users" not in no_envelope.json()
    assert empty.status_code == 200 and empty.content == b"" and empty.headers["Content-Length"] == "0"
    assert orgs(provider).json()["orgs"]


def test_fail_next_rejects_unknown_body(provider):
    with pytest.raises(ValueError):
        provider.faults.fail_next(1, body="teapot")
