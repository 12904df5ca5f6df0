"""Final errors over real HTTP: status, redacted URL and the provider's own words, in every body form."""

from __future__ import annotations

import socket

import pytest

from oneroster_pipeline.client.errors import (
    OneRosterConnectionError,
    OneRosterDataError,
    OneRosterHTTPError,
    redact_url,
)
from oneroster_pipeline.client.settings import ConnectionSettings
from oneroster_pipeline.client.sources import open_source

from .client_fixtures import SECRETS, api_requests, serve, settings_for


def first_error(settings, collection: str = "students") -> Exception:
    """The exception a full pull raises."""
    with open_source(settings) as source:
        with pytest.raises(Exception) as info:
            list(source.student_batches() if collection == "students" else source.org_batches())
        return info.value


def test_html_502_beyond_the_retry_budget_names_url_status_and_title():
    with serve(auth="oauth2") as provider:
        provider.faults.fail_next(10, status=502, body="html")
        error = first_error(settings_for(provider, max_retries=2))
        assert isinstance(error, OneRosterHTTPError) and error.status == 502
        assert "HTTP 502" in str(error) and "HTML page: 502 Bad Gateway" in str(error)
        assert provider.base_url("1.2") + "/students?" in str(error) and "<html" not in str(error)
        assert [e.status for e in api_requests(provider)] == [502, 502, 502]  # 1 try + 2 retries
        assert SECRETS[0] not in str(error)


def test_malformed_json_page_names_url_and_offset():
    with serve(auth="none") as provider, open_source(settings_for(provider)) as source:
        batches = source.student_batches()
        next(batches)
        provider.faults.fail_next(1, status=200, body="malformed_json")
        with pytest.raises(OneRosterDataError) as info:
            list(batches)
        message = str(info.value)
        # pages are fetched ahead (the next requests may have left before the fault was set): the failing page is
        # one after the first, and the error names its offset, as in its URL
        offset = info.value.offset
        assert offset in (40, 80, 120) and "not JSON" in message and "/students?" in message
        assert f"offset={offset} at offset {offset}" in message and '{"users"' not in message  # no payload quoted


@pytest.mark.parametrize("body", ["no_envelope", "empty"])
def test_200_without_the_envelope_is_an_error_never_an_empty_district(body):
    with serve(auth="none") as provider:
        provider.faults.fail_next(1, status=200, body=body)
        error = first_error(settings_for(provider), "orgs")
        assert isinstance(error, OneRosterDataError) and "offset 0" in str(error)
        assert ("no orgs list" in str(error) and "data, message" in str(error)) if body == "no_envelope" else \
            "empty body" in str(error)


@pytest.mark.parametrize(("quirk", "expected"), [
    (None, "codeMinor unauthorisedrequest"),
    ("edfi_errors", "codeMinor unauthorisedrequest"),
    ("status_info_set_errors", "codeMinor unauthorisedrequest"),
    ("empty_auth_error", "no error detail in the response body"),
])
def test_error_bodies_of_every_form_are_parsed(quirk, expected):
    with serve(auth="bearer", quirks={quirk} if quirk else set()) as provider:
        error = first_error(settings_for(provider, access_token="wrong"))
        assert isinstance(error, OneRosterHTTPError) and error.status == 401
        assert expected in str(error) and provider.base_url("1.2") in str(error)
        if quirk != "empty_auth_error":
            assert "invalid bearer token" in str(error)


def test_imsx_400_carries_description_and_code_minor():
    with serve(auth="none") as provider:
        provider.faults.fail_next(2, status=400, body="imsx")
        error = first_error(settings_for(provider))
        assert error.status == 400 and error.code_minor == "invaliddata" and "injected fault" in str(error)


def test_wrong_base_path_is_a_404_with_a_hint():
    with serve(auth="none") as provider:
        settings = settings_for(provider).with_overrides(base_url=provider.url + "/campus/api/ims/oneroster/v1p1")
        error = first_error(settings, "orgs")
        assert error.status == 404 and "unknownobject" in str(error) and "ONEROSTER_BASE_URL" in str(error)


def test_unreachable_provider_is_a_connection_error():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # closed once the block ends: nothing listens there
    settings = ConnectionSettings.from_env({"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_AUTH": "none",
                                            "ONEROSTER_BASE_URL": f"http://127.0.0.1:{port}/ims/oneroster/v1p2"})
    error = first_error(settings.with_overrides(max_retries=1, backoff_seconds=0), "orgs")
    assert isinstance(error, OneRosterConnectionError) and f"127.0.0.1:{port}/ims/oneroster/v1p2/orgs" in str(error)


def test_redact_url_hides_credentials_and_secret_query_values():
    url = "https://me:pw@h.example/x?appName=d&access_token=T0K&oauth_signature=S1G&limit=5"
    redacted = redact_url(url)
    assert redacted == "https://h.example/x?appName=d&access_token=***&oauth_signature=***&limit=5"
