"""One short line for a failed run (issue 26 item 4): the cause and the variable or setting to fix, from the error."""

from __future__ import annotations

import pytest

from oneroster_pipeline.client.errors import OneRosterConnectionError, OneRosterHTTPError
from oneroster_pipeline.client.paging import PullBoundExceeded
from oneroster_pipeline.client.settings import ConnectionSettings, SettingsError
from oneroster_pipeline.failures import summary
from oneroster_pipeline.warehouse.duckdb_files import DuckDBPathError


def settings_error(env: dict) -> SettingsError:
    with pytest.raises(SettingsError) as raised:
        ConnectionSettings.from_env(env)
    return raised.value


@pytest.mark.parametrize("error, cause, fix", [
    (OneRosterHTTPError("https://h/ims/oneroster/v1p1/orgs?limit=5", 401, "invalid_client"),
     "HTTP 401 from https://h/ims/oneroster/v1p1/orgs: invalid_client", "ONEROSTER_CLIENT_SECRET"),
    (OneRosterHTTPError("https://h/x/orgs", 404), "HTTP 404", "ONEROSTER_BASE_URL"),
    (OneRosterConnectionError("connection refused by h:1: nothing is listening. GET https://h:1/x", "refused", "h:1"),
     "connection refused by h:1", "ONEROSTER_BASE_URL"),
    (PullBoundExceeded("https://h/x", "the students pull was stopped: more than 10 records (ONEROSTER_MAX_RECORDS)"),
     "more than 10 records", "ONEROSTER_MAX_RECORDS"),
    (DuckDBPathError("/x", "the path is a directory"), "is a directory", "ONEROSTER_DUCKDB_PATH"),
])
def test_the_line_names_the_cause_and_the_fix(error, cause, fix):
    line = summary(error, "full_sync", "oneroster_orgs")
    assert line.startswith("full_sync failed in oneroster_orgs: ") and cause in line
    assert line.endswith(")") and f"(fix: " in line and fix in line.split("(fix: ")[1]
    assert "\n" not in line and len(line) < 600


def test_a_base_url_without_its_version_path_names_the_base_url_and_the_path_to_add():
    error = settings_error({"ONEROSTER_PROVIDER": "oneroster", "ONEROSTER_BASE_URL": "https://sis.example/api",
                            "ONEROSTER_AUTH": "none"})
    line = summary(error, "full_sync")
    assert "(fix: ONEROSTER_BASE_URL)" in line and "/ims/oneroster/v1p1" in line and "'/api'" in line


def test_a_wrapped_error_is_found_and_a_secret_in_it_is_masked():
    from oneroster_pipeline.client.redaction import register  # noqa: PLC0415

    register("wrapped-secret-123456")
    try:
        try:
            raise OneRosterHTTPError("https://h/x", 401, "bad client_secret wrapped-secret-123456")
        except OneRosterHTTPError as inner:
            raise RuntimeError("step failed") from inner
    except RuntimeError as outer:
        line = summary(outer, "student_sync")
    assert "HTTP 401" in line and "wrapped-secret-123456" not in line
